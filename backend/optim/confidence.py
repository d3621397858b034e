"""Efficient4D's confidence-aware loss (Efficient4D, arXiv 2401.08742, Sec. 3.3;
docs/design.md "Optimization: defaults with sources", *Efficient4D confidence-aware loss*).

Generated multi-view videos are not perfectly consistent over time. Efficient4D predicts
every frame of a view from its temporal neighbours; where the prediction fails the frame
is probably wrong (a flicker, a hallucinated patch, a jitter), and the photometric loss
there is down-weighted. Efficient4D interpolated with RIFE (a learned frame interpolator);
here the neighbours are warped with classical dense optical flow (OpenCV DIS or
Farnebäck), which needs no weights.

Per view ``v`` and interior frame ``t`` (see :func:`confidence_maps` for the exact rules)::

    x̂_k   = midpoint interpolation of x_{t−k}, x_{t+k} with their two optical flows,
            for k in {1, 2} with both inside the clip (x_t itself is never used)
    e_k   = ½ · (clip(1 − SSIM(x̂_k, x_t), 0, 1) + mean_rgb |x̂_k − x_t|)   per pixel
    err   = mean_k e_k          (reduce="min": min_k e_k)
    M     = max(max over the view's interior frames and pixels of err, min_max_error)
    conf  = clip((M − err) / M, 0, 1)                        first/last frame: 1

and the image loss becomes ``mean(conf · (0.8·L1 + 0.2·(1 − SSIM)))`` per pixel
(:func:`weighted_image_loss`).
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

from backend.eval.metrics import ssim_map  # the project's one SSIM map (torchmetrics)
from protocol.formats.compositing import composite_over

_WIN, _SIGMA = 11, 1.5
_C1, _C2 = 0.01 ** 2, 0.03 ** 2


def _ssim_map_np(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The SSIM map for one pair of ``[H, W, C]`` float32 numpy arrays with OpenCV blurs
    (``BORDER_REFLECT_101`` = torch's ``"reflect"`` padding); returns ``[H, W]``. Much
    faster than the batched torch convolution on one CPU core (it made confidence_maps
    ~5× faster)."""
    import cv2

    def blur(a):
        return cv2.GaussianBlur(a, (_WIN, _WIN), _SIGMA, borderType=cv2.BORDER_REFLECT_101)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + _C1) * (2 * cxy + _C2)) / ((mx * mx + my * my + _C1) * (vx + vy + _C2))
    return s.mean(-1) if s.ndim == 3 else s


def _to_rgb(images: np.ndarray) -> np.ndarray:
    """RGB float32; RGBA (straight alpha) is composited over mid-grey 0.5 so that both dark
    and light objects differ from the background and mask changes count as errors."""
    if images.shape[-1] == 4:
        return composite_over(images, 0.5).astype(np.float32)
    return images[..., :3].astype(np.float32)


def _flow_fn(method: str):
    import cv2

    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

        def flow(a, b):
            return dis.calc(a, b, None)
    elif method == "farneback":
        def flow(a, b):
            return cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=3, winsize=9, iterations=3,
                                                poly_n=5, poly_sigma=1.1, flags=0)
    else:
        raise ValueError(f"unknown optical flow method {method!r}; use 'dis' or 'farneback'")
    return flow


