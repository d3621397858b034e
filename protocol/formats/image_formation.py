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
  colour ``OETF(C_lin / α)``); no 2D dilation (``eps2d = 0``), as the splat ellipsoids
  have none.

Pure standard library: the manifest, the config schema and the add-on read these names.
"""

from __future__ import annotations

__all__ = ["IMAGE_FORMATIONS", "STANDARD_3DGS", "BLENDER", "LEGACY_IMAGE_FORMATION", "EPS2D"]

STANDARD_3DGS = "3dgs"
BLENDER = "blender"
#: every formation name, in display order.
IMAGE_FORMATIONS = (BLENDER, STANDARD_3DGS)
#: what assets written before the option existed were fitted with.
LEGACY_IMAGE_FORMATION = STANDARD_3DGS
#: the 2D dilation (px², added to the projected covariance's diagonal) of each formation.
EPS2D = {STANDARD_3DGS: 0.3, BLENDER: 0.0}
