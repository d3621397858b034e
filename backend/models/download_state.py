"""The two marker files ``python -m backend models download`` leaves in a role's folder.

- ``.gen4d_download.partial.json``: written before the first file is fetched; says a
  download into this folder has started and lists the files it plans.
- ``.gen4d_download.json``: written (atomically) only once every planned file is complete;
  records the repository, the commit, the weight variant and each file's name, size and
  SHA-256. Its presence removes the partial marker.

A folder with the partial marker and without the complete one is an unfinished download
(:func:`folder_state` → ``"partial"``). A folder with neither, e.g. one the user copied by
hand, is taken as it is (``"unmanaged"``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

#: written when every file of a download is complete.
MARKER = ".gen4d_download.json"
#: written when a download starts; removed when :data:`MARKER` is written.
PARTIAL_MARKER = ".gen4d_download.partial.json"


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_marker(folder: Path) -> dict | None:
    """The complete-download record of ``folder`` (see the module docstring), or None."""
    return _read(Path(folder) / MARKER)


def read_partial(folder: Path) -> dict | None:
    """The started-download record of ``folder``, or None."""
    return _read(Path(folder) / PARTIAL_MARKER)


def folder_state(folder: Path) -> str:
    """``"complete"`` (download marker), ``"partial"`` (a download started and did not
    finish) or ``"unmanaged"`` (no marker: a folder copied by hand, or made before the
    markers existed)."""
    folder = Path(folder)
    if (folder / MARKER).is_file():
        return "complete"
    if (folder / PARTIAL_MARKER).is_file():
        return "partial"
    return "unmanaged"


def write_json_atomic(path: Path, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and ``os.replace``, so a
    reader sees either the old file or the whole new one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def weight_variant(folder: Path) -> str | None:
    """The weight variant (``"fp16"``) a completed download chose, which ``from_pretrained``
    needs as ``variant=`` to find ``*.fp16.safetensors``; None for plain files or a folder
    without the marker."""
    marker = read_marker(folder)
    return marker.get("variant") if marker else None
