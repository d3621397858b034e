"""Render a 4D Gaussian model at (time, camera) pairs: the one path every consumer uses
(training previews, the SDS term, ``backend render``, evaluation)."""

from __future__ import annotations

import io

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor

from backend.gaussians.model import Gaussians4D
from backend.render.rasterize import rasterize
from protocol.formats.compositing import composite_over


def render_frames(model: Gaussians4D, times: Tensor, viewmats: Tensor, Ks: Tensor, width: int, height: int,
                  backgrounds: Tensor | None = None):
    """Render the model at B (time, camera) pairs, image b at ``times[b]`` through camera b,
    with the image formation the model was fitted for (``model.image_formation``).

    Args:
        model: any :class:`~backend.gaussians.model.Gaussians4D`.
        times: ``[B]`` normalized times; viewmats ``[B,4,4]`` OpenCV w2c; Ks ``[B,3,3]``
            (pixels); all on the model's device.
        width, height: image size (px).
        backgrounds: ``[B,3]`` or None (black, i.e. premultiplied colour).

    Returns:
        ``(colors [B,H,W,3], alphas [B,H,W,1], info)`` from :func:`backend.render.rasterize`.

    Raises:
        ValueError: inconsistent batch sizes or an unsupported device.
    """
    g = model.at(times)
    return rasterize(**g.rasterization_inputs(viewmats), viewmats=viewmats, Ks=Ks, width=width, height=height,
                     backgrounds=backgrounds, image_formation=model.image_formation)


def premultiplied_to_straight(colors: Tensor, alphas: Tensor) -> Tensor:
    """``[B,H,W,3]`` colour over black and ``[B,H,W,1]`` alpha → ``[B,H,W,4]`` straight RGBA
    in [0, 1] (colour 0 where alpha ≤ 1e-6)."""
    straight = torch.where(alphas > 1e-6, colors / alphas.clamp_min(1e-6), torch.zeros_like(colors))
    return torch.cat([straight.clamp(0, 1), alphas.clamp(0, 1)], dim=-1)


def render_rgba(model: Gaussians4D, viewmats: Tensor, Ks: Tensor, times: Tensor, width: int, height: int,
                batch: int = 8) -> Tensor:
    """Render ``[F,H,W,4]`` straight-alpha RGBA at F (camera, time) pairs, ``batch`` at a
    time, without gradient (inputs on the model's device; the output too)."""
    out = []
    with torch.no_grad():
        for i in range(0, len(times), batch):
            c, a, _ = render_frames(model, times[i:i + batch], viewmats[i:i + batch], Ks[i:i + batch], width, height)
            out.append(premultiplied_to_straight(c, a))
    return torch.cat(out)


def preview_png(model: Gaussians4D, footage, index: int = 0) -> bytes:
    """PNG bytes: ground truth beside the current render of training frame ``index``, on white.

    Args:
        model: the model being fitted (any device).
        footage: the training footage (anything with ``images [F,H,W,4]`` straight RGBA,
            ``times``, ``viewmats``, ``Ks``, ``width``, ``height``, as
            ``backend.pipeline.ingest.Footage``).
        index: which frame.

    Returns:
        A ``[H, 2W]`` RGB PNG.
    """
    with torch.no_grad():
        dev = model.params["means"].device
        c, _, _ = render_frames(model, footage.times[index:index + 1].to(dev), footage.viewmats[index:index + 1].to(dev),
                                footage.Ks[index:index + 1].to(dev), footage.width, footage.height,
                                torch.ones(1, 3, device=dev))
        gt_rgb = composite_over(footage.images[index], 1.0)
        strip = torch.cat([gt_rgb, c[0].cpu().clamp(0, 1)], dim=1)
    buf = io.BytesIO()
    iio.imwrite(buf, (strip.numpy() * 255).round().astype(np.uint8), extension=".png")
    return buf.getvalue()
