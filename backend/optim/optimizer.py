"""The optimizers of a 4D Gaussian model: one Adam per per-Gaussian tensor (the pairing
gsplat's densification strategies need, so they can resize each tensor's Adam state) plus
one Adam for the model's field parameters, if any."""

from __future__ import annotations

import torch

from backend.gaussians.model import Gaussians4D
from protocol.config import OptimizationConfig


class ModelOptimizer:
    """Adam for every parameter of a :class:`~backend.gaussians.model.Gaussians4D`.

    - ``per_gaussian``: ``{key: Adam([params[key]], lr, eps=1e-15)}`` in ``params`` order,
      rates from :meth:`Gaussians4D.learning_rates`; the position-like keys
      (:attr:`Gaussians4D.POSITION_PARAMS`) decay exponentially to ``lr_final_factor``
      of their start over the run;
    - ``field``: ``Adam(model.field_param_groups(cfg))`` (default eps) or None; a group
      with a ``"final_factor"`` key decays to that fraction of its rate over the run.

    One rule for both: after each step a decaying rate is ``start · final ** p``, with p the
    run's progress, steps taken / ``iterations`` by default, or the time-budgeted progress
    the caller passes (:mod:`backend.pipeline.reconstruct.schedule`), so the decay
    completes however many steps a budget allows.

    Args:
        model: the model (its parameters on their final device).
        cfg: learning rates, iterations, final factor.
        scene_radius: scene radius in metres (scales the position-like rates).
    """

    def __init__(self, model: Gaussians4D, cfg: OptimizationConfig, scene_radius: float):
        lrs = model.learning_rates(cfg, scene_radius)
        self.per_gaussian: dict[str, torch.optim.Adam] = {
            k: torch.optim.Adam([p], lr=lrs[k], eps=1e-15) for k, p in model.params.items()}
        groups = model.field_param_groups(cfg)
        self.field: torch.optim.Adam | None = torch.optim.Adam(groups) if groups else None
        self.decaying = tuple(model.POSITION_PARAMS)
        self.iterations, self.steps_taken = max(cfg.iterations, 1), 0
        # (start rate, final factor) of every decaying group: rate = start · final ** progress
        self.schedules = {k: (lrs[k], cfg.lr_final_factor) for k in self.decaying if k in lrs}
        self.field_schedules = [(g["lr"], g.get("final_factor", 1.0))
                                for g in (self.field.param_groups if self.field is not None else [])]

    def step(self, progress: float | None = None) -> None:
        """Step every optimizer, clear its gradients, then set each decaying rate to
        ``start · final ** p``, with ``p`` the run's ``progress`` in [0, 1] after this step
        (default: steps taken / ``iterations``)."""
        self.steps_taken += 1
        p = self.steps_taken / self.iterations if progress is None else progress
        for name, opt in self.per_gaussian.items():
            opt.step()
            opt.zero_grad(set_to_none=True)
            if name in self.schedules:
                start, final = self.schedules[name]
                for group in opt.param_groups:
                    group["lr"] = start * final ** p
        if self.field is not None:
            self.field.step()
            self.field.zero_grad(set_to_none=True)
            for group, (start, final) in zip(self.field.param_groups, self.field_schedules):
                group["lr"] = start * final ** p
