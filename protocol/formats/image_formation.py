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
  Scene for Splats" sets): each projected Gaussian is convolved with a Gaussian of the
  filter's variance (:func:`blackman_harris_variance`, 0.173 px² per axis) and its
  opacity scaled so its integral is kept (Mip-Splatting's 2D filter, gsplat's
  ``rasterize_mode="antialiased"``), not dilated at full opacity as ``"3dgs"`` does. The
  splat ellipsoids themselves carry no dilation; Cycles' filter blurs them.

Pure standard library: the manifest, the config schema and the add-on read these names.
"""

from __future__ import annotations

import math

__all__ = ["IMAGE_FORMATIONS", "STANDARD_3DGS", "BLENDER", "LEGACY_IMAGE_FORMATION", "EPS2D", "ANTIALIASED",
           "BLENDER_FILTER_WIDTH_PX", "blackman_harris_variance"]

STANDARD_3DGS = "3dgs"
BLENDER = "blender"
#: every formation name, in display order.
IMAGE_FORMATIONS = (BLENDER, STANDARD_3DGS)
#: what assets written before the option existed were fitted with.
LEGACY_IMAGE_FORMATION = STANDARD_3DGS
#: the pixel filter width (Cycles ``filter_width``, Blackman-Harris) a ``"blender"`` fit
#: assumes; Blender's default, and what the add-on's "Prepare Scene for Splats" sets.
BLENDER_FILTER_WIDTH_PX = 1.5


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


#: the 2D filter variance (px², added to the projected covariance's diagonal) of each formation.
EPS2D = {STANDARD_3DGS: 0.3, BLENDER: blackman_harris_variance(BLENDER_FILTER_WIDTH_PX)}
#: whether the filter keeps each splat's integral (opacity scaled by
#: ``sqrt(det Σ / det(Σ + eps2d I))``) rather than dilating it at full opacity.
ANTIALIASED = {STANDARD_3DGS: False, BLENDER: True}
