"""The image formations of :mod:`protocol.formats.image_formation` around any rasterizer.

Compositing is linear in the colours, so the ``"blender"`` formation (linear-light
blending) is a colour transform before and after an unchanged rasterizer:

1. each Gaussian's colour ``c`` (sRGB-encoded, as :func:`~backend.gaussians.gaussians.sh0_to_rgb`
   gives it) is decoded to linear light, ``srgb_to_linear(c)`` — what the add-on's splat
   material feeds its Emission shader;
2. the rasterizer composites those over black, each splat convolved with part of Cycles'
   pixel filter (``eps2d``, ``antialiased``: the splat's integral is kept), and the
   composite is convolved with the rest (:func:`filter_composite`; see
   :mod:`protocol.formats.image_formation`), giving premultiplied linear colour ``C`` and
   alpha ``α`` (what Cycles writes for a film-transparent render);
3. the straight colour is encoded back, ``S = linear_to_srgb(C / α)`` (Blender's view
   transform un-premultiplies before the display encoding), and the result is returned
   premultiplied, ``α·S``, over the background in sRGB values, ``α·S + (1 − α)·bg``.

Step 3 keeps every consumer's convention: ``colors / alphas`` is the straight sRGB colour
(:func:`backend.render.frames.premultiplied_to_straight`), and the background enters the
way the ground-truth footage (straight sRGB RGBA, composited with
:func:`protocol.formats.compositing.composite_over`) and a Blender film-transparent PNG
composited over a colour do. Gradients flow through both transforms (plain torch ops).

The ``"3dgs"`` formation is the rasterizer unchanged (``eps2d = 0.3``, not antialiased).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.errors import JobError
from protocol.formats.image_formation import (ANTIALIASED, BLENDER, BLENDER_FILTER_WIDTH_PX, COMPOSITE_FILTER, EPS2D,
                                             IMAGE_FORMATIONS, STANDARD_3DGS, pixel_filter_taps)

#: below this alpha a pixel's straight colour is taken as 0 (its contribution is < 1e-6).
MIN_ALPHA = 1e-6


def check_image_formation(name: str) -> str:
    """``name`` if it is one of :data:`~protocol.formats.image_formation.IMAGE_FORMATIONS`.

    Raises:
        JobError: code ``invalid_option`` for any other value.
    """
    if name not in IMAGE_FORMATIONS:
        raise JobError("invalid_option", f"unknown image formation {name!r}; expected one of "
                                              f"{list(IMAGE_FORMATIONS)}")
    return name


def srgb_to_linear(c: Tensor) -> Tensor:
    """The exact sRGB EOTF (IEC 61966-2-1), elementwise, differentiable.

    Args:
        c: any shape, sRGB-encoded values; negatives are clamped to 0, values above 1 follow
            the power branch (as the splat material's shader nodes do).

    Returns:
        Linear-light values, same shape and dtype.
    """
    c = c.clamp_min(0.0)
    high = ((c.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4
    return torch.where(c <= 0.04045, c / 12.92, high)


def linear_to_srgb(x: Tensor) -> Tensor:
    """The exact sRGB OETF (inverse of :func:`srgb_to_linear`), elementwise, differentiable.

    Args:
        x: any shape, linear-light values; negatives are clamped to 0.

    Returns:
        sRGB-encoded values, same shape and dtype (not clamped above 1).
    """
    x = x.clamp_min(0.0)
    high = 1.055 * x.clamp_min(0.0031308) ** (1.0 / 2.4) - 0.055
    return torch.where(x <= 0.0031308, x * 12.92, high)


def linear_premultiplied_to_srgb(colors: Tensor, alphas: Tensor) -> Tensor:
    """Premultiplied linear ``C`` and alpha ``α`` → premultiplied sRGB ``α·OETF(C/α)``.

    Args:
        colors: ``[..., D]`` premultiplied linear colour (over black).
        alphas: ``[..., 1]`` alpha in [0, 1].

    Returns:
        ``[..., D]``; 0 where ``α ≤`` :data:`MIN_ALPHA`.
    """
    covered = alphas > MIN_ALPHA
    safe = torch.where(covered, alphas, torch.ones_like(alphas))
    return torch.where(covered, safe * linear_to_srgb(colors / safe), torch.zeros_like(colors))


def filter_composite(colors: Tensor, alphas: Tensor, width_px: float = BLENDER_FILTER_WIDTH_PX):
    """Convolve a premultiplied image with the separable pixel filter
    (:func:`protocol.formats.image_formation.pixel_filter_taps`), edges clamped; differentiable.

    Args:
        colors: ``[B, H, W, D]`` premultiplied colour; alphas: ``[B, H, W, 1]``.

    Returns:
        ``(colors, alphas)`` of the same shapes.
    """
    taps = torch.tensor(pixel_filter_taps(width_px), dtype=colors.dtype, device=colors.device)
    n = len(taps)
    if n == 1:
        return colors, alphas
    x = torch.cat([colors, alphas], -1).permute(0, 3, 1, 2)  # [B, D+1, H, W]
    c = x.shape[1]
    p = n // 2
    x = F.conv2d(F.pad(x, (p, p, 0, 0), mode="replicate"), taps.view(1, 1, 1, n).expand(c, 1, 1, n), groups=c)
    x = F.conv2d(F.pad(x, (0, 0, p, p), mode="replicate"), taps.view(1, 1, n, 1).expand(c, 1, n, 1), groups=c)
    x = x.permute(0, 2, 3, 1)
    return x[..., :-1], x[..., -1:]


def rasterize_with_formation(render: Callable, image_formation: str, means: Tensor, quats: Tensor, scales: Tensor,
                             opacities: Tensor, colors: Tensor, viewmats: Tensor, Ks: Tensor, width: int,
                             height: int, backgrounds: Optional[Tensor] = None, eps2d: Optional[float] = None,
                             antialiased: Optional[bool] = None, composite_filter: Optional[bool] = None,
                             **kwargs):
    """Render with ``render`` (a function with :func:`~backend.render.torch_rasterizer.rasterize_torch`'s
    signature) under ``image_formation`` (see the module docstring).

    Args:
        render: the raw rasterizer (gsplat wrapper, Numba or torch reference).
        image_formation: ``"3dgs"`` or ``"blender"``.
        colors: ``[B, N, D]`` per-Gaussian colours, sRGB-encoded values in both formations.
        backgrounds: ``[B, D]`` sRGB background colours, or None (black).
        eps2d: the 2D filter variance (px²); None = the formation's
            (:data:`~protocol.formats.image_formation.EPS2D`: 0.3 for ``"3dgs"``, 0.173 for
            ``"blender"``). Whether it keeps the splat's integral is the formation's
            (:data:`~protocol.formats.image_formation.ANTIALIASED`) unless ``antialiased``
            is given.
        composite_filter: whether to convolve the composite with the pixel filter
            (:func:`filter_composite`); None = the formation's
            (:data:`~protocol.formats.image_formation.COMPOSITE_FILTER`).
        means, quats, scales, opacities, viewmats, Ks, width, height, kwargs: passed on.

    Returns:
        ``(colors [B,H,W,D], alphas [B,H,W,1], info)`` as ``render`` returns them, colours
        premultiplied sRGB values (over ``backgrounds`` when given).

    Raises:
        JobError: ``invalid_option``, an unknown formation.
    """
    check_image_formation(image_formation)
    eps = EPS2D[image_formation] if eps2d is None else eps2d
    aa = ANTIALIASED[image_formation] if antialiased is None else antialiased
    if image_formation == STANDARD_3DGS:
        return render(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                      backgrounds=backgrounds, eps2d=eps, antialiased=aa, **kwargs)
    assert image_formation == BLENDER
    out_c, out_a, info = render(means, quats, scales, opacities, srgb_to_linear(colors), viewmats, Ks, width,
                                height, backgrounds=None, eps2d=eps, antialiased=aa, **kwargs)
    if COMPOSITE_FILTER[image_formation] if composite_filter is None else composite_filter:
        out_c, out_a = filter_composite(out_c, out_a)
    out_c = linear_premultiplied_to_srgb(out_c, out_a)
    if backgrounds is not None:
        out_c = out_c + (1.0 - out_a) * backgrounds[:, None, None, :]
    return out_c, out_a, info
