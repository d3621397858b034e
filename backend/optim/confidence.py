"""Efficient4D's confidence-aware loss (Efficient4D, arXiv 2401.08742, Sec. 3.3;
DESIGN.md "Optimization: defaults with sources", *Efficient4D confidence-aware loss*).

Generated multi-view videos are not perfectly consistent over time. Efficient4D predicts
every frame of a view from its temporal neighbours; where the prediction fails the frame
is probably wrong (a flicker, a hallucinated patch, a jitter), and the photometric loss
there is down-weighted. Efficient4D interpolated with RIFE (a learned frame interpolator);
here the neighbours are warped with classical dense optical flow (OpenCV DIS or
Farnebäck), which needs no weights.

Per view ``v`` and interior frame ``t`` (see :func:`confidence_maps` for the exact rules)::

    x̂_s   = warp(x_s, flow(x_t → x_s))                    for s in {t±1, t±2} ∩ [0, T)
    e_s   = ½ · (clip(1 − SSIM(x̂_s, x_t), 0, 1) + mean_rgb |x̂_s − x_t|)   per pixel
    err   = mean_s e_s          (reduce="min": min_s e_s)
    M     = max(max_pixels err, min_max_error)
    conf  = clip((M − err) / M, 0, 1)                        first/last frame: 1

and the image loss becomes ``mean(conf · (0.8·L1 + 0.2·(1 − SSIM)))`` per pixel
(:func:`weighted_image_loss`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from backend.eval.metrics import ssim_map  # the project's one SSIM map (torchmetrics)

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
        a = images[..., 3:]
        return (images[..., :3] * a + 0.5 * (1.0 - a)).astype(np.float32)
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


def neighbour_errors(rgb: np.ndarray, method: str = "dis", reduce: str = "mean") -> np.ndarray:
    """Prediction error of each interior frame of ONE view from its warped neighbours.

    Args:
        rgb: ``[T, H, W, 3]`` float32 in [0, 1].
        method: ``"dis"`` (OpenCV DIS, medium preset; default) or ``"farneback"``.
        reduce: how the per-neighbour errors combine, ``"mean"`` or ``"min"``.

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
    for t in range(1, T - 1):
        errs = []
        for s in (t - 2, t - 1, t + 1, t + 2):
            if 0 <= s < T:
                f = flow(grey[t], grey[s])  # x_t(p) ≈ x_s(p + f(p))
                pred = cv2.remap(rgb[s], gx + f[..., 0], gy + f[..., 1], cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
                dssim = np.clip(1.0 - _ssim_map_np(pred, rgb[t]), 0.0, 1.0)
                errs.append(0.5 * (dssim + np.abs(pred - rgb[t]).mean(-1)))
        err[t] = np.mean(errs, axis=0) if reduce == "mean" else np.min(errs, axis=0)
    return err


def confidence_maps(images: Tensor, method: str = "dis", min_max_error: float = 0.25,
                    reduce: str = "mean") -> Tensor:
    """Efficient4D per-pixel confidence of multi-view video frames.

    For each view v and time t with 0 < t < T−1, frame t is predicted from each available
    neighbour s ∈ {t−2, t−1, t+1, t+2} (t±1 always exist; t±2 when inside the clip) by
    backward-warping x_s with the dense optical flow from x_t to x_s (computed on 8-bit
    grey images, bilinear ``cv2.remap``, border replicated). Per pixel,
    ``e_s = ½·(clip(1 − SSIM_map(x̂_s, x_t), 0, 1) + mean_rgb|x̂_s − x_t|)`` with the
    11×11, σ = 1.5 SSIM of :func:`ssim_map`, and ``err = mean_s e_s`` ∈ [0, 1]
    (Efficient4D's average; ``reduce="min"`` takes the best neighbour instead).

    Normalization, per frame (v, t): ``M = max(max over pixels of err, min_max_error)`` and
    ``conf = clip((M − err) / M, 0, 1) = clip(1 − err / M, 0, 1)``. So the worst pixel of a
    frame gets 0 whenever its error is at least ``min_max_error``; the floor keeps a clean
    frame (whose max error is only flow noise, a few hundredths) from being stretched to
    [0, 1] — there conf stays near 1 everywhere. Frames 0 and T−1 get 1 (no two-sided
    prediction), as do all frames when T < 3.

    Args:
        images: ``[V, T, H, W, C]`` float in [0, 1], C = 3 (RGB) or 4 (straight-alpha RGBA,
            composited over grey 0.5 before comparing), H, W ≥ 6; any device (computed on
            CPU with OpenCV).
        method: optical flow, ``"dis"`` (default, faster) or ``"farneback"``.
        min_max_error: the floor of the per-frame normaliser M (error units, [0, 1]).
        reduce: ``"mean"`` (default, Efficient4D) averages the neighbours' errors, so a
            single corrupted frame also lowers the confidence of the same region in the
            frames that use it as a neighbour (measured: to ~0.4 where the corrupted frame
            itself gets ~0.1); ``"min"`` keeps the best neighbour's error, which leaves those
            frames confident but also forgives a frame that only one neighbour supports.

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
        err = neighbour_errors(_to_rgb(arr[v]), method, reduce)
        for t in range(1, T - 1):
            m = max(float(err[t].max()), min_max_error)
            conf[v, t] = np.clip(1.0 - err[t] / m, 0.0, 1.0)
    return torch.from_numpy(conf).to(images.device)


def weighted_image_loss(pred: Tensor, target: Tensor, confidence: Tensor, ssim_weight: float = 0.2) -> Tensor:
    """Confidence-weighted ``(1 − λ)·L1 + λ·(1 − SSIM)`` per pixel, λ = 0.2 (3DGS image
    loss, DESIGN.md "Common image loss", weighted as in Efficient4D):

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
