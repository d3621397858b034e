"""The reconstruction loss as a list of small terms, each with its weight and schedule.

A training step renders a :class:`TrainingBatch` into a :class:`RenderedBatch` and adds up
:func:`total_loss` over its terms. Each :class:`LossTerm` says when it applies
(:meth:`LossTerm.active`: e.g. SDS every k steps, rigidity only while the model moves) and
computes its unweighted value; the sum is ``Σ weight · value`` in the terms' order (the
order also fixes the order of their random draws).

Terms: :class:`ImageLoss` (``0.8·L1 + 0.2·(1 − SSIM)`` over a random background,
docs/design.md "Common image loss"), :class:`ConfidenceWeightedImageLoss` (Efficient4D),
:class:`AlphaLoss` (mask L1), :class:`RigidityLoss` (kNN isometry), :class:`ModelRegularization`
(the model's own regularizers, e.g. HexPlane plane TV), :class:`SDSLoss` (STAG4D score
distillation on novel cameras).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from backend.gaussians.gaussians import Gaussians
from backend.gaussians.model import Gaussians4D
from backend.optim.confidence import weighted_image_loss
from backend.optim.losses import alpha_loss, image_loss
from backend.optim.rigidity import LocalRigidity
from protocol.formats.compositing import composite_over


@dataclass
class TrainingBatch:
    """The B (time, camera) frames of one training step.

    Attributes:
        step: 0-based step index.
        times: ``[B]`` normalized times.
        viewmats: ``[B,4,4]`` OpenCV world-to-camera; Ks ``[B,3,3]`` intrinsics (px).
        width, height: image size (px) at this step's resolution.
        target: ``[B,H,W,4]`` straight-alpha RGBA ground truth in [0, 1].
        background: ``[B,3]`` random background colours the render and the target share.
        confidence: ``[B,H,W]`` Efficient4D confidence, or None when not used.
        target_rgb: ``[B,H,W,3]`` the target composited over ``background`` (derived).
    """

    step: int
    times: Tensor
    viewmats: Tensor
    Ks: Tensor
    width: int
    height: int
    target: Tensor
    background: Tensor
    confidence: Tensor | None = None
    target_rgb: Tensor = field(init=False)

    def __post_init__(self):
        gt = self.target
        self.target_rgb = composite_over(gt, self.background)


@dataclass
class RenderedBatch:
    """The model's render of a :class:`TrainingBatch`.

    Attributes:
        gaussians: ``model.at(batch.times)`` (batched over B).
        colors: ``[B,H,W,3]`` over the batch's backgrounds; alphas ``[B,H,W,1]``.
        info: the rasterizer's info (``means2d``, ``radii``, … for densification).
    """

    gaussians: Gaussians
    colors: Tensor
    alphas: Tensor
    info: dict[str, Any]


class LossTerm(ABC):
    """One weighted, scheduled term of the training loss.

    Attributes:
        name: short label.
        weight: multiplies :meth:`value` in :func:`total_loss`.
    """

    name: str = ""
    weight: float = 1.0

    def active(self, step: int, model: Gaussians4D) -> bool:
        """Whether the term applies at ``step`` (after the model's ``on_step``); default always."""
        return True

    @abstractmethod
    def value(self, model: Gaussians4D, batch: TrainingBatch, rendered: RenderedBatch) -> Tensor | None:
        """The unweighted scalar loss, or None when there is nothing to add this step."""


def total_loss(terms: list[LossTerm], model: Gaussians4D, batch: TrainingBatch, rendered: RenderedBatch) -> Tensor:
    """``Σ weight · value`` over the active terms, summed left to right in list order.

    Raises:
        ValueError: when no term contributes (nothing to optimize).
    """
    total = None
    for term in terms:
        if not term.active(batch.step, model):
            continue
        v = term.value(model, batch, rendered)
        if v is None:
            continue
        v = term.weight * v
        total = v if total is None else total + v
    if total is None:
        raise ValueError("no loss term contributes at this step")
    return total


@dataclass
class ImageLoss(LossTerm):
    """``0.8·L1 + 0.2·(1 − SSIM)`` between the render and the target over the same
    random background (:func:`backend.optim.losses.image_loss`)."""

    weight: float = 1.0
    name: str = "image"

    def value(self, model, batch, rendered):
        """Scalar image loss."""
        return image_loss(rendered.colors, batch.target_rgb)


@dataclass
class ConfidenceWeightedImageLoss(LossTerm):
    """Efficient4D's per-pixel confidence-weighted image loss
    (:func:`backend.optim.confidence.weighted_image_loss`); needs ``batch.confidence``."""

    weight: float = 1.0
    name: str = "confidence_image"

    def value(self, model, batch, rendered):
        """Scalar weighted image loss.

        Raises:
            ValueError: the batch carries no confidence.
        """
        if batch.confidence is None:
            raise ValueError("the confidence-weighted image loss needs a batch with confidence maps")
        return weighted_image_loss(rendered.colors, batch.target_rgb, batch.confidence)


@dataclass
class AlphaLoss(LossTerm):
    """L1 between the rendered alpha and the target's mask (:func:`backend.optim.losses.alpha_loss`)."""

    weight: float = 0.5
    name: str = "alpha"

    def value(self, model, batch, rendered):
        """Scalar alpha loss."""
        return alpha_loss(rendered.alphas, batch.target[..., 3:])


@dataclass
class RigidityLoss(LossTerm):
    """kNN local rigidity (:class:`backend.optim.rigidity.LocalRigidity`) of the positions at
    the batch's times plus ``random_times`` uniform random times (so unseen in-between
    times are held rigid too); active only while the model moves (``not model.is_static``).

    Attributes:
        generator: draws the random times (the fit's shared generator: its draws follow
            the batch's).
    """

    weight: float = 0.0
    random_times: int = 2
    generator: torch.Generator | None = None
    rigidity: LocalRigidity = field(default_factory=LocalRigidity)
    name: str = "rigidity"

    def active(self, step, model):
        """True while the model is not static."""
        return not model.is_static

    def value(self, model, batch, rendered):
        """Scalar rigidity loss (m)."""
        means_t = rendered.gaussians.means
        if self.random_times > 0:
            extra = torch.rand(self.random_times, generator=self.generator).to(batch.times.device)
            means_t = torch.cat([means_t, model.at(extra).means])
        return self.rigidity(model.params["means"], means_t)


@dataclass
class ModelRegularization(LossTerm):
    """The model's own regularizers (:meth:`Gaussians4D.regularization`, already weighted
    by the model's config; e.g. HexPlane plane TV / time smoothness / L1-time while
    deforming); contributes nothing for models without any."""

    weight: float = 1.0
    name: str = "model_regularization"

    def value(self, model, batch, rendered):
        """The model's regularization, or None."""
        return model.regularization()


@dataclass
class SDSLoss(LossTerm):
    """STAG4D score distillation on a random novel camera, every ``every``-th step.

    Attributes:
        sds: a :class:`backend.optim.sds_term.SDSTerm` (camera sampling, conditioning,
            guidance); ``sds.calls`` counts the steps it ran.
        every: run on steps ``0, every, 2·every, …``.
    """

    sds: Any = None
    weight: float = 0.0
    every: int = 1
    name: str = "sds"

    def active(self, step, model):
        """True on every ``every``-th step."""
        return step % max(self.every, 1) == 0

    def value(self, model, batch, rendered):
        """Scalar SDS loss of one novel view."""
        return self.sds.loss(model, batch.step, batch.times.device)
