"""Pure-PyTorch 3DGS rasterizer with gsplat 1.5.3 semantics, for CPU tensors: the reference
the compiled :mod:`backend.render.numba_rasterizer` (the CPU default) is tested against,
and the home of the shared projection.

Same conventions as ``gsplat.rasterization`` (EWA projection, ``eps2d = 0.3`` blur,
opacity-aware 3.33σ boxes, pixel centres at +0.5, ``α = min(0.999, o·exp(−σ))``,
Gaussians with ``α < 1/255`` skipped, a pixel stops before transmittance would fall to
1e-4, ``colour = Σ c·α·T + T_final·background``). Gradients come from autograd.

Design (measured on 2 CPU cores, see docs/design.md "Rendering"): a flat list of
(Gaussian, pixel) pairs, each Gaussian covering its opacity-aware on-screen box; the pairs
are sorted by pixel then depth; transmittance is a per-pixel running sum of
``log(1 − α)`` in float64; colour and alpha are scatter-added per pixel. There is no
Python loop over Gaussians.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

ALPHA_THRESHOLD = 1.0 / 255.0
TRANSMITTANCE_THRESHOLD = 1e-4
MAX_ALPHA = 0.999


def quats_to_rotmats(quats: Tensor) -> Tensor:
    """Rotation matrices from quaternions.

    Args:
        quats: ``[..., 4]`` wxyz, any norm (normalized here).

    Returns:
        ``[..., 3, 3]`` rotation matrices.
    """
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(quats.shape[:-1] + (3, 3))


def project_gaussians(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor,
                      viewmats: Tensor, Ks: Tensor, width: int, height: int,
                      eps2d: float = 0.3, near_plane: float = 0.01, far_plane: float = 1e10,
                      antialiased: bool = False):
    """EWA-project 3D Gaussians into each camera (gsplat ``fully_fused_projection``).

    Args:
        means: ``[B, N, 3]`` world positions (m).
        quats: ``[B, N, 4]`` wxyz.
        scales: ``[B, N, 3]`` linear standard deviations (m).
        opacities: ``[B, N]`` activated opacities in (0, 1).
        viewmats: ``[B, 4, 4]`` world-to-camera, OpenCV convention.
        Ks: ``[B, 3, 3]`` pinhole intrinsics in pixels.
        width, height: image size.
        eps2d: px² added to the projected covariance's diagonal.
        antialiased: gsplat's ``rasterize_mode="antialiased"`` (Mip-Splatting's 2D filter,
            Yu et al. 2024, eq. 9): the opacity is also scaled by
            ``sqrt(det Σ2d / det(Σ2d + eps2d·I))``, so the dilation is the Gaussian
            convolved with a pixel filter of variance ``eps2d`` (its integral is kept)
            instead of a larger splat. gsplat computes it in ``add_blur``
            (``ProjectionEWA3DGSFused.cu``); the opacity-aware extent uses the compensated
            opacity there and here.

    Returns:
        ``means2d [B,N,2]`` (pixels), ``conics [B,N,3]`` (a, b, c of the inverse 2D
        covariance), ``depths [B,N]``, ``radii [B,N,2]`` int32 box half-sizes (0 = culled),
        ``opacities [B,N]`` the opacities to composite with: the input's, times the
        compensation when ``antialiased``.
    """
    R = viewmats[:, None, :3, :3]
    t = viewmats[:, None, :3, 3]
    p_cam = (R @ means[..., None]).squeeze(-1) + t  # [B,N,3]
    rot = quats_to_rotmats(quats)
    M = rot * scales[..., None, :]
    cov_world = M @ M.transpose(-1, -2)
    cov_cam = R @ cov_world @ R.transpose(-1, -2)

    fx = Ks[:, None, 0, 0]
    fy = Ks[:, None, 1, 1]
    cx = Ks[:, None, 0, 2]
    cy = Ks[:, None, 1, 2]
    tx, ty, tz = p_cam.unbind(-1)
    tz_safe = torch.where(tz > near_plane, tz, torch.ones_like(tz))
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    txc = tz_safe * torch.maximum(torch.minimum(tx / tz_safe, lim_x_pos), -lim_x_neg)
    tyc = tz_safe * torch.maximum(torch.minimum(ty / tz_safe, lim_y_pos), -lim_y_neg)
    zeros = torch.zeros_like(tz_safe)
    J = torch.stack([fx / tz_safe, zeros, -fx * txc / tz_safe ** 2,
                     zeros, fy / tz_safe, -fy * tyc / tz_safe ** 2], dim=-1).reshape(tz.shape + (2, 3))
    cov2d = J @ cov_cam @ J.transpose(-1, -2)
    a = cov2d[..., 0, 0] + eps2d
    b = cov2d[..., 0, 1]
    c = cov2d[..., 1, 1] + eps2d
    det = a * c - b * b
    if antialiased:
        det_orig = cov2d[..., 0, 0] * cov2d[..., 1, 1] - b * b
        ratio = torch.where(det > 0, det_orig / torch.where(det > 0, det, torch.ones_like(det)), torch.zeros_like(det))
        opacities = opacities * torch.sqrt(ratio.clamp_min(1e-12)) * (ratio > 0)
    valid = (tz > near_plane) & (tz < far_plane) & (det > 0)
    det_safe = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    means2d = torch.stack([fx * tx / tz_safe + cx, fy * ty / tz_safe + cy], dim=-1)

    with torch.no_grad():
        extend = torch.full_like(opacities, 3.33)
        extend = torch.minimum(extend, torch.sqrt(2.0 * torch.log(
            (opacities / ALPHA_THRESHOLD).clamp_min(1.0))))
        valid = valid & (opacities >= ALPHA_THRESHOLD)
        rx = torch.ceil(extend * torch.sqrt(a.clamp_min(0)))
        ry = torch.ceil(extend * torch.sqrt(c.clamp_min(0)))
        valid = valid & ~((rx <= 0) & (ry <= 0))
        mx, my = means2d[..., 0], means2d[..., 1]
        valid = valid & (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        radii = torch.stack([rx, ry], dim=-1).to(torch.int32) * valid[..., None]
    return means2d, conics, tz, radii, opacities


def pixel_boxes(means2d: Tensor, radii: Tensor, width: int, height: int):
    """Inclusive pixel box of each Gaussian's opacity-aware extent, clipped to the image.

    Pixel centres are at +0.5: pixel ``i`` is covered when ``|i + 0.5 − m| <= r``.

    Args:
        means2d: ``[..., 2]`` projected centres (pixels).
        radii: ``[..., 2]`` int box half-sizes from :func:`project_gaussians`.

    Returns:
        ``(x0, x1, y0, y1)`` int64 ``[...]``; the box is empty when ``x0 > x1`` or
        ``y0 > y1``. Culled Gaussians (radii 0) are not masked here.
    """
    m = means2d.detach()
    r = radii.to(torch.float32)
    x0 = torch.clamp(torch.ceil(m[..., 0] - r[..., 0] - 0.5), min=0).to(torch.int64)
    x1 = torch.clamp(torch.floor(m[..., 0] + r[..., 0] - 0.5), max=width - 1).to(torch.int64)
    y0 = torch.clamp(torch.ceil(m[..., 1] - r[..., 1] - 0.5), min=0).to(torch.int64)
    y1 = torch.clamp(torch.floor(m[..., 1] + r[..., 1] - 0.5), max=height - 1).to(torch.int64)
    return x0, x1, y0, y1


def _pixel_pairs(means2d: Tensor, radii: Tensor, width: int, height: int):
    """Enumerate (image, gaussian, pixel) triples covered by each visible Gaussian's box.

    Returns ``(b_idx, g_idx, px, py)`` as flat int64 tensors (no gradients).
    """
    B, N = radii.shape[:2]
    vis = torch.nonzero((radii[..., 0] > 0).reshape(-1), as_tuple=True)[0]
    vis_b, vis_g = torch.div(vis, N, rounding_mode="floor"), vis % N
    x0, x1, y0, y1 = pixel_boxes(means2d.detach().reshape(-1, 2).index_select(0, vis),
                                 radii.reshape(-1, 2).index_select(0, vis), width, height)
    w = (x1 - x0 + 1).clamp_min(0)
    h = (y1 - y0 + 1).clamp_min(0)
    counts = w * h
    total = int(counts.sum())
    owner = torch.repeat_interleave(torch.arange(len(counts), device=radii.device), counts, output_size=total)
    start = torch.cumsum(counts, 0) - counts
    local = torch.arange(total, device=radii.device) - start.index_select(0, owner)
    w_o = w.index_select(0, owner)
    row = torch.div(local, w_o, rounding_mode="floor")
    px = x0.index_select(0, owner) + (local - row * w_o)
    py = y0.index_select(0, owner) + row
    return vis_b.index_select(0, owner), vis_g.index_select(0, owner), px, py


@torch.no_grad()
def _visible_pairs(means2d: Tensor, conics: Tensor, depths: Tensor, radii: Tensor, opacities: Tensor,
                   width: int, height: int):
    """The (Gaussian, pixel) pairs that contribute to the image, sorted by pixel then depth.

    A pair contributes when its alpha is at least 1/255 and the pixel's transmittance in
    front of it, times ``1 - alpha``, stays above 1e-4 (gsplat stops a pixel at the first
    Gaussian that would take it to 1e-4 or below). Computed without autograd, so the
    differentiable pass only touches contributing pairs.

    Returns:
        ``(flat, pixel, seg_counts)``: int64 ``[P]`` flat Gaussian index ``b·N + g``,
        flat pixel index ``(b·H + y)·W + x``, and the pair count of each pixel segment in
        order (pixels with at least one pair).
    """
    B, N = radii.shape[:2]
    b_idx, g_idx, px, py = _pixel_pairs(means2d, radii, width, height)
    flat = b_idx * N + g_idx
    m2 = means2d.reshape(-1, 2).index_select(0, flat)
    con = conics.reshape(-1, 3).index_select(0, flat)
    dx = m2[:, 0] - (px.to(m2.dtype) + 0.5)
    dy = m2[:, 1] - (py.to(m2.dtype) + 0.5)
    sigma = 0.5 * (con[:, 0] * dx * dx + con[:, 2] * dy * dy) + con[:, 1] * dx * dy
    alpha = torch.clamp_max(opacities.reshape(-1).index_select(0, flat) * torch.exp(-sigma), MAX_ALPHA)
    keep = torch.nonzero((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), as_tuple=True)[0]
    flat, alpha = flat.index_select(0, keep), alpha.index_select(0, keep)
    pixel = (flat // N * height + py.index_select(0, keep)) * width + px.index_select(0, keep)
    depth_rank = torch.empty(B * N, dtype=torch.int64, device=means2d.device)
    depth_rank[torch.argsort(depths.reshape(-1), stable=True)] = torch.arange(B * N, device=means2d.device)
    order = torch.argsort(pixel * (B * N) + depth_rank.index_select(0, flat))
    flat, pixel, alpha = flat.index_select(0, order), pixel.index_select(0, order), alpha.index_select(0, order)
    _, counts = torch.unique_consecutive(pixel, return_counts=True)
    log_t = torch.log1p(-alpha.to(torch.float64))
    incl = torch.cumsum(log_t, 0)
    seg_start = torch.cumsum(counts, 0) - counts
    excl_start = incl[seg_start] - log_t[seg_start]
    log_t_after = incl - torch.repeat_interleave(excl_start, counts)
    used = torch.nonzero(log_t_after > math.log(TRANSMITTANCE_THRESHOLD), as_tuple=True)[0]
    flat, pixel = flat.index_select(0, used), pixel.index_select(0, used)
    _, seg_counts = torch.unique_consecutive(pixel, return_counts=True)
    return flat, pixel, seg_counts


def rasterize_torch(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                    viewmats: Tensor, Ks: Tensor, width: int, height: int,
                    backgrounds: Optional[Tensor] = None, eps2d: float = 0.3,
                    near_plane: float = 0.01, far_plane: float = 1e10, antialiased: bool = False):
    """Render B images, each of its own set of N Gaussians through its own camera.

    Args:
        means: ``[B, N, 3]`` float32 world positions (m, Blender world frame).
        quats: ``[B, N, 4]`` wxyz (normalized on use).
        scales: ``[B, N, 3]`` linear standard deviations (m), not log.
        opacities: ``[B, N]`` activated opacities, not logits.
        colors: ``[B, N, D]`` per-Gaussian colour (D channels, e.g. RGB).
        viewmats: ``[B, 4, 4]`` world-to-camera (OpenCV: +Z forward, +Y down).
        Ks: ``[B, 3, 3]`` intrinsics in pixels.
        width, height: image size in pixels.
        backgrounds: ``[B, D]`` background colour, or None for black.
        eps2d, antialiased: the 2D filter, see :func:`project_gaussians`.

    Returns:
        ``(render_colors [B,H,W,D], render_alphas [B,H,W,1], info)``; ``info`` holds
        ``means2d [B,N,2]`` (graph tensor whose gradient drives densification), ``radii
        [B,N,2]``, ``depths [B,N]``, ``width``, ``height``, ``n_cameras = B`` and
        ``gaussian_ids = None``: the keys gsplat's strategies read.
    """
    B, N = means.shape[:2]
    D = colors.shape[-1]
    device = means.device
    means2d, conics, depths, radii, opacities = project_gaussians(
        means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane, far_plane, antialiased)
    info = {"means2d": means2d, "radii": radii, "depths": depths, "width": width, "height": height,
            "n_cameras": B, "gaussian_ids": None, "conics": conics}

    out_colors = torch.zeros(B * height * width, D, dtype=colors.dtype, device=device)
    out_alpha = torch.zeros(B * height * width, dtype=colors.dtype, device=device)
    flat, pixel, seg_counts = _visible_pairs(means2d, conics, depths, radii, opacities, width, height)
    if len(flat):
        # Differentiable pass over the contributing pairs only, already sorted by pixel
        # then depth: a per-pixel exclusive cumulative sum of log(1 - alpha).
        m2 = means2d.reshape(-1, 2).index_select(0, flat)
        con = conics.reshape(-1, 3).index_select(0, flat)
        px = (pixel % width).to(m2.dtype) + 0.5
        py = ((pixel // width) % height).to(m2.dtype) + 0.5
        dx = m2[:, 0] - px
        dy = m2[:, 1] - py
        sigma = 0.5 * (con[:, 0] * dx * dx + con[:, 2] * dy * dy) + con[:, 1] * dx * dy
        alpha = torch.clamp_max(opacities.reshape(-1).index_select(0, flat) * torch.exp(-sigma), MAX_ALPHA)
        log_t = torch.log1p(-alpha.to(torch.float64))
        incl = torch.cumsum(log_t, 0)
        excl = incl - log_t
        seg_start = torch.cumsum(seg_counts, 0) - seg_counts
        t_before = torch.exp(excl - torch.repeat_interleave(excl[seg_start], seg_counts)).to(alpha.dtype)
        weight = alpha * t_before
        out_colors = out_colors.index_add(0, pixel, weight[:, None] * colors.reshape(-1, D).index_select(0, flat))
        out_alpha = out_alpha.index_add(0, pixel, weight)
    render_alphas = out_alpha.reshape(B, height, width, 1)
    render_colors = out_colors.reshape(B, height, width, D)
    if backgrounds is not None:
        render_colors = render_colors + (1.0 - render_alphas) * backgrounds[:, None, None, :]
    return render_colors, render_alphas, info
