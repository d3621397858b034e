"""Reading and writing per-frame Gaussian PLY files (plyfile), in the Inria 3DGS layout
that :mod:`protocol.formats.ply` defines (property names and order, channel-major
``f_rest``, logit opacity, log scales, wxyz quaternions; see its docstring).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement

from protocol.formats.ply import (OPACITY, POSITION, REQUIRED_PROPERTIES, ROTATION, SCALE, SH_C0, SH_DC,
                                  pack_sh_rest, ply_property_names, sh_degree_from_properties, unpack_sh_rest)

__all__ = ["SH_C0", "ply_property_names", "write_gaussians_ply", "read_gaussians_ply"]


def write_gaussians_ply(path: str | Path, means: np.ndarray, quats: np.ndarray, log_scales: np.ndarray,
                        opacity_logits: np.ndarray, sh: np.ndarray) -> None:
    """Write one frame of Gaussians as an Inria 3DGS PLY (binary little-endian float32).

    Args:
        path: output file (its folder is created).
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
    columns = np.concatenate([
        means, np.zeros((n, 3), np.float32), sh[:, 0, :], pack_sh_rest(sh),
        np.asarray(opacity_logits, np.float32)[:, None], np.asarray(log_scales, np.float32),
        np.asarray(quats, np.float32)], axis=1)
    names = ply_property_names(degree)
    vertex = np.empty(n, dtype=[(name, "<f4") for name in names])
    for i, name in enumerate(names):
        vertex[name] = columns[:, i]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(vertex, "vertex")], byte_order="<").write(str(path))


def read_gaussians_ply(path: str | Path) -> dict[str, np.ndarray]:
    """Read an Inria 3DGS PLY (any SH degree).

    Returns:
        dict with float32 arrays ``means [N,3]``, ``quats [N,4]`` (wxyz), ``log_scales [N,3]``,
        ``opacity_logits [N]``, ``sh [N,K,3]``.

    Raises:
        ValueError: if the file has no vertex element, lacks a 3DGS property, or has an
            ``f_rest_*`` count that fits no SH degree.
    """
    ply = PlyData.read(str(path))
    try:
        v = ply["vertex"].data
    except KeyError as exc:
        raise ValueError(f"{path}: no 'vertex' element; not a 3DGS PLY") from exc
    names = v.dtype.names
    missing = [name for name in REQUIRED_PROPERTIES if name not in names]
    if missing:
        raise ValueError(f"{path}: not a 3DGS PLY, missing properties {missing}")
    degree = sh_degree_from_properties(names, max_degree=None, where=str(path))
    k = (degree + 1) ** 2
    col = lambda keys: np.stack([np.asarray(v[key], np.float32) for key in keys], axis=1)
    sh = np.zeros((len(v), k, 3), np.float32)
    sh[:, 0, :] = col(SH_DC)
    if k > 1:
        sh[:, 1:, :] = unpack_sh_rest(col([f"f_rest_{i}" for i in range(3 * (k - 1))]))
    return {
        "means": col(POSITION),
        "quats": col(ROTATION),
        "log_scales": col(SCALE),
        "opacity_logits": np.asarray(v[OPACITY], np.float32),
        "sh": sh,
    }
