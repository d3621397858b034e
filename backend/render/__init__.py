"""Rendering: :func:`rasterize` (gsplat on CUDA, the compiled Numba rasterizer on CPU) and
the helpers that render a 4D model at (time, camera) pairs (:mod:`backend.render.frames`).

``sh0_to_rgb`` / ``rgb_to_sh0`` live beside :class:`~backend.gaussians.gaussians.Gaussians`
and are re-exported here for older imports.
"""

from backend.gaussians.gaussians import rgb_to_sh0, sh0_to_rgb
from backend.render.rasterize import rasterize

__all__ = ["rasterize", "sh0_to_rgb", "rgb_to_sh0"]
