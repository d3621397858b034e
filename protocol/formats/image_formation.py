"""The names of the two image formations a Gaussian asset can be fitted for.

An asset's colours only mean something together with the way the rasterizer turns them
into pixels (gen4d issue 15):

- ``"3dgs"``: the standard 3D Gaussian Splatting image formation (Kerbl et al. 2023, and
  gsplat's ``rasterization``): per-Gaussian colours are sRGB-encoded values and are
  alpha-composited as they are, and every projected 2D covariance is dilated by
  ``eps2d = 0.3`` px². What other 3DGS tools (viewers of the exported PLY sequence) do.
- ``"blender"``: the way Blender (Cycles, Eevee) renders the add-on's splats: each
  Gaussian's colour value is decoded sRGB → linear light (the splat material's emission
  colour), composited in linear light, and the composited image is encoded back to sRGB
  at the end as Blender's view transform does for a film-transparent render (straight
  colour ``OETF(C_lin / α)``). Each pixel is the image integrated over Cycles' pixel
  filter (Blackman-Harris, :data:`BLENDER_FILTER_WIDTH_PX` wide, the width "Prepare
  Scene for Splats" sets; variance :func:`blackman_harris_variance`, 0.173 px² per axis),
  modelled in two parts (:data:`EPS2D`): the composited image is convolved with the filter
  sampled at whole pixels (:func:`pixel_filter_taps`), and each projected Gaussian with a
  Gaussian of the remaining variance, its opacity scaled so its integral is kept
  (Mip-Splatting's 2D filter, gsplat's ``rasterize_mode="antialiased"``), not dilated at
  full opacity as ``"3dgs"`` does. The splat ellipsoids themselves carry no dilation;
  Cycles' filter blurs them.

Pure standard library: the manifest, the config schema and the add-on read these names.
"""

from __future__ import annotations

import math

__all__ = ["IMAGE_FORMATIONS", "STANDARD_3DGS", "BLENDER", "LEGACY_IMAGE_FORMATION", "EPS2D", "ANTIALIASED",
           "BLENDER_FILTER_WIDTH_PX", "blackman_harris_variance", "blackman_harris_weight", "COMPOSITE_FILTER",
           "pixel_filter_taps"]

STANDARD_3DGS = "3dgs"
BLENDER = "blender"
#: every formation name, in display order.
IMAGE_FORMATIONS = (BLENDER, STANDARD_3DGS)
#: what assets written before the option existed were fitted with.
LEGACY_IMAGE_FORMATION = STANDARD_3DGS
#: the pixel filter width (Cycles ``filter_width``, Blackman-Harris) a ``"blender"`` fit
#: assumes; Blender's default, and what the add-on's "Prepare Scene for Splats" sets.
BLENDER_FILTER_WIDTH_PX = 1.5


def blackman_harris_weight(x_px: float, width_px: float) -> float:
    """Cycles' Blackman-Harris pixel filter at offset ``x_px`` from the pixel centre (one axis,
    unnormalised; 1 at the centre, 0 at and beyond ``±width_px``): ``filter_func_blackman_harris``
    of ``intern/cycles/scene/film.cpp`` with ``filter_table``'s doubled width."""
    if abs(x_px) >= width_px:
        return 0.0
    v = 2.0 * math.pi * (x_px / (2.0 * width_px) + 0.5)
    return 0.35875 - 0.48829 * math.cos(v) + 0.14128 * math.cos(2 * v) - 0.01168 * math.cos(3 * v)


def blackman_harris_variance(width_px: float) -> float:
    """Per-axis variance (px²) of Cycles' Blackman-Harris pixel filter of ``width_px``.

    Cycles (``intern/cycles/scene/film.cpp``, ``filter_table``) doubles the width for this
    filter and samples ``0.35875 − 0.48829 cos v + 0.14128 cos 2v − 0.01168 cos 3v``,
    ``v = 2π(x / (2w) + 1/2)``, over ``x ∈ [−w, w]``, each axis independently. In
    ``u = x / w`` that is ``a0 + Σ a_k cos(kπu)`` with ``∫u² cos(kπu) du = 4(−1)^k / (kπ)²``
    over [−1, 1], so ``Var = w² (2a0/3 + Σ 4(−1)^k a_k / (kπ)²) / (2a0)`` = 0.0767 w².

    Raises:
        ValueError: for a negative width.
    """
    if width_px < 0:
        raise ValueError(f"filter width must be >= 0 px, got {width_px}")
    a = (0.35875, 0.48829, 0.14128, 0.01168)
    second = 2.0 * a[0] / 3.0 + sum(4.0 * (-1) ** k * a[k] / (k * math.pi) ** 2 for k in (1, 2, 3))
    return width_px ** 2 * second / (2.0 * a[0])


def pixel_filter_taps(width_px: float = BLENDER_FILTER_WIDTH_PX) -> list[float]:
    """The pixel filter sampled at whole-pixel offsets ``−k..k`` (``k = ceil(width_px) − 1``),
    normalised to sum 1: ``[0.050, 0.900, 0.050]`` at 1.5 px. The ``"blender"`` formation
    convolves the composited image with it (each axis)."""
    k = max(math.ceil(width_px) - 1, 0)
    w = [blackman_harris_weight(float(x), width_px) for x in range(-k, k + 1)]
    return [x / sum(w) for x in w]


def _taps_variance(taps: list[float]) -> float:
    k = len(taps) // 2
    return sum(t * (i - k) ** 2 for i, t in enumerate(taps))


#: the 2D filter variance (px², added to each projected covariance's diagonal) of each
#: formation. ``"blender"`` splits Cycles' filter (variance 0.173 px² per axis at 1.5 px) in
#: two: the composited image is convolved with :func:`pixel_filter_taps` (0.100 px²; what a
#: filter sampled at pixel centres can do), and each splat with a Gaussian of the rest
#: (0.073 px², keeping its integral) so that splats smaller than a pixel are seen between pixel
#: centres as Cycles' filter sees them.
EPS2D = {STANDARD_3DGS: 0.3,
         BLENDER: blackman_harris_variance(BLENDER_FILTER_WIDTH_PX) - _taps_variance(pixel_filter_taps())}
#: whether the per-splat filter keeps each splat's integral (opacity scaled by
#: ``sqrt(det Σ / det(Σ + eps2d I))``) rather than dilating it at full opacity.
ANTIALIASED = {STANDARD_3DGS: False, BLENDER: True}
#: whether the composited image is convolved with :func:`pixel_filter_taps`.
COMPOSITE_FILTER = {STANDARD_3DGS: False, BLENDER: True}
