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
      (:attr:`Gaussians4D.POSITION_PARAMS`) decay by ``lr_final_factor ** (1/iterations)``
      after every step, reaching ``lr_final_factor`` of their start at the end;
    - ``field``: ``Adam(model.field_param_groups(cfg))`` (default eps) or None; a group
      with a ``"final_factor"`` key decays to that fraction of its rate over the run.

    On a time budget (:mod:`backend.pipeline.reconstruct.schedule`) :meth:`step` gets the
    run's progress p and sets each decaying rate to ``start · final_factor ** p`` instead,
    so the decay completes however many steps the budget allows.

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
        self.decay = cfg.lr_final_factor ** (1.0 / max(cfg.iterations, 1))
        self.field_decay = [g.get("final_factor", 1.0) ** (1.0 / max(cfg.iterations, 1))
                            for g in (self.field.param_groups if self.field is not None else [])]
        self.final_factor = cfg.lr_final_factor
        self.start_lr = {k: lrs[k] for k in self.decaying if k in lrs}
        self.field_start = [(g["lr"], g.get("final_factor", 1.0))
                            for g in (self.field.param_groups if self.field is not None else [])]

    def step(self, progress: float | None = None) -> None:
        """Step every optimizer, clear its gradients, then decay the position-like rates
        (by one step's factor, or with ``progress`` in [0, 1] to ``start · final ** p``)."""
        for name, opt in self.per_gaussian.items():
            opt.step()
            opt.zero_grad(set_to_none=True)
            if name in self.decaying:
                for group in opt.param_groups:
                    if progress is None:
                        group["lr"] *= self.decay
                    else:
                        group["lr"] = self.start_lr[name] * self.final_factor ** progress
        if self.field is not None:
            self.field.step()
            self.field.zero_grad(set_to_none=True)
            for group, decay, (start, final) in zip(self.field.param_groups, self.field_decay, self.field_start):
                group["lr"] = group["lr"] * decay if progress is None else start * final ** progress
