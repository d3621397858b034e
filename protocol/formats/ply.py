"""The per-frame Gaussian PLY layout (Inria 3DGS) and its value conventions.

Layout only: reading and writing files lives in ``backend/gaussians/ply.py`` (plyfile) and
in the add-on's importer, both built on these names. One ``vertex`` element of binary
little-endian float32 properties, in this order::

    x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 f_rest_0 … f_rest_{3·(K−1)−1} opacity
    scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3

with ``K = (d + 1)²`` spherical-harmonics coefficients per colour channel for SH degree
``d``. Conventions (those of the Inria 3DGS reference code):

- positions in metres (Blender world frame); normals are zero and never read;
- ``f_dc_c``: band-0 SH coefficient of channel c; colour = ``0.5 + SH_C0 · f_dc``
  (:func:`sh0_to_rgb`);
- ``f_rest_*``: the higher coefficients stored channel-major: all of R's K−1
  coefficients, then G's, then B's, so basis ``k`` (1 … K−1) of channel ``c`` is
  ``f_rest_{c·(K−1) + k − 1}`` (:func:`f_rest_names`, :func:`pack_sh_rest`);
- ``opacity``: a logit; opacity = ``sigmoid(opacity)`` (:func:`opacity_from_logit`);
- ``scale_i``: log of the per-axis standard deviation in metres (:func:`scale_from_log`);
- ``rot_0..3``: the rotation quaternion ``w, x, y, z``, any norm
  (:func:`normalize_quaternions`).

No reserved names such as ``t`` or ``red`` are used, so Blender's PLY importers keep every
property.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

__all__ = ["SH_C0", "MAX_SH_DEGREE", "POSITION", "NORMAL", "SH_DC", "OPACITY", "SCALE", "ROTATION",
           "REQUIRED_PROPERTIES", "sh_coefficient_count", "ply_property_names", "f_rest_names",
           "sh_degree_from_rest_count", "sh_degree_from_properties", "pack_sh_rest", "unpack_sh_rest",
           "rgb_to_sh0", "sh0_to_rgb", "opacity_from_logit", "scale_from_log", "normalize_quaternions"]

#: SH band-0 constant ``1 / (2·√π)``: colour = 0.5 + SH_C0 · f_dc.
SH_C0 = 0.28209479177387814
#: Highest SH degree the importer and renderer handle.
MAX_SH_DEGREE = 3

POSITION = ("x", "y", "z")
NORMAL = ("nx", "ny", "nz")
SH_DC = ("f_dc_0", "f_dc_1", "f_dc_2")
OPACITY = "opacity"
SCALE = ("scale_0", "scale_1", "scale_2")
#: Quaternion w, x, y, z.
ROTATION = ("rot_0", "rot_1", "rot_2", "rot_3")
#: Properties every Gaussian PLY must have (besides the ``f_rest_*`` of SH degree > 0);
#: normals are optional.
REQUIRED_PROPERTIES = (*POSITION, *SH_DC, OPACITY, *SCALE, *ROTATION)


def _degree(sh_degree) -> int:
    if isinstance(sh_degree, bool) or not isinstance(sh_degree, (int, np.integer)) or sh_degree < 0:
        raise ValueError(f"SH degree must be an integer >= 0, got {sh_degree!r}")
    return int(sh_degree)


def sh_coefficient_count(sh_degree: int) -> int:
    """``K = (d + 1)²``, the SH coefficients per colour channel of degree ``d`` (DC included).

    Raises:
        ValueError: a negative or non-integer degree.
    """
    return (_degree(sh_degree) + 1) ** 2


def ply_property_names(sh_degree: int) -> list[str]:
    """Vertex property names, in file order, for SH degree ``sh_degree`` (any ``d >= 0``).

    Returns:
        ``17 + 3·((d+1)² − 1)`` names (see the module docstring).

    Raises:
        ValueError: a negative or non-integer degree.
    """
    n_rest = 3 * (sh_coefficient_count(sh_degree) - 1)
    return ([*POSITION, *NORMAL, *SH_DC] + [f"f_rest_{i}" for i in range(n_rest)]
            + [OPACITY, *SCALE, *ROTATION])


def f_rest_names(k: int, sh_degree: int) -> tuple[str, str, str]:
    """The R, G, B property names of SH basis function ``k`` (1 … K−1) at degree ``sh_degree``:
    ``f_rest_{c·(K−1) + k − 1}`` for c = 0, 1, 2 (channel-major).

    Raises:
        ValueError: ``k`` outside ``[1, K)`` or a bad degree.
    """
    rest = sh_coefficient_count(sh_degree) - 1
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= rest:
        raise ValueError(f"SH basis index must be in [1, {rest}] for degree {sh_degree}, got {k!r}")
    return tuple(f"f_rest_{c * rest + int(k) - 1}" for c in range(3))


def sh_degree_from_rest_count(n_rest: int, max_degree: int | None = MAX_SH_DEGREE, where: str = "") -> int:
    """SH degree ``d`` from the number of ``f_rest_*`` properties, ``3·((d+1)² − 1)``.

    Args:
        n_rest: how many ``f_rest_*`` properties a file has.
        max_degree: highest degree accepted (None: any).
        where: prefix for the error message (e.g. the file name).

    Raises:
        ValueError: a count that is no such number, or a degree above ``max_degree``.
    """
    def count(d: int) -> int:
        return 3 * ((d + 1) ** 2 - 1)

    degree = 0
    while count(degree) < n_rest and (max_degree is None or degree < max_degree):
        degree += 1
    if count(degree) == n_rest:
        return degree
    top = MAX_SH_DEGREE if max_degree is None else max_degree
    counts = [str(count(d)) for d in range(top + 1)]
    listed = ", ".join(counts[:-1]) + " or " + counts[-1] if len(counts) > 1 else counts[0]
    hint = (f"not SH degree 0-{top} ({listed})" if max_degree is not None
            else f"3·((d+1)² − 1) for no SH degree d ({listed}, …)")
    raise ValueError(f"{where + ': ' if where else ''}{n_rest} f_rest properties is {hint}")


def sh_degree_from_properties(names: Iterable[str], max_degree: int | None = MAX_SH_DEGREE, where: str = "") -> int:
    """SH degree of a Gaussian PLY from its vertex property names (counts ``f_rest_*``).

    Args:
        names: the vertex property names.
        max_degree: highest degree accepted (None: any).
        where: prefix for the error message (e.g. the file name).

    Raises:
        ValueError: the ``f_rest_*`` count fits no SH degree up to ``max_degree``
            (0, 9, 24 or 45 properties for degrees 0–3).
    """
    return sh_degree_from_rest_count(sum(1 for n in names if n.startswith("f_rest_")), max_degree, where)


def pack_sh_rest(sh: np.ndarray) -> np.ndarray:
    """The ``f_rest_*`` columns of SH coefficients, channel-major.

    Args:
        sh: ``[N, K, 3]`` coefficients (``sh[:, 0]`` is the DC term, not packed).

    Returns:
        ``[N, 3·(K−1)]``, column ``j`` is ``f_rest_j``.

    Raises:
        ValueError: ``sh`` not ``[N, K, 3]``.
    """
    sh = np.asarray(sh)
    if sh.ndim != 3 or sh.shape[2] != 3:
        raise ValueError(f"sh must be [N, K, 3], got {sh.shape}")
    return sh[:, 1:, :].transpose(0, 2, 1).reshape(sh.shape[0], -1)


def unpack_sh_rest(rest: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_sh_rest`: ``[N, 3·(K−1)]`` columns → ``[N, K−1, 3]`` coefficients.

    Raises:
        ValueError: ``rest`` not 2-D with a multiple of 3 columns.
    """
    rest = np.asarray(rest)
    if rest.ndim != 2 or rest.shape[1] % 3:
        raise ValueError(f"f_rest columns must be [N, 3·(K−1)], got {rest.shape}")
    return rest.reshape(rest.shape[0], 3, rest.shape[1] // 3).transpose(0, 2, 1)


def sh0_to_rgb(sh0):
    """Colour of the band-0 SH coefficient: ``0.5 + SH_C0 · sh0`` (not clamped).

    Plain arithmetic, so it works on numpy arrays (float32 stays float32), torch tensors
    and Python floats.
    """
    return 0.5 + SH_C0 * sh0


def rgb_to_sh0(rgb):
    """Band-0 SH coefficient of a colour: ``(rgb − 0.5) / SH_C0`` (inverse of :func:`sh0_to_rgb`).

    Plain arithmetic, so it works on numpy arrays, torch tensors and Python floats.
    """
    return (rgb - 0.5) / SH_C0


def opacity_from_logit(logit: np.ndarray) -> np.ndarray:
    """Opacity in (0, 1) of the stored ``opacity`` logit: ``1 / (1 + exp(−x))`` (numpy, dtype kept)."""
    x = np.asarray(logit)
    return 1 / (1 + np.exp(-x))


def scale_from_log(log_scale: np.ndarray) -> np.ndarray:
    """Standard deviation in metres of the stored ``scale_i`` log scale: ``exp(x)`` (numpy, dtype kept)."""
    return np.exp(np.asarray(log_scale))


def normalize_quaternions(quats: np.ndarray) -> np.ndarray:
    """Unit ``w, x, y, z`` quaternions of the stored ``rot_*``; a zero quaternion becomes the
    identity ``(1, 0, 0, 0)``.

    Args:
        quats: ``[N, 4]`` wxyz, any norm.

    Returns:
        A new float32 ``[N, 4]`` array.

    Raises:
        ValueError: not ``[N, 4]``.
    """
    q = np.array(quats, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != 4:
        raise ValueError(f"quaternions must be [N, 4] (w, x, y, z), got {q.shape}")
    norm = np.sqrt(np.einsum("ij,ij->i", q, q))
    zero = norm == 0
    q /= np.where(zero, np.float32(1), norm)[:, None]
    q[zero] = (1.0, 0.0, 0.0, 0.0)
    return q
