"""``rasterize()``: the one rendering entry point; gsplat on CUDA, the compiled (Numba) rasterizer on CPU."""

from backend.render.rasterize import rasterize, sh0_to_rgb, rgb_to_sh0

__all__ = ["rasterize", "sh0_to_rgb", "rgb_to_sh0"]
