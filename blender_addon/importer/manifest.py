"""Reading a gen4d result folder and laying out its per-frame PLY cache.

A result folder holds ``manifest.json`` (:mod:`protocol.formats.manifest`) and the
per-frame Inria 3DGS PLY files it lists in ``frame_files``. The cache folder holds the
importer's lean per-frame files named ``frame_<i>.ply`` with ``i`` zero-padded to
:func:`pad_width` digits, which is the name the Geometry Nodes tree builds from Frame.
No bpy here, so this module is testable anywhere.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

try:  # the copy build_addon.py bundles into the extension
    from ..protocol.formats import manifest as _manifest_format
    from ..protocol.formats.time_grid import frame_times
except ImportError:  # a repository checkout (development, tests)
    from protocol.formats import manifest as _manifest_format
    from protocol.formats.time_grid import frame_times

#: Placeholder for the zero-padded frame number inside a cache path template.
FRAME_TOKEN = "@FRAME@"


@dataclass
class ResultManifest:
    """The frames to import, with their paths resolved: a result's ``manifest.json``
    (:func:`read_manifest`) or a bare PLY sequence (:func:`sequence_manifest`).

    Attributes:
        root: the result folder.
        frame_count: number of frames ``T`` (≥ 1).
        fps: frames per second of the clip.
        times: normalized times ``t_i ∈ [0, 1]``, one per frame.
        sh_degree: SH degree of the colour coefficients.
        gaussian_count: ``N``, the same in every frame.
        frame_files: absolute paths of the per-frame PLYs, in frame order.
        spec: the generating job spec (free-form).
        image_formation: what the asset was fitted for (``"blender"``: linear-light
            compositing, what Cycles/Eevee do with the splat material; ``"3dgs"``: the
            standard 3DGS formation, as a bare PLY sequence from another tool is).
    """
    root: Path
    frame_count: int
    fps: float
    times: list[float]
    sh_degree: int
    gaussian_count: int
    frame_files: list[Path]
    spec: dict = field(default_factory=dict)
    image_formation: str = "3dgs"


def read_manifest(result_dir: str | os.PathLike) -> ResultManifest:
    """Read and check ``<result_dir>/manifest.json`` (:func:`protocol.formats.read_manifest`)
    and check that its frame files exist.

    Raises:
        FileNotFoundError: the manifest (``ManifestNotFoundError``, also a ValueError) or
            a listed frame file is missing.
        ValueError: unreadable manifest, wrong format/version, or inconsistent fields
            (``protocol.formats.ManifestError``).
    """
    root = Path(result_dir)
    info = _manifest_format.read_manifest(root)
    frame_files = info.frame_paths(root)
    missing = [str(f) for f in frame_files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{root / _manifest_format.MANIFEST_FILE}: missing frame files {missing[:3]}")
    return ResultManifest(root=root, frame_count=info.frame_count, fps=info.fps, times=list(info.times),
                          sh_degree=info.sh_degree, gaussian_count=info.gaussian_count,
                          frame_files=frame_files, spec=dict(info.spec), image_formation=info.image_formation)


_NUMBERED_PLY = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)\.ply$", re.IGNORECASE)


def sequence_manifest(path: str | os.PathLike, fps: float = 24.0) -> ResultManifest:
    """A numbered per-frame 3DGS PLY sequence from any tool, as a :class:`ResultManifest`.

    ``path`` is one file of the sequence (its siblings with the same prefix and a number
    before ``.ply`` are the frames, e.g. ``splat_000.ply``, ``splat_001.ply`` …) or a
    folder (the prefix with the most numbered files wins). Frames are ordered by number
    and get the times of :func:`protocol.formats.frame_times`. The Gaussian count is
    checked when the frames are read.

    Raises:
        FileNotFoundError: no such file or folder, or no numbered ``.ply`` files in it.
        ValueError: ``path`` is a file that is not a numbered ``.ply``; ``fps`` ≤ 0.
    """
    path = Path(path)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    folder = path if path.is_dir() else path.parent
    groups: dict[str, list[tuple[int, Path]]] = {}
    for child in folder.iterdir():
        m = _NUMBERED_PLY.match(child.name)
        if m and child.is_file():
            groups.setdefault(m["prefix"], []).append((int(m["number"]), child))
    if path.is_file():
        m = _NUMBERED_PLY.match(path.name)
        if not m:
            raise ValueError(f"{path.name} is not a numbered .ply file (like frame_0001.ply)")
        prefix = m["prefix"]
    elif groups:
        prefix = max(groups, key=lambda k: (len(groups[k]), k))
    else:
        raise FileNotFoundError(f"no numbered .ply files (like frame_0001.ply) in {folder}")
    frames = [p for _, p in sorted(groups[prefix])]
    count = len(frames)
    return ResultManifest(root=folder, frame_count=count, fps=float(fps),
                          times=frame_times(count),
                          sh_degree=0, gaussian_count=0, frame_files=frames,
                          spec={"source": "ply_sequence", "prefix": prefix})


def pad_width(frame_count: int) -> int:
    """Digits in cache file names: at least 4, enough for ``frame_count - 1``."""
    return max(4, len(str(max(frame_count - 1, 0))))


def cache_file_name(index: int, width: int) -> str:
    """``frame_0003.ply`` for index 3, width 4."""
    return f"frame_{index:0{width}d}.ply"
