"""Compiled CPU 3DGS rasterizer: tile-binned front-to-back compositing in Numba, with a
hand-written backward pass, plugged into autograd.

Same semantics as :func:`backend.render.torch_rasterizer.rasterize_torch` (gsplat 1.5.3:
EWA projection, ``eps2d = 0.3``, opacity-aware boxes, pixel centres at +0.5,
``α = min(0.999, o·exp(−σ))``, pairs with ``α < 1/255`` skipped, a pixel stops before its
transmittance would fall to 1e-4). The projection is the shared, differentiable
:func:`~backend.render.torch_rasterizer.project_gaussians`; only the per-pixel
compositing, which dominates a CPU training step, runs compiled:

- **Binning** (no gradients): each image is cut into ``TILE × TILE`` tiles and every
  visible Gaussian is appended, in depth order, to the tiles its pixel box touches.
- **Forward**: one parallel task per tile; each pixel walks its tile's list front to back
  and stores its final transmittance and the end of its contributing range.
- **Backward** (the 3DGS backward, Kerbl et al. 2023, as in gsplat's
  ``rasterize_to_pixels_bwd``): each pixel walks the same range back to front, recovering
  ``T_i = T_{i+1} / (1 − α_i)``; gradients reach ``means2d``, ``conics``, ``opacities``
  and ``colors``. Each parallel chunk of tiles accumulates into its own buffer, so there
  are no write races.

Per-pair geometry and alpha are evaluated in the inputs' dtype (float32 in training,
float64 for gradcheck); transmittance, colour and gradients accumulate in float64.
"""

from __future__ import annotations

import threading
from typing import Optional

import numba
import numpy as np
import torch
from torch import Tensor

from backend.render.torch_rasterizer import (
    ALPHA_THRESHOLD,
    MAX_ALPHA,
    TRANSMITTANCE_THRESHOLD,
    pixel_boxes,
    project_gaussians,
)

#: tile edge in pixels for binning.
TILE = 4

# Kernel launches are serialized per process (jobs run in threads; Numba's workqueue
# layer, its fallback when OpenMP is missing, aborts on concurrent launches). The OpenMP
# layer is preferred: the same kernels measured 0.054 s against 0.097 s per training step
# on the workqueue layer, one thread each. Processes that run side by side (the benchmark)
# set NUMBA_NUM_THREADS to their share of the cores, so idle OpenMP threads do not spin.
_LAUNCH_LOCK = threading.Lock()


