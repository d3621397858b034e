"""4D Gaussians with per-Gaussian trajectories (DESIGN.md "4D representation", option 1).

Position is the canonical mean plus a cubic polynomial and a few Fourier terms in time;
rotation is the canonical quaternion plus a low-degree polynomial offset (normalized on
use); scale, opacity and colour are static. N is fixed and ordered over time, and every
time in a batch evaluates in one tensor operation, so export is closed-form.

With ``poly_degree = n_fourier = rot_degree = 0`` it is a static (time-independent)
Gaussian model: the baseline that shows what the motion model earns.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from backend.gaussians.gaussians import Gaussians


@dataclass
class TrajectoryConfig:
    """Motion basis sizes.

    Attributes:
        poly_degree: degree of the position polynomial in ``τ = 2t − 1`` (0..3).
        n_fourier: number of Fourier frequencies ``sin/cos(2π f t)``, f = 1..n.
        rot_degree: degree of the quaternion offset polynomial in τ.
        sh_degree: SH degree of the static colour.
    """

    poly_degree: int = 3
    n_fourier: int = 2
    rot_degree: int = 1
    sh_degree: int = 0


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


class TrajectoryGaussians4D(nn.Module):
    """Per-Gaussian trajectory model; ``at(t)`` gives the Gaussians at times t.

    Parameters live in :attr:`params` (a ``ParameterDict`` whose every tensor has N as
    its first dim, the layout gsplat's densification strategies carry along):

    - ``means [N,3]`` canonical positions at t = 0.5 (m); ``quats [N,4]`` wxyz;
      ``scales [N,3]`` log; ``opacities [N]`` logit; ``sh0 [N,1,3]``; ``shN [N,K−1,3]``
      when ``sh_degree > 0``;
    - ``motion [N,M,3]`` coefficients of :func:`time_basis` (absent when M = 0);
    - ``rot_motion [N,R,4]`` quaternion offsets for τ¹..τ^R (absent when R = 0).
    """

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
    def num_gaussians(self) -> int:
        """N, the fixed Gaussian count."""
        return self.params["means"].shape[0]

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
        return {"kind": "trajectory", "config": asdict(self.config),
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
