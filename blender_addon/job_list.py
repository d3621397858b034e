"""The add-on's persistent job list, so submitted jobs survive a Blender restart or crash.

(Not the backend's job store, ``backend/jobs.py``: this is the client's own list of the
jobs it submitted or reattached to, shown in the panel.)

One JSON file (``jobs.json``) in the extension's user folder
(``bpy.utils.extension_path_user``), or ``<config>/gen4d`` when the add-on runs outside
the extension system; both follow ``BLENDER_USER_RESOURCES``. It is written atomically
(temporary file + ``os.replace``) after every change, so a crash never leaves half a file.

A record is a dict::

    {"job_id": str, "job_type": str, "name": str, "address": str,
     "submitted_at": float (Unix s), "status": str, "result_dir": str, "message": str}

:class:`JobList` is the in-memory list the add-on uses (loaded on first use, saved after
every change, errors reported instead of raised); the functions below it are the plain file
and list operations. Only :func:`store_path` touches ``bpy``; the rest is plain Python
(unit-tested in ``tests/addon/test_job_list.py``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

FILE_NAME = "jobs.json"
#: Oldest records are dropped beyond this many.
MAX_RECORDS = 200
FIELDS = ("job_id", "job_type", "name", "address", "submitted_at", "status", "result_dir", "message")


def store_path() -> Path:
    """Where the job list lives (the folder is created).

    Raises:
        OSError: the user folder cannot be created.
    """
    import bpy

    package = __package__ or "gen4d"
    try:
        folder = bpy.utils.extension_path_user(package, path="", create=True)
    except (ValueError, AttributeError):  # not installed as an extension (a plain checkout)
        folder = bpy.utils.user_resource("CONFIG", path="gen4d", create=True)
    return Path(folder) / FILE_NAME


def load(path: Path) -> tuple[list[dict], str]:
    """Read the job list.

    Returns:
        ``(records, warning)``: records newest first; ``warning`` is empty unless the file
        was unreadable, in which case it was moved aside to ``jobs.json.corrupt-<time>``
        (kept for the user) and the list starts empty.
    """
    path = Path(path)
    if not path.is_file():
        return [], ""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
            raise ValueError("no 'jobs' list")
        records = [{k: r.get(k, "") for k in FIELDS} for r in data["jobs"] if isinstance(r, dict) and r.get("job_id")]
        return records, ""
    except (OSError, ValueError) as exc:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        try:
            os.replace(path, aside)
        except OSError:
            aside = path
        return [], f"the gen4d job list {path} was unreadable ({exc}); kept as {aside.name}"


def save(path: Path, records: list[dict]) -> None:
    """Write ``records`` (newest first, at most :data:`MAX_RECORDS`) atomically.

    Raises:
        OSError: the folder is not writable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"version": 1, "jobs": records[:MAX_RECORDS]}, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def upsert(records: list[dict], job_id: str, **fields) -> list[dict]:
    """Add a record for ``job_id`` (at the front) or update its fields; returns the new list.

    Raises:
        ValueError: an empty job id or an unknown field name.
    """
    if not job_id:
        raise ValueError("a job record needs a job id")
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown job record field(s) {sorted(unknown)}")
    for record in records:
        if record["job_id"] == job_id:
            record.update(fields)
            return records
    record = {k: "" for k in FIELDS}
    record.update(job_id=job_id, submitted_at=time.time(), **fields)
    return [record, *records]


def forget(records: list[dict], job_id: str) -> list[dict]:
    """The list without ``job_id`` (results already downloaded stay on disk)."""
    return [r for r in records if r["job_id"] != job_id]


def find(records: list[dict], job_id: str) -> dict | None:
    """The record of ``job_id``, or None."""
    return next((r for r in records if r["job_id"] == job_id), None)


class JobList:
    """The job list the panel shows: loaded from ``path`` on first use, saved atomically
    after every change. Never raises for file problems: a warning goes to ``on_warning``
    (the panel's error line) and the list carries on in memory.

    Args:
        path: the JSON file, or a callable returning it (called on first use, e.g.
            :func:`store_path`, which needs ``bpy``).
        on_warning: ``fn(message: str)`` for an unreadable, unwritable or unavailable file.
    """

    def __init__(self, path: Path | Callable[[], Path] = store_path,
                 on_warning: Callable[[str], None] | None = None):
        self._path_source = path
        self.path: Path | None = None
        self.on_warning = on_warning
        self._records: list[dict] | None = None

    def _warn(self, message: str) -> None:
        if self.on_warning is not None:
            self.on_warning(message)

    def records(self) -> list[dict]:
        """The records, newest first (see the module docstring for a record's fields);
        loaded on first use. An unreadable file is moved aside and reported."""
        if self._records is None:
            try:
                self.path = Path(self._path_source() if callable(self._path_source) else self._path_source)
                self._records, warning = load(self.path)
            except OSError as exc:
                self._records, warning = [], f"gen4d job list unavailable: {exc}"
            if warning:
                self._warn(warning)
        return self._records

    def find(self, job_id: str) -> dict | None:
        """The record of ``job_id``, or None."""
        return find(self.records(), job_id)

    def record(self, job_id: str, **fields) -> None:
        """Update (or add, at the front) ``job_id`` with ``fields`` (names from
        :data:`FIELDS`) and save; a bad id or field or a failed save is reported, not
        raised."""
        try:
            self._records = upsert(self.records(), job_id, **fields)
            self._save()
        except (OSError, ValueError) as exc:
            self._warn(f"gen4d job list not saved: {exc}")

    def forget(self, job_id: str) -> None:
        """Remove ``job_id`` and save (its downloaded result stays on disk); never raises."""
        self._records = forget(self.records(), job_id)
        try:
            self._save()
        except OSError as exc:
            self._warn(f"gen4d job list not saved: {exc}")

    def reload(self) -> list[dict]:
        """Drop the in-memory list and read the file again (after register, or in tests)."""
        self._records = None
        return self.records()

    def unload(self) -> None:
        """Drop the in-memory list (unregister); the next use reads the file again."""
        self._records = None

    def _save(self) -> None:
        if self.path is not None:
            save(self.path, self._records)
