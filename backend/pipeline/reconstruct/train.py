"""The training step of the reconstruct stage and what it is assembled from: the loss terms
of a config, the densification strategy, the optimizers. Nothing here knows the model's
representation: the model's own hooks (:class:`~backend.gaussians.model.Gaussians4D`)
carry what differs."""

from __future__ import annotations

import torch

from backend.errors import JobError
from backend.gaussians.model import Gaussians4D
from backend.optim.densify import Densifier, make_default_strategy
from backend.optim.loss_terms import (AlphaLoss, ConfidenceWeightedImageLoss, ImageLoss, LossTerm, ModelRegularization,
                                      RenderedBatch, RigidityLoss, SDSLoss, total_loss)
from backend.optim.optimizer import ModelOptimizer
from backend.optim.stag4d_densify import STAG4DStrategy, cap_scale_ratio
from backend.pipeline.reconstruct.training_data import TrainingData
from backend.render.rasterize import rasterize
from protocol.config import DensificationConfig, ReconstructConfig


def make_densifier(cfg: DensificationConfig, iterations: int, scene_radius: float) -> Densifier | None:
    """The densification strategy for ``cfg`` (None when off), on gsplat's contract.

    ``"stag4d"`` scales STAG4D's schedule (refine every 100 steps from 1200 to 6000 of
    8000) to ``iterations`` and its absolute prune scales (0.1, 0.001) to the scene
    radius; ``"default"`` is gsplat's 3DGS strategy. Refinement stops at
    ``int(iterations · stop_fraction)``.
    """
    if not cfg.enabled:
        return None
    stop = int(iterations * cfg.stop_fraction)
    if cfg.strategy == "stag4d":
        strategy = STAG4DStrategy(refine_start=max(cfg.start, int(iterations * 1200 / 8000)), refine_stop=stop,
                                  refine_every=cfg.every, scale_unit=scene_radius, max_gaussians=cfg.max_gaussians)
    else:
        strategy = make_default_strategy(cfg.start, stop, cfg.every, cfg.grow_grad2d, max_gaussians=cfg.max_gaussians)
    return Densifier(strategy, scene_scale=scene_radius, stop_fraction=cfg.stop_fraction)


def make_loss_terms(cfg: ReconstructConfig, generator: torch.Generator, sds=None) -> list[LossTerm]:
    """The loss terms of ``cfg``, in summation order: image (confidence-weighted when
    ``losses.confidence_weighting``), alpha, rigidity (when ``rigidity_weight > 0``), the
    model's regularization, SDS (when ``sds`` is given).

    Args:
        cfg: the reconstruct settings.
        generator: the fit's generator (rigidity's random times).
        sds: a :class:`backend.optim.sds_term.SDSTerm` or None.
    """
    lc = cfg.losses
    terms: list[LossTerm] = [ConfidenceWeightedImageLoss() if lc.confidence_weighting else ImageLoss(),
                             AlphaLoss(weight=lc.alpha_weight)]
    if lc.rigidity_weight > 0:
        terms.append(RigidityLoss(weight=lc.rigidity_weight, random_times=lc.rigidity_random_times,
                                  generator=generator))
    terms.append(ModelRegularization())
    if sds is not None:
        terms.append(SDSLoss(sds=sds, weight=lc.sds_weight, every=lc.sds_every))
    return terms


class Trainer:
    """One optimization step at a time (:meth:`step`).

    Args:
        model: the model being fitted (on the training device).
        data: the training frames.
        terms: the loss terms (:func:`make_loss_terms`).
        optimizer: the model's optimizers.
        densifier: densification or None.
        generator: the fit's generator: each step draws the batch's frame indices, then its
            backgrounds (then the loss terms draw theirs).
        iterations: total steps (the model's schedule hooks see it).
        batch_size: frames per step.
        max_scale_ratio: STAG4D's cap on each Gaussian's largest / smallest scale after
            every step; 0 = off.
    """

    def __init__(self, model: Gaussians4D, data: TrainingData, terms: list[LossTerm], optimizer: ModelOptimizer,
                 densifier: Densifier | None, generator: torch.Generator, iterations: int, batch_size: int,
                 max_scale_ratio: float = 0.0):
        self.model, self.data, self.terms, self.optimizer = model, data, terms, optimizer
        self.densifier, self.generator = densifier, generator
        self.iterations, self.batch_size, self.max_scale_ratio = iterations, batch_size, max_scale_ratio
        if densifier is not None:
            densifier.check(model.params, optimizer.per_gaussian)

    def step(self, step: int, progress: float | None = None) -> float:
        """Render a random batch, back-propagate the loss, densify, step the optimizers.

        Args:
            step: 0-based step.
            progress: the run's progress in [0, 1] on a time budget
                (:class:`.schedule.FitSchedule`); None = the schedule counts steps.

        Returns:
            The step's total loss.

        Raises:
            JobError: ``out_of_memory`` when the device runs out of memory.
        """
        model, params, opts, device = self.model, self.model.params, self.optimizer.per_gaussian, self.data.times.device
        idx = torch.randint(0, self.data.n_frames, (self.batch_size,), generator=self.generator).to(device)
        bg = torch.rand(self.batch_size, 3, generator=self.generator).to(device)
        batch = self.data.batch(step, idx, bg, progress)
        model.on_step(step, self.iterations, progress)
        try:
            g = model.at(batch.times)
            colors, alphas, info = rasterize(**g.rasterization_inputs(batch.viewmats), viewmats=batch.viewmats, Ks=batch.Ks,
                                             width=batch.width, height=batch.height, backgrounds=bg,
                                             image_formation=model.image_formation)
            loss = total_loss(self.terms, model, batch, RenderedBatch(g, colors, alphas, info))
            if self.densifier is not None:
                self.densifier.pre_backward(params, opts, step, info)
            loss.backward()
        except torch.cuda.OutOfMemoryError as exc:
            raise JobError("out_of_memory", f"the GPU ran out of memory at step {step}; use a smaller "
                                            f"preset or lower max_image_size/n_init ({exc})") from None
        if self.densifier is not None:
            self.densifier.post_backward(params, opts, step, info, progress)
        self.optimizer.step(progress)
        if self.max_scale_ratio > 0:
            with torch.no_grad():
                cap_scale_ratio(params["scales"].data, self.max_scale_ratio)
        return float(loss.detach())
