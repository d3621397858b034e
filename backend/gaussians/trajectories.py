"""4D Gaussians with per-Gaussian trajectories (docs/design.md "4D representation", option 1).

Position is the canonical mean plus a cubic polynomial and a few Fourier terms in time;
rotation is the canonical quaternion plus a low-degree polynomial offset (normalized on
use); scale, opacity and colour are static. N is fixed and ordered over time, and every
time in a batch evaluates in one tensor operation, so export is closed-form.

With ``poly_degree = n_fourier = rot_degree = 0`` it is a static (time-independent)
Gaussian model: the baseline that shows what the motion model earns.
"""

from __future__ import annotations

import math
from dataclasses import asdict, replace

import torch
from torch import Tensor, nn

from backend.gaussians.gaussians import Gaussians
from backend.gaussians.model import Gaussians4D
from protocol.config import TrajectoryConfig

__all__ = ["TrajectoryConfig", "TrajectoryGaussians4D", "basis_for_times", "static_basis", "time_basis"]


def basis_for_times(config: TrajectoryConfig, n_times: int | None = None) -> TrajectoryConfig:
    """The motion basis cut so that ``n_times`` distinct training times pin down every
    coefficient.

    With ``n_times`` distinct times the basis keeps at most ``n_times − 1`` position
    functions (Fourier terms go first, then polynomial degree) and a rotation degree of
    at most ``n_times − 1``. Without the cut, a clip fitted on t = 0, 0.5, 1 would leave
    ``sin(2πt)`` terms (zero at all three) free, and in-between times would be arbitrary.

    Args:
        config: the requested basis.
        n_times: distinct training times; None keeps ``config`` as it is.

    Returns:
        A new :class:`TrajectoryConfig` (``sh_degree`` unchanged).
    """
    if n_times is None:
        return replace(config)
    poly, fourier, rot = config.poly_degree, config.n_fourier, config.rot_degree
    budget = max(n_times - 1, 0)
    fourier = min(fourier, max(budget - poly, 0) // 2)
    poly = min(poly, budget)
    rot = min(rot, budget)
    return replace(config, poly_degree=poly, n_fourier=fourier, rot_degree=rot)


def static_basis(config: TrajectoryConfig) -> TrajectoryConfig:
    """``config`` with an empty motion basis: the static (time-independent) model."""
    return replace(config, poly_degree=0, n_fourier=0, rot_degree=0)


def time_basis(t: Tensor, poly_degree: int, n_fourier: int) -> Tensor:
    """Position basis functions, zero at the canonical time ``t = 0.5``.

    Args:
        t: ``[B]`` normalized times in [0, 1] (frame i of T at i/(T−1)); any real t works.

    Returns:
        ``[B, M]`` with ``M = poly_degree + 2·n_fourier``: τ, τ², …, then
        ``sin(2πft) − sin(πf)``, ``cos(2πft) − cos(πf)`` for f = 1..n_fourier.
    """
    tau = 2.0 * t - 1.0
    cols = [tau ** k for k in range(1, poly_degree + 1)]
    for f in range(1, n_fourier + 1):
        cols.append(torch.sin(2 * math.pi * f * t) - math.sin(math.pi * f))
        cols.append(torch.cos(2 * math.pi * f * t) - math.cos(math.pi * f))
    if not cols:
        return t.new_zeros(t.shape[0], 0)
    return torch.stack(cols, dim=-1)


class TrajectoryGaussians4D(Gaussians4D):
    """Per-Gaussian trajectory model (a :class:`~backend.gaussians.model.Gaussians4D`);
    ``at(t)`` gives the Gaussians at times t.

    Parameters live in :attr:`params` (a ``ParameterDict`` whose every tensor has N as
    its first dim, the layout gsplat's densification strategies carry along):

    - ``means [N,3]`` canonical positions at t = 0.5 (m); ``quats [N,4]`` wxyz;
      ``scales [N,3]`` *log* standard deviations (m); ``opacities [N]`` *logits* (the
      rasterizer takes ``exp`` / ``sigmoid`` of them, see
      :meth:`~backend.gaussians.gaussians.Gaussians.rasterization_inputs`);
      ``sh0 [N,1,3]``; ``shN [N,K−1,3]`` when ``sh_degree > 0``;
    - ``motion [N,M,3]`` coefficients of :func:`time_basis` (absent when M = 0);
    - ``rot_motion [N,R,4]`` quaternion offsets for τ¹..τ^R (absent when R = 0).

    No field parameters, no regularizer, no schedule (the interface's defaults).

    Args:
        means, quats, log_scales, opacity_logits: ``[N,3]``, ``[N,4]``, ``[N,3]``, ``[N]``.
        sh: ``[N,K,3]`` SH coefficients (missing higher bands start at 0).
        config: the motion basis (:func:`basis_for_times`, :func:`static_basis`).
    """

    kind = "trajectory"

    def __init__(self, means: Tensor, quats: Tensor, log_scales: Tensor, opacity_logits: Tensor,
                 sh: Tensor, config: TrajectoryConfig):
        super().__init__()
        self.config = config
        n = means.shape[0]
        m = config.poly_degree + 2 * config.n_fourier
        params = {
            "means": means, "quats": quats, "scales": log_scales, "opacities": opacity_logits,
            "sh0": sh[:, :1, :],
        }
        if config.sh_degree > 0:
            k = (config.sh_degree + 1) ** 2
            shn = sh[:, 1:, :] if sh.shape[1] == k else sh.new_zeros(n, k - 1, 3)
            params["shN"] = shn
        if m > 0:
            params["motion"] = means.new_zeros(n, m, 3)
        if config.rot_degree > 0:
            params["rot_motion"] = means.new_zeros(n, config.rot_degree, 4)
        self.params = nn.ParameterDict({k: nn.Parameter(v.detach().clone().contiguous()) for k, v in params.items()})

    @property
    def is_static(self) -> bool:
        """True when the model has no motion terms (the static baseline)."""
        return "motion" not in self.params and "rot_motion" not in self.params

    def at(self, t: Tensor) -> Gaussians:
        """Evaluate the Gaussians at normalized times.

        Args:
            t: ``[B]`` float times; 0 and 1 are the first and last input frames.

        Returns:
            :class:`Gaussians` with leading batch dim B: means ``[B,N,3]``, quats
            ``[B,N,4]``, log_scales ``[B,N,3]``, opacity_logits ``[B,N]``, sh ``[B,N,K,3]``
            (static tensors are expanded views, not copies).
        """
        p = self.params
        t = t.to(p["means"].dtype)
        B, N = t.shape[0], self.num_gaussians
        means = p["means"].expand(B, N, 3)
        if "motion" in p:
            basis = time_basis(t, self.config.poly_degree, self.config.n_fourier)
            means = means + torch.einsum("bm,nmc->bnc", basis, p["motion"])
        quats = p["quats"].expand(B, N, 4)
        if "rot_motion" in p:
            tau = 2.0 * t - 1.0
            powers = torch.stack([tau ** k for k in range(1, self.config.rot_degree + 1)], dim=-1)
            quats = quats + torch.einsum("br,nrc->bnc", powers, p["rot_motion"])
        sh = p["sh0"] if "shN" not in p else torch.cat([p["sh0"], p["shN"]], dim=1)
        return Gaussians(
            means=means, quats=quats,
            log_scales=p["scales"].expand(B, N, 3), opacity_logits=p["opacities"].expand(B, N),
            sh=sh.expand((B,) + sh.shape))

    def state(self) -> dict:
        """Serializable state: config and parameter tensors (CPU)."""
        return {"kind": "trajectory", "config": asdict(self.config), "image_formation": self.image_formation,
                "params": {k: v.detach().cpu() for k, v in self.params.items()}}

    @classmethod
    def from_state(cls, state: dict) -> "TrajectoryGaussians4D":
        """Rebuild a model from :meth:`state`.

        Raises:
            ValueError: if the state is not a trajectory model.
        """
        if state.get("kind") != "trajectory":
            raise ValueError(f"not a trajectory model state: kind={state.get('kind')!r}")
        p = state["params"]
        cfg = TrajectoryConfig(**state["config"])
        sh = p["sh0"] if "shN" not in p else torch.cat([p["sh0"], p["shN"]], 1)
        model = cls(p["means"], p["quats"], p["scales"], p["opacities"], sh, cfg)
        with torch.no_grad():
            for k, v in p.items():
                model.params[k] = nn.Parameter(v.clone())
        return model
