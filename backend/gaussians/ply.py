"""The one place that knows the per-frame PLY layout (Inria 3DGS).

Vertex properties, binary little-endian float32, in this order::

    x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 f_rest_0..f_rest_{3*(K-1)-1} opacity
    scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3

``f_rest`` is stored channel-major as in the Inria code (all R coefficients, then G,
then B). ``opacity`` is a logit, ``scale_*`` are log scales in metres, ``rot_*`` is the
quaternion w, x, y, z. Normals are zero. No reserved names such as ``t`` or ``red``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement

#: SH band-0 constant: colour = 0.5 + SH_C0 * f_dc.
SH_C0 = 0.28209479177387814


def ply_property_names(sh_degree: int) -> list[str]:
    """Vertex property names, in file order, for a given SH degree."""
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(n_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def write_gaussians_ply(path: str | Path, means: np.ndarray, quats: np.ndarray, log_scales: np.ndarray,
                        opacity_logits: np.ndarray, sh: np.ndarray) -> None:
    """Write one frame of Gaussians as an Inria 3DGS PLY.

    Args:
        path: output file.
        means: ``[N, 3]`` positions in metres (Blender world frame).
        quats: ``[N, 4]`` wxyz (written as given; normalize first if you need to).
        log_scales: ``[N, 3]`` log of the per-axis standard deviation in metres.
        opacity_logits: ``[N]`` opacity logits.
        sh: ``[N, K, 3]`` SH coefficients, ``K = (degree+1)**2``; ``sh[:, 0]`` is the DC term.

    Raises:
        ValueError: on inconsistent shapes or a non-square K.
    """
    means = np.asarray(means, np.float32)
    n = means.shape[0]
    sh = np.asarray(sh, np.float32)
    if sh.ndim != 3 or sh.shape[0] != n or sh.shape[2] != 3:
        raise ValueError(f"sh must be [N,K,3] with N={n}, got {sh.shape}")
    k = sh.shape[1]
    degree = int(round(np.sqrt(k))) - 1
    if (degree + 1) ** 2 != k:
        raise ValueError(f"SH coefficient count {k} is not a square")
    for name, arr, width in (("quats", quats, 4), ("log_scales", log_scales, 3)):
        if np.shape(arr) != (n, width):
            raise ValueError(f"{name} must be [{n},{width}], got {np.shape(arr)}")
    if np.shape(opacity_logits) != (n,):
        raise ValueError(f"opacity_logits must be [{n}], got {np.shape(opacity_logits)}")
    rest = sh[:, 1:, :].transpose(0, 2, 1).reshape(n, -1)  # channel-major
    columns = np.concatenate([
        means, np.zeros((n, 3), np.float32), sh[:, 0, :], rest,
        np.asarray(opacity_logits, np.float32)[:, None], np.asarray(log_scales, np.float32),
        np.asarray(quats, np.float32)], axis=1)
    names = ply_property_names(degree)
    vertex = np.empty(n, dtype=[(name, "<f4") for name in names])
    for i, name in enumerate(names):
        vertex[name] = columns[:, i]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(vertex, "vertex")], byte_order="<").write(str(path))


def read_gaussians_ply(path: str | Path) -> dict[str, np.ndarray]:
    """Read an Inria 3DGS PLY.

    Returns:
        dict with float32 arrays ``means [N,3]``, ``quats [N,4]`` (wxyz), ``log_scales [N,3]``,
        ``opacity_logits [N]``, ``sh [N,K,3]``.

    Raises:
        ValueError: if the file has no vertex element or lacks a 3DGS property.
    """
    ply = PlyData.read(str(path))
    try:
        v = ply["vertex"].data
    except KeyError as exc:
        raise ValueError(f"{path}: no 'vertex' element; not a 3DGS PLY") from exc
    names = v.dtype.names
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"] + \
        [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]
    missing = [name for name in required if name not in names]
    if missing:
        raise ValueError(f"{path}: not a 3DGS PLY, missing properties {missing}")
    n_rest = sum(1 for name in names if name.startswith("f_rest_"))
    k = 1 + n_rest // 3
    col = lambda keys: np.stack([np.asarray(v[key], np.float32) for key in keys], axis=1)
    sh = np.zeros((len(v), k, 3), np.float32)
    sh[:, 0, :] = col(["f_dc_0", "f_dc_1", "f_dc_2"])
    if n_rest:
        rest = col([f"f_rest_{i}" for i in range(n_rest)]).reshape(len(v), 3, k - 1)
        sh[:, 1:, :] = rest.transpose(0, 2, 1)
    return {
        "means": col(["x", "y", "z"]),
        "quats": col([f"rot_{i}" for i in range(4)]),
        "log_scales": col([f"scale_{i}" for i in range(3)]),
        "opacity_logits": np.asarray(v["opacity"], np.float32),
        "sh": sh,
    }
