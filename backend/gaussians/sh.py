"""View-dependent colour from spherical-harmonic coefficients, as 3DGS and gsplat evaluate it.

The basis is the real SH basis of 3DGS's ``utils/sh_utils.py`` and gsplat's
``spherical_harmonics`` (``gsplat/cuda/_torch_impl.py: _eval_sh_bases_fast``, after Sloan,
"Efficient Spherical Harmonic Evaluation", JCGT 2013), with the same signs and the same
coefficient order, so a PLY written here shades the same in any 3DGS viewer:

- degree 0: ``C0``;
- degree 1: ``−C1·y, C1·z, −C1·x``;
- degree 2: ``C2₀·xy, C2₁·yz, C2₂·(2z² − x² − y²), C2₃·xz, C2₄·(x² − y²)``;
- degree 3: the seven cubic terms in 3DGS's order.

``dirs`` is the direction from the camera centre to the Gaussian (``means − campos``),
normalized here; colour is ``max(0, Σ_k Y_k(dir)·c_k + 0.5)``, gsplat's ``rasterization``
with ``sh_degree`` set.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
      1.445305721320277, -0.5900435899266435)


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """The real SH basis at unit directions.

    Args:
        degree: 0 to 3.
        dirs: ``[..., 3]`` unit vectors (world frame).

    Returns:
        ``[..., (degree + 1)²]`` in 3DGS's coefficient order.

    Raises:
        ValueError: degree outside 0..3.
    """
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be 0 to 3, got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, C0)]
    if degree >= 1:
        out += [-C1 * y, C1 * z, -C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [C2[0] * x * y, C2[1] * y * z, C2[2] * (2 * zz - xx - yy), C2[3] * x * z, C2[4] * (xx - yy)]
    if degree >= 3:
        out += [C3[0] * y * (3 * xx - yy), C3[1] * x * y * z, C3[2] * y * (4 * zz - xx - yy),
                C3[3] * z * (2 * zz - 3 * xx - 3 * yy), C3[4] * x * (4 * zz - xx - yy), C3[5] * z * (xx - yy),
                C3[6] * x * (xx - 3 * yy)]
    return torch.stack(out, dim=-1)


def camera_centres(viewmats: Tensor) -> Tensor:
    """``[B,3]`` camera centres (world frame, m) of ``[B,4,4]`` world-to-camera matrices:
    ``−Rᵀt``."""
    rot, t = viewmats[:, :3, :3], viewmats[:, :3, 3]
    return -(rot.transpose(1, 2) @ t[..., None])[..., 0]


def sh_to_rgb(sh: Tensor, means: Tensor, viewmats: Tensor) -> Tensor:
    """Colour of each Gaussian as seen from each camera.

    Args:
        sh: ``[B, N, K, 3]`` or ``[N, K, 3]`` coefficients, ``K = (degree + 1)²``.
        means: ``[B, N, 3]`` or ``[N, 3]`` positions (m, world frame).
        viewmats: ``[B, 4, 4]`` world-to-camera; Gaussians set b is seen by camera b.

    Returns:
        ``[B, N, 3]`` colour ``max(0, Σ_k Y_k(d)·sh_k + 0.5)`` with ``d`` the unit vector from
        the camera centre to the Gaussian (gsplat's ``rasterization(..., sh_degree=…)``).
    """
    degree = int(round(sh.shape[-2] ** 0.5)) - 1
    dirs = F.normalize(means - camera_centres(viewmats)[:, None, :], dim=-1)  # [B, N, 3]
    basis = sh_basis(degree, dirs)  # [B, N, K]
    return torch.clamp_min((basis[..., None] * sh).sum(-2) + 0.5, 0.0)