def neighbour_errors(rgb: np.ndarray, method: str = "dis", reduce: str = "mean",
                     check_cancelled: Optional[Callable[[], None]] = None) -> np.ndarray:
    """Prediction error of each interior frame of ONE view, interpolated from its
    neighbours without looking at the frame itself.

    For each symmetric pair (t−k, t+k), k ∈ {1, 2} inside the clip, frame t is
    interpolated at the midpoint (linear motion, as a frame interpolator like Efficient4D's
    RIFE would): with the flows F = flow(x_{t−k} → x_{t+k}) and B = flow(x_{t+k} → x_{t−k}),
    ``x̂_t(p) = ½·(x_{t−k}(p − ½F(p)) + x_{t+k}(p − ½B(p)))``. Because x_t is never used
    to build its own prediction, a frame that is shifted (jitter), re-exposed (flicker) or
    painted over (patch) disagrees with it where the damage is.

    Args:
        rgb: ``[T, H, W, 3]`` float32 in [0, 1].
        method: ``"dis"`` (OpenCV DIS, medium preset; default) or ``"farneback"``.
        reduce: how the per-pair errors combine, ``"mean"`` or ``"min"``.
        check_cancelled: called before each frame's flows; raises to stop (a job's cancel).

    Returns:
        ``[T, H, W]`` float32 error in [0, 1] (see the module docstring); rows 0 and T−1
        are 0 (not predicted).
    """
    import cv2

    T, H, W, _ = rgb.shape
    err = np.zeros((T, H, W), np.float32)
    if T < 3:
        return err
    grey = [cv2.cvtColor((f * 255.0 + 0.5).clip(0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY) for f in rgb]
    flow = _flow_fn(method)
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))

    def warp(img, f):  # img(p − ½ f(p))
        return cv2.remap(img, gx - 0.5 * f[..., 0], gy - 0.5 * f[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)

    for t in range(1, T - 1):
        if check_cancelled is not None:
            check_cancelled()
        errs = []
        for k in (1, 2):
            a, b = t - k, t + k
            if a < 0 or b >= T:
                continue
            pred = 0.5 * (warp(rgb[a], flow(grey[a], grey[b])) + warp(rgb[b], flow(grey[b], grey[a])))
            dssim = np.clip(1.0 - _ssim_map_np(pred, rgb[t]), 0.0, 1.0)
            errs.append(0.5 * (dssim + np.abs(pred - rgb[t]).mean(-1)))
        err[t] = np.mean(errs, axis=0) if reduce == "mean" else np.min(errs, axis=0)
    return err


def confidence_maps(images: Tensor, method: str = "dis", min_max_error: float = 0.25,
                    reduce: str = "mean", check_cancelled: Optional[Callable[[], None]] = None) -> Tensor:
    """Efficient4D per-pixel confidence of multi-view video frames.

    For each view v and time t with 0 < t < T−1, frame t is interpolated from each
    available symmetric pair of neighbours (t−1, t+1) and (t−2, t+2) (the second when
    inside the clip) without using x_t (:func:`neighbour_errors`; flows on 8-bit grey
    images, bilinear ``cv2.remap``, border replicated). Per pixel,
    ``e_k = ½·(clip(1 − SSIM_map(x̂_k, x_t), 0, 1) + mean_rgb|x̂_k − x_t|)`` with the
    11×11, σ = 1.5 SSIM of :func:`ssim_map`, and ``err = mean_k e_k`` ∈ [0, 1]
    (Efficient4D's average; ``reduce="min"`` takes the best pair instead).

    Normalization, per view v: ``M = max(max over interior frames and pixels of err,
    min_max_error)`` and ``conf = clip((M − err) / M, 0, 1) = clip(1 − err / M, 0, 1)``.
    So the worst pixel of the view's video gets 0 whenever its error is at least
    ``min_max_error``, and a frame that is wrong everywhere (a flicker) is down-weighted
    everywhere; the floor keeps a clean video (whose max error is only flow noise) from
    being stretched to [0, 1] — there conf stays near 1. (Per-frame normalization was
    measured too: on the corrupted-footage fit of tests/backend/test_confidence_fit.py it
    gained +0.21 dB object PSNR over the unweighted fit, per-view +0.28.) Frames 0 and T−1 get 1 (no two-sided
    prediction), as do all frames when T < 3.

    Args:
        images: ``[V, T, H, W, C]`` float in [0, 1], C = 3 (RGB) or 4 (straight-alpha RGBA,
            composited over grey 0.5 before comparing), H, W ≥ 6; any device (computed on
            CPU with OpenCV).
        method: optical flow, ``"dis"`` (default, faster) or ``"farneback"``.
        min_max_error: the floor of the per-view normaliser M (error units, [0, 1]).
        reduce: ``"mean"`` (default, Efficient4D) averages the pairs' errors, so a single
            corrupted frame also lowers the confidence of the same region in the frames
            that use it as a neighbour; ``"min"`` keeps the best pair's error, which leaves
            those frames confident where the other pair is clean.
        check_cancelled: called before each frame's flows (:func:`neighbour_errors`);
            raises to stop.

    Returns:
        ``[V, T, H, W]`` float32 in [0, 1] on the device of ``images``; no gradient.

    Raises:
        ValueError: on a wrong shape, channel count or flow method.
    """
    if images.dim() != 5 or images.shape[-1] not in (3, 4):
        raise ValueError(f"images must be [V, T, H, W, 3|4], got {tuple(images.shape)}")
    if min(images.shape[2], images.shape[3]) < 6:
        raise ValueError("images must be at least 6×6 pixels")
    _flow_fn(method)  # validate early
    if reduce not in ("mean", "min"):
        raise ValueError(f"reduce must be 'mean' or 'min', got {reduce!r}")
    V, T, H, W, _ = images.shape
    arr = images.detach().float().cpu().numpy()
    conf = np.ones((V, T, H, W), np.float32)
    for v in range(V):
        err = neighbour_errors(_to_rgb(arr[v]), method, reduce, check_cancelled)
        for t in range(1, T - 1):
            m = max(float(err[1:T - 1].max()), min_max_error)
            conf[v, t] = np.clip(1.0 - err[t] / m, 0.0, 1.0)
    return torch.from_numpy(conf).to(images.device)


def weighted_image_loss(pred: Tensor, target: Tensor, confidence: Tensor, ssim_weight: float = 0.2) -> Tensor:
    """Confidence-weighted ``(1 − λ)·L1 + λ·(1 − SSIM)`` per pixel, λ = 0.2 (3DGS image
    loss, docs/design.md "Common image loss", weighted as in Efficient4D):

    ``loss = mean_{b,y,x} conf[b,y,x] · (0.8·mean_c|pred − target| + 0.2·(1 − SSIM_map))``

    The mean is over all B·H·W pixels (not normalised by Σ conf), so down-weighting lowers
    the loss instead of re-scaling the rest. SSIM is the per-pixel map of :func:`ssim_map`;
    it pools an 11×11 window, so an error leaks into the SSIM term of pixels up to 5 px
    away: zero confidence hides an error completely only when the zero region extends 5 px
    beyond it. With confidence ≡ 1 this is the plain per-pixel 3DGS loss (SSIM reflect-
    padded at the border instead of pytorch-msssim's valid window).

    Args:
        pred, target: ``[B, H, W, 3]`` float in [0, 1] (target usually without gradient).
        confidence: ``[B, H, W]`` float in [0, 1] (e.g. rows of :func:`confidence_maps`);
            treated as a constant.
        ssim_weight: λ.

    Returns:
        Scalar loss, differentiable w.r.t. ``pred``.

    Raises:
        ValueError: when the shapes disagree.
    """
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(f"pred/target must both be [B, H, W, C]; got {tuple(pred.shape)}, {tuple(target.shape)}")
    if confidence.shape != pred.shape[:3]:
        raise ValueError(f"confidence must be [B, H, W] = {tuple(pred.shape[:3])}, got {tuple(confidence.shape)}")
    l1 = (pred - target).abs().mean(-1)
    dssim = 1.0 - ssim_map(pred, target)
    per_pixel = (1.0 - ssim_weight) * l1 + ssim_weight * dssim
    return (confidence.detach().to(per_pixel.dtype) * per_pixel).mean()