@numba.njit(cache=True)
def _bin_tiles(order, boxes, tiles_x, tiles_y):  # pragma: no cover - compiled
    """Per-tile lists of Gaussian ids in depth order.

    Args:
        order: ``[B, N]`` int64 Gaussian ids of each image sorted by depth (near first).
        boxes: ``[B, N, 4]`` int64 inclusive pixel box ``x0, x1, y0, y1`` (empty when
            ``x0 > x1`` or ``y0 > y1``).

    Returns:
        ``(offsets [B·tiles + 1] int64, ids [total] int64)``: tile ``t`` of image ``b``
        (index ``b·tiles_y·tiles_x + ty·tiles_x + tx``) owns ``ids[offsets[i]:offsets[i+1]]``.
    """
    B, N = order.shape
    per_image = tiles_x * tiles_y
    counts = np.zeros(B * per_image + 1, np.int64)
    offsets = counts
    cursor = counts
    ids = np.empty(0, np.int64)
    for fill in range(2):  # pass 0 counts entries per tile, pass 1 writes them
        if fill:
            offsets = np.cumsum(counts)
            cursor = offsets[:-1].copy()
            ids = np.empty(offsets[-1], np.int64)
        for b in range(B):
            for k in range(N):
                g = order[b, k]
                x0, x1, y0, y1 = boxes[b, g, 0], boxes[b, g, 1], boxes[b, g, 2], boxes[b, g, 3]
                if x0 > x1 or y0 > y1:
                    continue
                for ty in range(y0 // TILE, y1 // TILE + 1):
                    for tx in range(x0 // TILE, x1 // TILE + 1):
                        t = b * per_image + ty * tiles_x + tx
                        if fill:
                            ids[cursor[t]] = g
                            cursor[t] += 1
                        else:
                            counts[t + 1] += 1
    return offsets, ids


@numba.njit(parallel=True, cache=True)
def _gather_entries(ids, offsets, per_image, boxes, means2d, conics, opacities, geom, box):  # pragma: no cover
    """Fill per-list-entry copies of what the pixel loops read, contiguous.

    ``geom [E, 7]`` (the inputs' dtype) gets ``mx, my, conic a, b, c, opacity`` and the
    largest σ at which ``α ≥ 1/255`` is still possible, ``log(255·opacity)`` plus a small
    margin (pixels beyond it skip the exp; the exact test follows), and ``box [E, 4]``
    int64 the pixel box of the Gaussian behind each entry of ``ids``.
    """
    for t in numba.prange(offsets.shape[0] - 1):
        b = t // per_image
        for k in range(offsets[t], offsets[t + 1]):
            g = ids[k]
            geom[k, 0] = means2d[b, g, 0]
            geom[k, 1] = means2d[b, g, 1]
            geom[k, 2] = conics[b, g, 0]
            geom[k, 3] = conics[b, g, 1]
            geom[k, 4] = conics[b, g, 2]
            geom[k, 5] = opacities[b, g]
            geom[k, 6] = np.log(max(opacities[b, g], 1e-30) / ALPHA_THRESHOLD) + 1e-3
            for j in range(4):
                box[k, j] = boxes[b, g, j]


@numba.njit(parallel=True, cache=True, fastmath=True, error_model="numpy")
def _forward(offsets, ids, geom, box, colors, width, height, tiles_x, tiles_y,
             out_colors, out_alphas, t_final, n_end):  # pragma: no cover - compiled
    """Front-to-back compositing of every pixel (see the module docstring).

    Writes ``out_colors [B,H,W,D]`` (premultiplied, no background), ``out_alphas
    [B,H,W]``, ``t_final [B,H,W]`` float64 and ``n_end [B,H,W]`` int64 (one past the last
    contributing list entry; the tile's start when none contributes).
    """
    D = colors.shape[2]
    per_image = tiles_x * tiles_y
    for t in numba.prange(offsets.shape[0] - 1):
        b = t // per_image
        ty = (t % per_image) // tiles_x
        tx = t % tiles_x
        start, end = offsets[t], offsets[t + 1]
        acc = np.zeros(D, np.float64)
        for py in range(ty * TILE, min(height, ty * TILE + TILE)):
            for px in range(tx * TILE, min(width, tx * TILE + TILE)):
                trans = 1.0
                acc[:] = 0.0
                last = start
                for k in range(start, end):
                    if px < box[k, 0] or px > box[k, 1] or py < box[k, 2] or py > box[k, 3]:
                        continue
                    dx = geom[k, 0] - np.float32(px + 0.5)
                    dy = geom[k, 1] - np.float32(py + 0.5)
                    sigma = np.float32(0.5) * (geom[k, 2] * dx * dx + geom[k, 4] * dy * dy) + geom[k, 3] * dx * dy
                    if sigma < 0.0 or sigma > geom[k, 6]:
                        continue
                    alpha = min(np.float32(MAX_ALPHA), geom[k, 5] * np.exp(-sigma))
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    next_t = trans * (1.0 - alpha)
                    if next_t <= TRANSMITTANCE_THRESHOLD:
                        break
                    w = alpha * trans
                    g = ids[k]
                    for d in range(D):
                        acc[d] += w * colors[b, g, d]
                    trans = next_t
                    last = k + 1
                for d in range(D):
                    out_colors[b, py, px, d] = acc[d]
                out_alphas[b, py, px] = 1.0 - trans
                t_final[b, py, px] = trans
                n_end[b, py, px] = last


@numba.njit(parallel=True, cache=True, fastmath=True, error_model="numpy")
def _backward(offsets, ids, geom, box, colors, width, height, tiles_x, tiles_y,
              t_final, n_end, grad_colors, grad_alphas, n_chunks,
              v_means2d, v_conics, v_opacities, v_colors):  # pragma: no cover - compiled
    """Back-to-front gradient pass; chunk ``c`` of the tiles adds into ``v_*[c]``.

    ``grad_colors [B,H,W,D]`` and ``grad_alphas [B,H,W]`` are dL/d(output); the
    ``v_*`` buffers are ``[n_chunks, B, N, ...]`` float64, zeroed by the caller.
    """
    D = colors.shape[2]
    per_image = tiles_x * tiles_y
    n_tiles = offsets.shape[0] - 1
    for c in numba.prange(n_chunks):
        buf = np.zeros(D, np.float64)
        for t in range(c * n_tiles // n_chunks, (c + 1) * n_tiles // n_chunks):
            b = t // per_image
            ty = (t % per_image) // tiles_x
            tx = t % tiles_x
            start = offsets[t]
            for py in range(ty * TILE, min(height, ty * TILE + TILE)):
                for px in range(tx * TILE, min(width, tx * TILE + TILE)):
                    last = n_end[b, py, px]
                    if last == start:
                        continue
                    tf = t_final[b, py, px]
                    trans = tf
                    g_alpha_out = grad_alphas[b, py, px]
                    buf[:] = 0.0
                    for k in range(last - 1, start - 1, -1):
                        if px < box[k, 0] or px > box[k, 1] or py < box[k, 2] or py > box[k, 3]:
                            continue
                        dx = geom[k, 0] - np.float32(px + 0.5)
                        dy = geom[k, 1] - np.float32(py + 0.5)
                        ca, cb, cc = geom[k, 2], geom[k, 3], geom[k, 4]
                        sigma = np.float32(0.5) * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                        if sigma < 0.0 or sigma > geom[k, 6]:
                            continue
                        vis = np.exp(-sigma)
                        raw = geom[k, 5] * vis
                        alpha = min(np.float32(MAX_ALPHA), raw)
                        if alpha < ALPHA_THRESHOLD:
                            continue
                        g = ids[k]
                        inv_one_minus = 1.0 / (1.0 - alpha)
                        trans = trans * inv_one_minus  # transmittance in front of this Gaussian
                        w = alpha * trans
                        v_alpha = g_alpha_out * tf * inv_one_minus
                        for d in range(D):
                            gc = grad_colors[b, py, px, d]
                            cd = colors[b, g, d]
                            v_alpha += gc * (cd * trans - buf[d] * inv_one_minus)
                            v_colors[c, b, g, d] += w * gc
                            buf[d] += cd * w
                        if raw <= MAX_ALPHA:
                            v_sigma = -raw * v_alpha
                            v_opacities[c, b, g] += vis * v_alpha
                            v_conics[c, b, g, 0] += 0.5 * dx * dx * v_sigma
                            v_conics[c, b, g, 1] += dx * dy * v_sigma
                            v_conics[c, b, g, 2] += 0.5 * dy * dy * v_sigma
                            v_means2d[c, b, g, 0] += v_sigma * (ca * dx + cb * dy)
                            v_means2d[c, b, g, 1] += v_sigma * (cc * dy + cb * dx)


def _threads() -> int:
    return max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))


def _set_launch_threads() -> int:
    """Set Numba's thread count for this thread's next launches to :func:`_threads`; returns it.

    Numba's first launch in a process calls ``omp_set_num_threads(NUMBA_NUM_THREADS)``,
    which binds to torch's libgomp (loaded first) and would raise torch's own count in this
    thread (a fit with 1 torch thread ran its torch ops on 2 after its first render): torch's
    count is put back.
    """
    n, torch_threads = _threads(), torch.get_num_threads()
    numba.set_num_threads(n)
    if torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)
    return n


