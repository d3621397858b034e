"""Score distillation (SDS, DreamFusion, Poole et al. 2022, Eq. 3) with STAG4D's settings.

STAG4D (Sec. 3.3 and its public config; DESIGN.md "SDS") distils a camera-conditioned
Zero123-XL into the 4D Gaussians for cameras the generated views do not cover:

- CFG scale 5; per-timestep weight ``w(t) = 1 − ᾱ_t``;
- ``t ~ U[t_min, t_max]·T_train`` with the window annealed linearly over 3000 iterations
  from [0.50, 0.95] to [0.02, 0.50];
- nearest-view conditioning: within ±30° of the input azimuth, or with probability 0.6,
  condition on the input frame; otherwise on the generated view ⌊az/60°⌋ (the
  Zero123++ view at 30° + 60°·i), with the pose relative to that view.

The SDS gradient on latents z is ``w(t)·(ε̂(z_t; y, t) − ε)``; :func:`sds_loss` turns it
into a loss whose gradient w.r.t. z is exactly that (the usual stop-gradient trick), so
it flows back through the VAE encoder and the rasterizer into the Gaussians.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
from torch import Tensor

#: STAG4D's SDS settings.
SDS_CFG_SCALE = 5.0
SDS_ANNEAL_ITERS = 3000
SDS_T_START = (0.50, 0.95)  # (min, max) fraction of the training timesteps at iteration 0
SDS_T_END = (0.02, 0.50)    # ... after SDS_ANNEAL_ITERS
INPUT_VIEW_HALF_ANGLE_DEG = 30.0
INPUT_VIEW_PROBABILITY = 0.6
GENERATED_VIEW_STEP_DEG = 60.0


def timestep_window(iteration: int, anneal_iters: int = SDS_ANNEAL_ITERS,
                    start: tuple[float, float] = SDS_T_START, end: tuple[float, float] = SDS_T_END
                    ) -> tuple[float, float]:
    """The ``(t_min, t_max)`` fractions of the training timesteps at ``iteration``:
    linear from ``start`` to ``end`` over ``anneal_iters``, then constant.

    Raises:
        ValueError: negative iteration or non-positive ``anneal_iters``.
    """
    if iteration < 0 or anneal_iters <= 0:
        raise ValueError("iteration must be >= 0 and anneal_iters > 0")
    r = min(iteration / anneal_iters, 1.0)
    return start[0] + r * (end[0] - start[0]), start[1] + r * (end[1] - start[1])


def sample_timestep(iteration: int, num_train_timesteps: int, generator: torch.Generator | None = None,
                    anneal_iters: int = SDS_ANNEAL_ITERS) -> int:
    """An integer timestep drawn uniformly from the annealed window (inclusive)."""
    lo, hi = timestep_window(iteration, anneal_iters)
    lo_i, hi_i = int(lo * num_train_timesteps), max(int(hi * num_train_timesteps), int(lo * num_train_timesteps))
    return int(torch.randint(lo_i, hi_i + 1, (1,), generator=generator))


def sds_weight(alphas_cumprod: Tensor, t: int) -> float:
    """``w(t) = 1 − ᾱ_t`` (STAG4D)."""
    return float(1.0 - alphas_cumprod[t])


def wrap_deg(a):
    """An angle (float or tensor, degrees) wrapped to [−180°, 180°)."""
    return (a + 180.0) % 360.0 - 180.0


@dataclass(frozen=True)
class Conditioning:
    """Which image conditions the guidance model for a sampled camera.

    Attributes:
        view: −1 for the input frame, else the index i of the generated view (azimuth
            ``30° + 60°·i`` relative to the input).
        delta_elevation_deg, delta_azimuth_deg: the sampled camera's pose relative to the
            conditioning view (azimuth wrapped to [−180°, 180°)).
    """

    view: int
    delta_elevation_deg: float
    delta_azimuth_deg: float


def nearest_view(azimuth_deg: float, elevation_deg: float, view_elevations_deg, rng: random.Random | None = None,
                 input_elevation_deg: float = 0.0) -> Conditioning:
    """STAG4D's nearest-view conditioning for a camera at ``azimuth_deg`` relative to the
    input view (degrees, any range).

    Args:
        azimuth_deg, elevation_deg: the sampled camera.
        view_elevations_deg: elevations of the six generated views.
        rng: source of the 0.6 coin (``random.Random``); None: the module's.
        input_elevation_deg: the input view's elevation.

    Returns:
        :class:`Conditioning`.
    """
    rel = wrap_deg(azimuth_deg)
    coin = (rng or random).random()
    if abs(rel) <= INPUT_VIEW_HALF_ANGLE_DEG or coin < INPUT_VIEW_PROBABILITY:
        return Conditioning(-1, elevation_deg - input_elevation_deg, rel)
    i = int(math.floor((azimuth_deg % 360.0) / GENERATED_VIEW_STEP_DEG))
    view_az = 30.0 + GENERATED_VIEW_STEP_DEG * i
    return Conditioning(i, elevation_deg - float(view_elevations_deg[i]), wrap_deg(azimuth_deg - view_az))


def sds_loss(latents: Tensor, eps_fn, t: int, alphas_cumprod: Tensor, guidance_scale: float = SDS_CFG_SCALE,
             generator: torch.Generator | None = None) -> Tensor:
    """SDS loss on latents (DreamFusion Eq. 3, STAG4D's weight and CFG).

    Args:
        latents: ``[B, C, h, w]`` differentiable latents of the rendered views.
        eps_fn: ``eps_fn(noisy [B,C,h,w], t) -> (eps_uncond, eps_cond)`` of the guidance
            model (no gradient needed).
        t: integer timestep.
        alphas_cumprod: ``[T_train]`` of the guidance scheduler.
        guidance_scale: CFG scale.
        generator: RNG of the noise ε.

    Returns:
        Scalar whose gradient w.r.t. ``latents`` is ``w(t)·(ε̂ − ε) / B``.
    """
    noise = torch.randn(latents.shape, generator=generator, dtype=latents.dtype).to(latents.device)
    a = alphas_cumprod[t].to(latents.device, latents.dtype)
    with torch.no_grad():
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        eps_u, eps_c = eps_fn(noisy, t)
        eps_hat = eps_u + guidance_scale * (eps_c - eps_u)
        grad = (1.0 - a) * (eps_hat - noise)
        grad = torch.nan_to_num(grad)
        target = latents.detach() - grad
    return 0.5 * (latents - target).square().sum() / latents.shape[0]
