"""Photometric and mask losses for reconstruction."""

from __future__ import annotations

import torch
from pytorch_msssim import ssim
from torch import Tensor


def image_loss(pred: Tensor, target: Tensor, ssim_weight: float = 0.2) -> Tensor:
    """``(1 − λ)·L1 + λ·(1 − SSIM)`` with λ = 0.2 (3DGS; docs/design.md "Common image loss").

    SSIM uses an 11×11 Gaussian window with σ = 1.5 (pytorch-msssim).

    Args:
        pred, target: ``[B, H, W, 3]`` in [0, 1].

    Returns:
        Scalar loss.
    """
    l1 = (pred - target).abs().mean()
    s = ssim(pred.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2), data_range=1.0, size_average=True)
    return (1.0 - ssim_weight) * l1 + ssim_weight * (1.0 - s)


def alpha_loss(pred_alpha: Tensor, target_alpha: Tensor) -> Tensor:
    """L1 between rendered and ground-truth alpha masks, ``[B, H, W, 1]`` each."""
    return (pred_alpha - target_alpha).abs().mean()