class _Composite(torch.autograd.Function):
    """Autograd wrapper of the compiled forward / backward compositing kernels."""

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, bins, width, height):
        offsets, ids, boxes, tiles_x, tiles_y = bins
        B, N, D = colors.shape
        m2, con, op, col = [x.detach().contiguous().numpy() for x in (means2d, conics, opacities, colors)]
        out_colors = np.empty((B, height, width, D), col.dtype)
        out_alphas = np.empty((B, height, width), col.dtype)
        geom = np.empty((len(ids), 7), m2.dtype)
        box = np.empty((len(ids), 4), np.int64)
        t_final = np.empty((B, height, width), np.float64)
        n_end = np.empty((B, height, width), np.int64)
        with _LAUNCH_LOCK:
            _set_launch_threads()
            _gather_entries(ids, offsets, tiles_x * tiles_y, boxes, m2, con, op, geom, box)
            _forward(offsets, ids, geom, box, col, width, height, tiles_x, tiles_y,
                     out_colors, out_alphas, t_final, n_end)
        ctx.state = (offsets, ids, geom, box, tiles_x, tiles_y, col, N, t_final, n_end, width, height)
        return torch.from_numpy(out_colors), torch.from_numpy(out_alphas)

    @staticmethod
    def backward(ctx, grad_colors, grad_alphas):
        offsets, ids, geom, box, tiles_x, tiles_y, colors, N, t_final, n_end, width, height = ctx.state
        B, _, D = colors.shape
        dtype = torch.from_numpy(colors[:0]).dtype
        grad_colors = (torch.zeros((B, height, width, D)) if grad_colors is None else grad_colors)
        grad_alphas = (torch.zeros((B, height, width)) if grad_alphas is None else grad_alphas)
        with _LAUNCH_LOCK:
            n_chunks = _set_launch_threads()
            v_means2d = np.zeros((n_chunks, B, N, 2))
            v_conics = np.zeros((n_chunks, B, N, 3))
            v_opacities = np.zeros((n_chunks, B, N))
            v_colors = np.zeros((n_chunks, B, N, D))
            _backward(offsets, ids, geom, box, colors, width, height, tiles_x, tiles_y,
                      t_final, n_end, grad_colors.detach().to(dtype).contiguous().numpy(),
                      grad_alphas.detach().to(dtype).contiguous().numpy(), n_chunks,
                      v_means2d, v_conics, v_opacities, v_colors)
        grads = [torch.from_numpy(v.sum(0)).to(dtype) for v in (v_means2d, v_conics, v_opacities, v_colors)]
        return (*grads, None, None, None)


