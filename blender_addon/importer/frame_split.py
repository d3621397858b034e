"""Split a per-frame 3DGS PLY sequence into what changes over time and what does not.

A gen4d asset has the same N Gaussians in every frame; usually only positions and
rotations move, while colours (``f_dc_*``), opacity and scales stay put. Blender's Import
PLY node costs about 1.7 ms per property per 200k points, so the importer writes lean
cache files holding only ``x y z`` plus the properties that change between frames, and
keeps the constant ones once, as point attributes of the object's own mesh (sampled by
index in the node tree). Unused properties (normals ``nx ny nz``) are dropped; the higher
SH coefficients ``f_rest_*`` are kept (the material evaluates them).

No bpy here: numpy and plyfile only (plyfile ships inside the extension as a wheel).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

POSITION = ("x", "y", "z")
#: Properties the player reads (plus every ``f_rest_*``); anything else is dropped.
USED = POSITION + ("f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                   "rot_0", "rot_1", "rot_2", "rot_3")


@dataclass
class SplitFrames:
    """The constant and per-frame parts of a sequence.

    Attributes:
        count: N, Gaussians per frame.
        static: property name → ``[N]`` float32 values shared by every frame.
        dynamic: properties (after ``x y z``) stored in each lean cache file.
        positions: ``[N, 3]`` float32 positions of frame 0 (metres).
        cache_files: the lean per-frame files, in frame order.
        sh_degree: SH degree of the colours (from the ``f_rest_*`` count), 0–3.
    """

    count: int
    static: dict[str, np.ndarray]
    dynamic: list[str]
    positions: np.ndarray
    cache_files: list[Path]
    sh_degree: int = 0


def read_vertices(path: str | os.PathLike) -> np.ndarray:
    """The ``vertex`` element of a PLY file as a structured array.

    Raises:
        ValueError: no ``vertex`` element, or one without ``x y z``.
        OSError: the file cannot be read.
    """
    from plyfile import PlyData

    try:
        ply = PlyData.read(str(path))
        vertices = ply["vertex"].data
    except KeyError:
        raise ValueError(f"{path}: no 'vertex' element") from None
    except Exception as exc:  # plyfile raises its own PlyParseError and others
        if isinstance(exc, OSError):
            raise
        raise ValueError(f"{path}: not a readable PLY ({exc})") from None
    missing = [p for p in POSITION if p not in vertices.dtype.names]
    if missing:
        raise ValueError(f"{path}: vertex element lacks {missing}")
    return vertices


def write_vertices(path: Path, columns: dict[str, np.ndarray]) -> None:
    """Write float32 ``columns`` (equal lengths) as a binary little-endian PLY ``vertex`` element."""
    from plyfile import PlyData, PlyElement

    n = len(next(iter(columns.values())))
    data = np.empty(n, dtype=[(name, "<f4") for name in columns])
    for name, values in columns.items():
        data[name] = values
    tmp = path.with_name(path.name + ".tmp")
    PlyData([PlyElement.describe(data, "vertex")], byte_order="<").write(str(tmp))
    os.replace(tmp, path)


def split_frames(frame_files: list[Path], cache_files: list[Path]) -> SplitFrames:
    """Find the constant properties and write the lean per-frame cache files.

    Two passes (so memory holds one frame at a time plus frame 0): compare every frame
    with frame 0 property by property, then write ``x y z`` + the changing properties of
    each frame to ``cache_files`` (atomically).

    Args:
        frame_files: the sequence, in frame order.
        cache_files: where the lean files go (same length).

    Returns:
        :class:`SplitFrames`.

    Raises:
        ValueError: unreadable files, or frames with different Gaussian counts.
    """
    if not frame_files or len(frame_files) != len(cache_files):
        raise ValueError("need one cache file per frame file, and at least one frame")
    first = read_vertices(frame_files[0])
    rest = sorted((p for p in first.dtype.names if p.startswith("f_rest_")), key=lambda p: int(p[7:]))
    names = [p for p in USED if p in first.dtype.names] + rest
    sh_degree = sh_degree_of(len(rest), frame_files[0])
    n = len(first)
    changing: set[str] = set(POSITION)
    for path in frame_files[1:]:
        v = read_vertices(path)
        if len(v) != n:
            raise ValueError(f"{Path(path).name} has {len(v)} Gaussians, {Path(frame_files[0]).name} has {n}: "
                             "every frame must hold the same Gaussians in the same order")
        lacking = [p for p in names if p not in v.dtype.names]
        if lacking:
            raise ValueError(f"{Path(path).name} lacks {lacking}, which {Path(frame_files[0]).name} has")
        for p in names:
            if p not in changing and not np.array_equal(v[p], first[p]):
                changing.add(p)
    dynamic = [p for p in names if p in changing and p not in POSITION]
    static = {p: np.ascontiguousarray(first[p], dtype=np.float32) for p in names if p not in changing}
    for i, (src, dst) in enumerate(zip(frame_files, cache_files)):
        v = first if i == 0 else read_vertices(src)
        write_vertices(Path(dst), {p: v[p] for p in (*POSITION, *dynamic)})
    positions = np.stack([first[p] for p in POSITION], -1).astype(np.float32)
    return SplitFrames(count=n, static=static, dynamic=dynamic, positions=positions,
                       cache_files=[Path(c) for c in cache_files], sh_degree=sh_degree)


def sh_degree_of(n_rest: int, where="") -> int:
    """SH degree ``d`` from the number of ``f_rest_*`` properties, ``3·((d+1)² − 1)``.

    Raises:
        ValueError: a count that is no such number, or a degree above 3.
    """
    for degree in range(4):
        if n_rest == 3 * ((degree + 1) ** 2 - 1):
            return degree
    raise ValueError(f"{where}: {n_rest} f_rest properties is not SH degree 0-3 (0, 9, 24 or 45)")
