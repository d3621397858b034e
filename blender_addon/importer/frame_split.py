"""Turn a per-frame 3DGS PLY sequence into the splat attributes Blender draws, split into
what changes over time and what does not.

A gen4d asset has the same N Gaussians in every frame; usually only positions and
rotations move, while colours, opacities and scales stay put. The player node tree
(:mod:`.nodes`) should do as little as possible per frame: Blender's Import PLY node costs
about 1.7 ms per property per 200k points, and every field the tree evaluates costs more.
So the importer converts the PLY properties **once, here, in numpy** into exactly the
values the instances need (:func:`attribute_values`, built on the layout and value
conventions of :mod:`protocol.formats.ply`):

=================  ===========  ==========================================================
attribute          type         value (Inria 3DGS layout in)
=================  ===========  ==========================================================
``gen4d_rotation`` QUATERNION   ``rot_0..3`` (w, x, y, z), normalized
``gen4d_color``    FLOAT_COLOR  ``0.5 + C0·f_dc`` (sRGB), clamped at 0 when SH degree is 0
``gen4d_alpha``    FLOAT        ``sigmoid(opacity)``
``gen4d_scale``    FLOAT_VECTOR ``3·exp(scale_i)``: the 3σ half-axes in metres
``gen4d_sh_<k>``   FLOAT_VECTOR RGB coefficients of SH basis ``k`` (1 … (d+1)²−1)
=================  ===========  ==========================================================

An attribute whose values are the same in every frame becomes a point attribute of the
object's own mesh (which the tree instances on); the others, and ``x y z``, go into lean
per-frame cache files, one float property per component (``rot_0..3``,
``gen4d_color_0..2``, …). Normals and raw properties are dropped.

No bpy here: numpy, plyfile (it ships inside the extension as a wheel) and
:mod:`protocol.formats` (bundled into the extension by ``build_addon.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:  # the copy build_addon.py bundles into the extension
    from ..protocol.formats import ply as _ply
except ImportError:  # a repository checkout (development, tests), or this file loaded on its own
    from protocol.formats import ply as _ply

POSITION = _ply.POSITION
#: PLY properties every frame must have (besides ``x y z`` and the ``f_rest_*`` of SH > 0).
REQUIRED = tuple(p for p in _ply.REQUIRED_PROPERTIES if p not in POSITION)
ROTATION_ATTR = "gen4d_rotation"
COLOR_ATTR = "gen4d_color"
ALPHA_ATTR = "gen4d_alpha"
SCALE_ATTR = "gen4d_scale"


@dataclass(frozen=True)
class SplatAttribute:
    """One instance attribute of the player.

    Attributes:
        name: Blender attribute name (on the object's mesh when constant, on the
            instances always).
        data_type: Blender attribute type: ``FLOAT``, ``FLOAT_VECTOR``, ``FLOAT_COLOR``
            or ``QUATERNION``.
        columns: names of its float components in the lean cache files, in order
            (w x y z for the quaternion).
        sources: the 3DGS PLY properties it is computed from.
    """

    name: str
    data_type: str
    columns: tuple[str, ...]
    sources: tuple[str, ...]


def sh_attribute(k: int) -> str:
    """Instance attribute holding the RGB coefficients of SH basis function ``k`` (1 … K−1)."""
    return f"gen4d_sh_{k}"


def splat_attributes(sh_degree: int) -> list[SplatAttribute]:
    """The player's instance attributes for colours of SH degree ``sh_degree`` (0–3)."""
    def vector(name, sources, kind="FLOAT_VECTOR"):
        return SplatAttribute(name, kind, tuple(f"{name}_{c}" for c in range(3)), tuple(sources))

    rest = _ply.sh_coefficient_count(sh_degree) - 1
    return ([SplatAttribute(ROTATION_ATTR, "QUATERNION", _ply.ROTATION, _ply.ROTATION),
             vector(COLOR_ATTR, _ply.SH_DC, "FLOAT_COLOR"),
             SplatAttribute(ALPHA_ATTR, "FLOAT", (ALPHA_ATTR,), (_ply.OPACITY,)),
             vector(SCALE_ATTR, _ply.SCALE)]
            + [vector(sh_attribute(k), _ply.f_rest_names(k, sh_degree)) for k in range(1, rest + 1)])


