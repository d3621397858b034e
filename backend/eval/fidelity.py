"""Compare two renders of the same asset (e.g. Cycles vs the backend's rasterizer, or
either vs ground truth): PSNR over the full image and the object region, and the mean
colour and alpha bias in the object region (``benchmarks/blender_fidelity.py``, issue 15).

Conventions are those of :mod:`backend.eval.metrics`: straight-alpha RGBA in [0, 1],
composited on white before colour is compared; the object region is the union of both
images' alpha > 0.5, dilated 4 px (:func:`backend.eval.metrics.object_region`, the
reference's alpha in the ground-truth slot).
"""

from __future__ import annotations

import torch
from torch import Tensor

from protocol.formats.compositing import composite_over

from .metrics import object_region, psnr


def compare_renders(candidate: Tensor, reference: Tensor) -> dict[str, float]:
    """Scores of ``candidate`` against ``reference``, averaged over the batch.

    Args:
        candidate, reference: ``[B, H, W, 4]`` float32 straight-alpha RGBA in [0, 1].

    Returns:
        ``psnr`` and ``psnr_object`` (dB, mean over images), ``colour_bias`` (mean of
        candidate − reference over the object region and the 3 channels, composited on
        white, in 1/255 units: positive = the candidate is lighter), ``colour_bias_rgb``
        (the same per channel), ``alpha_bias`` (mean alpha difference in the object
        region, in 1/255 units), ``alpha_area_ratio`` (sum of candidate alpha / sum of
        reference alpha over the whole image; 0.96 = covers 4 % less).

    Raises:
        ValueError: the shapes differ or are not ``[B, H, W, 4]``.
    """
    if candidate.shape != reference.shape or candidate.ndim != 4 or candidate.shape[-1] != 4:
        raise ValueError(f"need two [B, H, W, 4] images of one shape, got {tuple(candidate.shape)} "
                         f"and {tuple(reference.shape)}")
    cand = composite_over(candidate, 1.0)
    ref = composite_over(reference, 1.0)
    mask = object_region(reference[..., 3], candidate[..., 3])
    m = mask.to(torch.float32)[..., None]
    n = m.sum().clamp_min(1.0)
    bias_rgb = ((cand - ref) * m).sum((0, 1, 2)) / n * 255.0
    alpha_bias = ((candidate[..., 3:] - reference[..., 3:]) * m).sum() / n * 255.0
    return {
        "psnr": float(psnr(cand, ref).mean()),
        "psnr_object": float(psnr(cand, ref, mask).mean()),
        "colour_bias": float(bias_rgb.mean()),
        "colour_bias_rgb": [float(x) for x in bias_rgb],
        "alpha_bias": float(alpha_bias),
        "alpha_area_ratio": float(candidate[..., 3].sum() / reference[..., 3].sum().clamp_min(1e-6)),
    }