def rasterize_numba(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                    viewmats: Tensor, Ks: Tensor, width: int, height: int,
                    backgrounds: Optional[Tensor] = None, eps2d: float = 0.3,
                    near_plane: float = 0.01, far_plane: float = 1e10, antialiased: bool = False):
    """Render B images on CPU with the compiled compositor; drop-in for ``rasterize_torch``.

    Args:
        means: ``[B, N, 3]`` float32 (or float64) world positions (m, Blender world frame).
        quats: ``[B, N, 4]`` wxyz (normalized on use).
        scales: ``[B, N, 3]`` linear standard deviations (m), not log.
        opacities: ``[B, N]`` activated opacities, not logits.
        colors: ``[B, N, D]`` per-Gaussian colour (D channels).
        viewmats: ``[B, 4, 4]`` world-to-camera (OpenCV: +Z forward, +Y down).
        Ks: ``[B, 3, 3]`` intrinsics in pixels.
        width, height: image size in pixels.
        backgrounds: ``[B, D]`` background colour, or None for black.
        eps2d, antialiased: the 2D filter, see
            :func:`~backend.render.torch_rasterizer.project_gaussians`.

    Returns:
        ``(render_colors [B,H,W,D], render_alphas [B,H,W,1], info)`` in the inputs' dtype, ``info`` as
        in ``rasterize_torch`` (``means2d`` is the graph tensor densification reads).
        Gradients flow to every float input through the projection.

    Raises:
        ValueError: for tensors that are not on the CPU.
    """
    if means.device.type != "cpu":
        raise ValueError(f"rasterize_numba renders CPU tensors, got {means.device}")
    B, N = means.shape[:2]
    means2d, conics, depths, radii, opacities = project_gaussians(
        means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane, far_plane, antialiased)
    info = {"means2d": means2d, "radii": radii, "depths": depths, "width": width, "height": height,
            "n_cameras": B, "gaussian_ids": None, "conics": conics}
    with torch.no_grad():
        x0, x1, y0, y1 = pixel_boxes(means2d, radii, width, height)
        visible = radii[..., 0] > 0
        x1 = torch.where(visible, x1, x0 - 1)  # culled Gaussians get an empty box
        boxes = torch.stack([x0, x1, y0, y1], dim=-1).contiguous().numpy()
        order = torch.argsort(depths.detach(), dim=1, stable=True).contiguous().numpy()
    tiles_x, tiles_y = -(-width // TILE), -(-height // TILE)
    offsets, ids = _bin_tiles(order, boxes, tiles_x, tiles_y)
    render_colors, alphas = _Composite.apply(means2d, conics, opacities, colors,
                                             (offsets, ids, boxes, tiles_x, tiles_y), width, height)
    render_alphas = alphas[..., None]
    if backgrounds is not None:
        render_colors = render_colors + (1.0 - render_alphas) * backgrounds[:, None, None, :]
    return render_colors, render_alphas, info
