"""PSNR and SSIM over the full image and inside the object region (docs/design.md "Measuring quality").

Both images are composited on white first. The object region is the union of
ground-truth and rendered alpha > 0.5, dilated by 4 px: on a plain background, the
full-image figure hides errors that the object-region figure shows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

from protocol.formats.compositing import composite_over

WHITE = torch.ones(3)


def object_region(gt_alpha: Tensor, pred_alpha: Tensor, dilate_px: int = 4) -> Tensor:
    """Boolean ``[B, H, W]`` mask: (gt alpha > 0.5 or pred alpha > 0.5), dilated by a
    square of ``dilate_px`` pixels each side. Inputs ``[B, H, W]`` in [0, 1]."""
    m = ((gt_alpha > 0.5) | (pred_alpha > 0.5)).to(torch.float32)[:, None]
    k = 2 * dilate_px + 1
    m = F.max_pool2d(m, kernel_size=k, stride=1, padding=dilate_px)
    return m[:, 0] > 0.5


def psnr(pred: Tensor, gt: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-image PSNR in dB for images in [0, 1].

    Args:
        pred, gt: ``[B, H, W, 3]``.
        mask: optional ``[B, H, W]`` bool; MSE over masked pixels only.

    Returns:
        ``[B]`` float32.
    """
    err = ((pred - gt) ** 2).mean(-1)
    if mask is None:
        mse = err.flatten(1).mean(1)
    else:
        m = mask.to(err.dtype)
        mse = (err * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1.0)
    return -10.0 * torch.log10(mse.clamp_min(1e-12))


def ssim_map(pred: Tensor, gt: Tensor) -> Tensor:
    """SSIM map ``[B, H, W]`` (mean over channels), 11×11 Gaussian window, σ 1.5."""
    _, full = structural_similarity_index_measure(pred.permute(0, 3, 1, 2), gt.permute(0, 3, 1, 2),
                                                  data_range=1.0, return_full_image=True, reduction="none")
    return full.mean(1)


def score_images(pred_rgba: Tensor, gt_rgba: Tensor) -> dict[str, list[float]]:
    """Score rendered RGBA images against ground truth RGBA (both straight alpha).

    Args:
        pred_rgba, gt_rgba: ``[B, H, W, 4]`` float in [0, 1].

    Returns:
        Per-image lists: ``psnr``, ``ssim`` (full image), ``psnr_object``,
        ``ssim_object`` (object region), and ``object_fraction``.
    """
    pred = composite_over(pred_rgba, 1.0)
    gt = composite_over(gt_rgba, 1.0)
    mask = object_region(gt_rgba[..., 3], pred_rgba[..., 3])
    smap = ssim_map(pred, gt)
    m = mask.to(smap.dtype)
    return {
        "psnr": psnr(pred, gt).tolist(),
        "ssim": smap.flatten(1).mean(1).tolist(),
        "psnr_object": psnr(pred, gt, mask).tolist(),
        "ssim_object": ((smap * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1.0)).tolist(),
        "object_fraction": m.flatten(1).mean(1).tolist(),
    }


def summarize(scores: dict[str, list[float]]) -> dict[str, float]:
    """Mean of each per-image list from :func:`score_images` (PSNR averaged in dB)."""
    return {k: float(sum(v) / max(len(v), 1)) for k, v in scores.items()}
