"""A set of 3D Gaussians in the 3DGS/gsplat parameterization (one convention, everywhere).

Two conventions for the same quantities, as in gsplat:

- *stored* (what :class:`Gaussians`, the models' ``params`` and the PLY files hold):
  ``log_scales`` (``params["scales"]``) are natural logs of the per-axis standard
  deviation in metres; ``opacity_logits`` (``params["opacities"]``) are logits; quats are
  unnormalized wxyz; colour is SH coefficients.
- *activated* (what :func:`backend.render.rasterize` takes, from
  :meth:`Gaussians.rasterization_inputs`): linear scales ``exp(log_scales)`` in metres,
  opacities ``sigmoid(logits)`` in (0, 1), normalized quats, RGB colours.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.gaussians.sh import sh_to_rgb
from protocol.formats.ply import rgb_to_sh0
from protocol.formats.ply import sh0_to_rgb as sh0_colour

__all__ = ["Gaussians", "sh0_to_rgb", "rgb_to_sh0"]


def sh0_to_rgb(sh0: Tensor) -> Tensor:
    """Colour from the SH DC term as gsplat does for degree 0: ``max(0, 0.5 + C0·f_dc)``
    (:func:`protocol.formats.ply.sh0_to_rgb`, clamped at 0 as gsplat's rasterizer does).

    Args:
        sh0: ``[..., 3]`` DC coefficients.

    Returns:
        ``[..., 3]`` colour in the training images' encoding (sRGB values, not linear light).
    """
    return torch.clamp_min(sh0_colour(sh0), 0.0)


@dataclass
class Gaussians:
    """3D Gaussians in the stored convention, optionally batched over leading dims (e.g.
    one set per time).

    Attributes:
        means: ``[..., N, 3]`` float32 positions in metres, Blender world frame (Z up).
        quats: ``[..., N, 4]`` wxyz rotation, normalized on use.
        log_scales: ``[..., N, 3]`` natural log of the standard deviations (m).
        opacity_logits: ``[..., N]`` opacity logits (opacity = sigmoid(logit)).
        sh: ``[..., N, K, 3]`` SH coefficients, ``K = (degree + 1)**2``; degree 0 default.
    """

    means: Tensor
    quats: Tensor
    log_scales: Tensor
    opacity_logits: Tensor
    sh: Tensor

    @property
    def sh_degree(self) -> int:
        """SH degree from the coefficient count."""
        return int(round(self.sh.shape[-2] ** 0.5)) - 1

    def rasterization_inputs(self, viewmats: Tensor | None = None) -> dict[str, Tensor]:
        """The activated tensors :func:`backend.render.rasterize` takes: ``means``,
        normalized ``quats``, linear ``scales = exp(log_scales)`` (m), ``opacities =
        sigmoid(opacity_logits)`` and ``colors [B, N, 3]``.

        Args:
            viewmats: ``[B,4,4]`` world-to-camera of the cameras set b is seen by. Needed
                when the SH degree is above 0: colour is then view-dependent
                (:func:`backend.gaussians.sh.sh_to_rgb`, gsplat's evaluation); at degree 0
                it is the DC colour and ``viewmats`` is not used.

        Raises:
            ValueError: SH degree above 0 and no ``viewmats``.
        """
        if self.sh_degree > 0:
            if viewmats is None:
                raise ValueError(f"SH degree {self.sh_degree}: view-dependent colour needs the cameras' viewmats")
            colors = sh_to_rgb(self.sh, self.means, viewmats)
        else:
            colors = sh0_to_rgb(self.sh[..., 0, :])
        return {
            "means": self.means,
            "quats": F.normalize(self.quats, dim=-1),
            "scales": torch.exp(self.log_scales),
            "opacities": torch.sigmoid(self.opacity_logits),
            "colors": colors,
        }