def attribute_values(vertices: np.ndarray, attr: SplatAttribute, sh_degree: int) -> np.ndarray:
    """The values of one :func:`splat_attributes` entry, float32 ``[N, len(attr.columns)]``.

    Args:
        vertices: a PLY ``vertex`` element (structured array) in the Inria 3DGS layout:
            ``f_dc_*`` (SH band 0), ``f_rest_*`` channel-major, ``opacity`` (logit),
            ``scale_*`` (log, metres), ``rot_*`` (wxyz, any norm).
        attr: which attribute.
        sh_degree: SH degree of the colours (:func:`protocol.formats.ply.sh_degree_from_properties`).

    Returns:
        rotation: the quaternion normalized (a zero one becomes the identity); colour:
        ``0.5 + SH_C0·f_dc`` (clamped at 0 for degree 0; for higher degrees the material
        clamps after adding the view-dependent terms); alpha: ``sigmoid(opacity)``; scale:
        ``3·exp(scale_i)``; SH basis ``k``: its RGB coefficients ``f_rest_{c·K' + k − 1}``
        with ``K' = (d+1)² − 1``.
    """
    x = np.stack([vertices[p] for p in attr.sources], -1).astype(np.float32)
    if attr.name == ROTATION_ATTR:
        x = _ply.normalize_quaternions(x)
    elif attr.name == COLOR_ATTR:
        x = _ply.sh0_to_rgb(x)
        if sh_degree == 0:
            x = np.maximum(x, np.float32(0))
    elif attr.name == ALPHA_ATTR:
        x = _ply.opacity_from_logit(x)
    elif attr.name == SCALE_ATTR:
        x = 3 * _ply.scale_from_log(x)
    return np.ascontiguousarray(x, dtype=np.float32)

@dataclass
class SplitFrames:
    """The constant and per-frame parts of a sequence.

    Attributes:
        count: N, Gaussians per frame.
        static: attribute name → float32 ``[N, C]`` values shared by every frame
            (C = ``len(columns)``), for the object's mesh.
        dynamic: the attributes that change over time; their columns follow ``x y z`` in
            each lean cache file.
        positions: ``[N, 3]`` float32 positions of frame 0 (metres).
        cache_files: the lean per-frame files, in frame order.
        sh_degree: SH degree of the colours (from the ``f_rest_*`` count), 0–3.
    """

    count: int
    static: dict[str, np.ndarray]
    dynamic: list[SplatAttribute]
    positions: np.ndarray
    cache_files: list[Path]
    sh_degree: int = 0

    @property
    def cache_columns(self) -> list[str]:
        """PLY properties of each lean cache file: ``x y z`` then the dynamic columns."""
        return [*POSITION, *(c for attr in self.dynamic for c in attr.columns)]


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


def _check_frame(v: np.ndarray, path, n: int, sh_degree: int, reference: str) -> None:
    """Raise ValueError unless ``v`` has ``n`` Gaussians and every 3DGS property."""
    if len(v) != n:
        raise ValueError(f"{Path(path).name} has {len(v)} Gaussians, {reference} has {n}: "
                         "every frame must hold the same Gaussians in the same order")
    rest = 3 * (_ply.sh_coefficient_count(sh_degree) - 1)
    lacking = [p for p in (*REQUIRED, *(f"f_rest_{i}" for i in range(rest))) if p not in v.dtype.names]
    if lacking:
        raise ValueError(f"{Path(path).name} lacks the 3DGS properties {lacking[:6]}"
                         f"{' …' if len(lacking) > 6 else ''} (3DGS PLY layout: x y z, {', '.join(REQUIRED)}, f_rest_*)")


def split_frames(frame_files: list[Path], cache_files: list[Path]) -> SplitFrames:
    """Find the splat attributes that change over time and write the lean per-frame cache
    files.

    Two passes, so memory holds one frame at a time plus frame 0: compare every frame's
    PLY properties with frame 0's (an attribute changes when any of its
    :attr:`SplatAttribute.sources` does), then write ``x y z`` + the changing attributes'
    columns (:func:`attribute_values`) of each frame to ``cache_files`` (atomically).

    Args:
        frame_files: the sequence, in frame order (3DGS PLY layout).
        cache_files: where the lean files go (same length).

    Returns:
        :class:`SplitFrames`.

    Raises:
        ValueError: unreadable files, files lacking 3DGS properties, or frames with
            different Gaussian counts.
    """
    if not frame_files or len(frame_files) != len(cache_files):
        raise ValueError("need one cache file per frame file, and at least one frame")
    first = read_vertices(frame_files[0])
    sh_degree = _ply.sh_degree_from_properties(first.dtype.names, where=str(frame_files[0]))
    reference, n = Path(frame_files[0]).name, len(first)
    _check_frame(first, frame_files[0], n, sh_degree, reference)
    attributes = splat_attributes(sh_degree)
    changing: set[str] = set()
    for path in frame_files[1:]:
        v = read_vertices(path)
        _check_frame(v, path, n, sh_degree, reference)
        for attr in attributes:
            if attr.name not in changing and any(not np.array_equal(v[p], first[p]) for p in attr.sources):
                changing.add(attr.name)
    split = SplitFrames(
        count=n, static={attr.name: attribute_values(first, attr, sh_degree) for attr in attributes
                         if attr.name not in changing},
        dynamic=[attr for attr in attributes if attr.name in changing],
        positions=np.stack([first[p] for p in POSITION], -1).astype(np.float32),
        cache_files=[Path(c) for c in cache_files], sh_degree=sh_degree)
    for i, (src, dst) in enumerate(zip(frame_files, cache_files)):
        v = first if i == 0 else read_vertices(src)
        columns = {p: v[p] for p in POSITION}
        for attr in split.dynamic:
            columns.update(zip(attr.columns, attribute_values(v, attr, sh_degree).T))
        write_vertices(Path(dst), columns)
    return split
