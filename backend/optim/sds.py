"""Score distillation (SDS, DreamFusion, Poole et al. 2022, Eq. 3) with STAG4D's settings.

STAG4D (Sec. 3.3 and its public config; docs/design.md "SDS") distils a camera-conditioned
Zero123-XL into the 4D Gaussians for cameras the generated views do not cover:

- CFG scale 5; per-timestep weight ``w(t) = 1 − ᾱ_t``;
- ``t ~ U[t_min, t_max]·T_train`` with the window annealed linearly over 3000 iterations
  from [0.50, 0.95] to [0.02, 0.50];
- nearest-view conditioning (:func:`nearest_view`): within ±30° of the input azimuth, or
  with probability 0.6, condition on the input frame; otherwise on the nearest view in
  azimuth (for Zero123++ views at 30° + 60°·i, the view ⌊az/60°⌋), with the pose
  relative to that view.

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
        view: index into the candidate views given to :func:`nearest_view`.
        delta_elevation_deg, delta_azimuth_deg: the sampled camera's pose relative to the
            conditioning view (azimuth wrapped to [−180°, 180°)).
    """

    view: int
    delta_elevation_deg: float
    delta_azimuth_deg: float


def nearest_view(azimuth_deg: float, elevation_deg: float, view_azimuths_deg, view_elevations_deg,
                 reference: int, rng: random.Random | None = None) -> Conditioning:
    """STAG4D's nearest-view conditioning, for any set of candidate views.

    Within ±30° of the reference view's azimuth, or else when a coin lands below 0.6, the
    reference view conditions; otherwise the candidate nearest in azimuth does. (STAG4D's
    case: the reference is the input frame at azimuth 0 and the candidates add the six
    Zero123++ views at ``30° + 60°·i``, so "nearest" is the generated view ⌊az/60°⌋.) The
    coin is drawn only outside the ±30° window.

    Args:
        azimuth_deg, elevation_deg: the sampled camera (degrees, any range).
        view_azimuths_deg, view_elevations_deg: ``[V]`` candidate views (float tensors or
            sequences, degrees).
        reference: index of the reference (input) view among the candidates.
        rng: source of the 0.6 coin (``random.Random``); None: the ``random`` module's.

    Returns:
        :class:`Conditioning` with ``view`` an index into the candidates.

    Raises:
        IndexError: ``reference`` is not a candidate index.
    """
    az = torch.as_tensor(view_azimuths_deg)
    if not 0 <= reference < len(az):
        raise IndexError(f"reference view {reference} is not one of the {len(az)} candidates")
    rel = float(wrap_deg(azimuth_deg - az[reference]))
    if abs(rel) <= INPUT_VIEW_HALF_ANGLE_DEG or (rng or random).random() < INPUT_VIEW_PROBABILITY:
        view = reference
    else:
        view = int(torch.argmin(wrap_deg(az - azimuth_deg).abs()))
    return Conditioning(view, elevation_deg - float(view_elevations_deg[view]),
                        float(wrap_deg(azimuth_deg - az[view])))


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
