"""Dispatch by tensor device: ``gsplat.rasterization`` for CUDA tensors, the project's own
:func:`backend.render.torch_rasterizer.rasterize_torch` for CPU tensors.

gsplat cannot run on CPU tensors (it tries to JIT-build its CUDA extension and raises
ImportError), so the device decides, never a flag. The image formation (``"3dgs"`` or ``"blender"``,
:mod:`backend.render.image_formation`) is applied around either.

The rasterizer takes *activated* tensors (gsplat's ``rasterization`` convention): linear
scales and opacities in (0, 1). The models store log scales and opacity logits (gsplat's
training-script convention); :meth:`backend.gaussians.gaussians.Gaussians.rasterization_inputs`
converts. This module imports nothing from :mod:`backend.gaussians`.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from backend.render.image_formation import rasterize_with_formation
from backend.render.numba_rasterizer import rasterize_numba
from protocol.formats.image_formation import STANDARD_3DGS


def _rasterize_gsplat(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                      backgrounds=None, eps2d=0.3, near_plane=0.01, far_plane=1e10, antialiased=False):
    """``gsplat.rasterization`` with one camera per Gaussian set (``rasterize_torch``'s signature;
    ``antialiased`` is gsplat's ``rasterize_mode="antialiased"``)."""
    import gsplat  # imported lazily: it needs CUDA and compiles on first use

    out_c, out_a, info = gsplat.rasterization(
        means, quats, scales, opacities, colors, viewmats[:, None], Ks[:, None], width, height,
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, packed=False,
        rasterize_mode="antialiased" if antialiased else "classic",
        backgrounds=None if backgrounds is None else backgrounds[:, None])
    info = dict(info)
    info["n_cameras"] = means.shape[0]
    return out_c[:, 0], out_a[:, 0], info


def rasterize(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
              viewmats: Tensor, Ks: Tensor, width: int, height: int,
              backgrounds: Optional[Tensor] = None, eps2d: Optional[float] = None,
              near_plane: float = 0.01, far_plane: float = 1e10, image_formation: str = STANDARD_3DGS):
    """Render B images, image b from Gaussians ``[b]`` through camera ``[b]``.

    One camera per Gaussian set: a 4D batch of (time, camera) pairs is flattened to B by
    the caller, which is also the ``[C, N, 2]`` layout gsplat's densification strategies
    expect.

    Args:
        means: ``[B, N, 3]`` world positions (m).
        quats: ``[B, N, 4]`` wxyz.
        scales: ``[B, N, 3]`` *linear* standard deviations (m), i.e. ``exp`` of the
            models' stored ``params["scales"]``.
        opacities: ``[B, N]`` *activated* opacities in (0, 1), i.e. ``sigmoid`` of the
            models' stored ``params["opacities"]`` logits.
        colors: ``[B, N, D]`` colours (sRGB-encoded values in either formation).
        viewmats: ``[B, 4, 4]`` world-to-camera (OpenCV); see :mod:`backend.cameras`.
        Ks: ``[B, 3, 3]`` intrinsics (pixels).
        width, height: image size in pixels.
        backgrounds: ``[B, D]`` or None (black).
        eps2d: 2D filter variance (px²); None = the formation's (0.3 for ``"3dgs"``, 0.173
            for ``"blender"``, which also keeps each splat's integral).
        image_formation: ``"3dgs"`` (standard 3DGS: sRGB values composited as they are)
            or ``"blender"`` (linear-light compositing, Blender's way);
            see :mod:`backend.render.image_formation`.

    Returns:
        ``(colors [B,H,W,D], alphas [B,H,W,1], info)`` where ``info`` has ``means2d``
        ``[B,N,2]``, ``radii [B,N,2]``, ``width``, ``height``, ``n_cameras``; colours are
        premultiplied sRGB values (over ``backgrounds`` when given).

    Raises:
        ValueError: on inconsistent batch sizes or devices.
        JobError: ``invalid_option``, an unknown ``image_formation``.
    """
    B = means.shape[0]
    if viewmats.shape[0] != B or Ks.shape[0] != B:
        raise ValueError(f"batch mismatch: means {tuple(means.shape)}, viewmats {tuple(viewmats.shape)}, "
                         f"Ks {tuple(Ks.shape)}")
    if means.device.type == "cuda":
        render = _rasterize_gsplat
    elif means.device.type == "cpu":
        render = rasterize_numba
    else:
        raise ValueError(f"unsupported device {means.device}")
    return rasterize_with_formation(render, image_formation, means, quats, scales, opacities, colors, viewmats,
                                    Ks, width, height, backgrounds=backgrounds, eps2d=eps2d,
                                    near_plane=near_plane, far_plane=far_plane)
