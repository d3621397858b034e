"""Reading a gen4d result folder and laying out its per-frame PLY cache.

A result folder holds ``manifest.json`` (``format == "gen4d-result"``, ``format_version
== 1``) and the per-frame Inria 3DGS PLY files it lists in ``frame_files``. The cache
folder holds the same files renamed ``frame_<i>.ply`` with ``i`` zero-padded to
:func:`pad_width` digits, which is the name the Geometry Nodes tree builds from Frame.
No bpy here, so this module is testable anywhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

FORMAT = "gen4d-result"
FORMAT_VERSION = 1
#: Placeholder for the zero-padded frame number inside a cache path template.
FRAME_TOKEN = "@FRAME@"


@dataclass
class ResultManifest:
    """A validated ``manifest.json``.

    Attributes:
        root: the result folder.
        frame_count: number of frames ``T`` (≥ 1).
        fps: frames per second of the clip.
        times: normalized times ``t_i ∈ [0, 1]``, one per frame.
        sh_degree: SH degree of the colour coefficients.
        gaussian_count: ``N``, the same in every frame.
        frame_files: absolute paths of the per-frame PLYs, in frame order.
        spec: the generating job spec (free-form).
    """
    root: Path
    frame_count: int
    fps: float
    times: list[float]
    sh_degree: int
    gaussian_count: int
    frame_files: list[Path]
    spec: dict = field(default_factory=dict)


def read_manifest(result_dir: str | os.PathLike) -> ResultManifest:
    """Read and check ``<result_dir>/manifest.json``.

    Raises:
        FileNotFoundError: the manifest or a listed frame file is missing.
        ValueError: wrong format/version, or inconsistent counts.
    """
    root = Path(result_dir)
    path = root / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a gen4d result folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable manifest ({exc})") from exc
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: format is {data.get('format')!r}, expected {FORMAT!r}")
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported format_version {data.get('format_version')!r}")
    files = data.get("frame_files") or []
    count = int(data.get("frame_count", len(files)))
    if count < 1 or count != len(files):
        raise ValueError(f"{path}: frame_count {count} does not match {len(files)} frame_files")
    frame_files = [root / f for f in files]
    missing = [str(f) for f in frame_files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: missing frame files {missing[:3]}")
    times = [float(t) for t in data.get("times") or
             [i / (count - 1) if count > 1 else 0.0 for i in range(count)]]
    return ResultManifest(root=root, frame_count=count, fps=float(data.get("fps", 24.0)),
                          times=times, sh_degree=int(data.get("sh_degree", 0)),
                          gaussian_count=int(data.get("gaussian_count", 0)),
                          frame_files=frame_files, spec=dict(data.get("spec") or {}))


_NUMBERED_PLY = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)\.ply$", re.IGNORECASE)


def sequence_manifest(path: str | os.PathLike, fps: float = 24.0) -> ResultManifest:
    """A numbered per-frame 3DGS PLY sequence from any tool, as a :class:`ResultManifest`.

    ``path`` is one file of the sequence (its siblings with the same prefix and a number
    before ``.ply`` are the frames, e.g. ``splat_000.ply``, ``splat_001.ply`` …) or a
    folder (the prefix with the most numbered files wins). Frames are ordered by number
    and get times ``i / (T − 1)``. The Gaussian count is checked when the frames are read.

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
                          times=[i / (count - 1) if count > 1 else 0.0 for i in range(count)],
                          sh_degree=0, gaussian_count=0, frame_files=frames,
                          spec={"source": "ply_sequence", "prefix": prefix})


def pad_width(frame_count: int) -> int:
    """Digits in cache file names: at least 4, enough for ``frame_count - 1``."""
    return max(4, len(str(max(frame_count - 1, 0))))


def cache_file_name(index: int, width: int) -> str:
    """``frame_0003.ply`` for index 3, width 4."""
    return f"frame_{index:0{width}d}.ply"


def populate_cache(manifest: ResultManifest, cache_dir: str | os.PathLike) -> list[Path]:
    """Put the result's frames into ``cache_dir`` under their cache names.

    Hard-links when possible, else copies; a file already in place is left alone.

    Returns:
        the cache paths, in frame order.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    width = pad_width(manifest.frame_count)
    out = []
    for i, src in enumerate(manifest.frame_files):
        dst = cache / cache_file_name(i, width)
        if dst.exists():
            if os.path.samefile(src, dst):
                out.append(dst)
                continue
            dst.unlink()
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
        out.append(dst)
    return out
