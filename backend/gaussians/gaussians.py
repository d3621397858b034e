"""A set of 3D Gaussians in the 3DGS/gsplat parameterization (one convention, everywhere)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.render.rasterize import sh0_to_rgb


@dataclass
class Gaussians:
    """3D Gaussians, optionally batched over leading dims (e.g. one set per time).

    Attributes:
        means: ``[..., N, 3]`` float32 positions in metres, Blender world frame (Z up).
        quats: ``[..., N, 4]`` wxyz rotation, normalized on use.
        log_scales: ``[..., N, 3]`` log standard deviations (m).
        opacity_logits: ``[..., N]`` opacity logits.
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

    def rasterization_inputs(self) -> dict[str, Tensor]:
        """Activated tensors for :func:`backend.render.rasterize`: normalized quats, linear
        scales, sigmoid opacities and degree-0 colours ``[..., N, 3]`` from the DC term."""
        return {
            "means": self.means,
            "quats": F.normalize(self.quats, dim=-1),
            "scales": torch.exp(self.log_scales),
            "opacities": torch.sigmoid(self.opacity_logits),
            "colors": sh0_to_rgb(self.sh[..., 0, :]),
        }

    def index(self, b: int) -> "Gaussians":
        """The b-th set of a batched ``Gaussians`` (leading dim), detached copies not made."""
        return Gaussians(self.means[b], self.quats[b], self.log_scales[b], self.opacity_logits[b], self.sh[b])
