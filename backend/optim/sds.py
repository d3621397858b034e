"""Score distillation (SDS, DreamFusion, Poole et al. 2022, Eq. 3) as STAG4D computes it.

Reference: ``zeng-yifei/STAG4D`` @ 9aa21c9, ``guidance/zero123_4d_utils.py`` (``z4d:LINE``)
and its trainer ``main.py`` (``main:LINE``); the annealing helper is threestudio's
``C(value, epoch, global_step)`` (``threestudio/utils/misc.py`` @ 0b9d1ad), which
z4d:186-201 re-implements.

- CFG scale 5 (z4d:129, 177); per-timestep weight ``w(t) = 1 − ᾱ_t`` (z4d:151);
- ``t`` an integer uniform in ``[int(T·t_min), int(T·t_max)]`` (z4d:149, 189-190), the
  window linear in the iteration from [0.50, 0.95] to [0.02, 0.50] over 3000 iterations
  (z4d:56-57, 197-199), then constant;
- the novel camera (:func:`sample_novel_camera`, main:267-268, 310-312) and the
  conditioning view (:func:`nearest_view`, main:332-346);
- the loss ``0.5·Σ (z − sg(z − w(t)·(ε̂ − ε)))²`` summed over every element, not divided
  by the batch (z4d:179-183), so its gradient w.r.t. the latents z is exactly
  ``w(t)·(ε̂ − ε)`` per sample; it flows back through the VAE encoder and the rasterizer
  into the Gaussians.
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
    linear from ``start`` to ``end`` over ``anneal_iters``, then constant (z4d:193-201 with
    ``[start_step, start, end, end_step] = [0, 0.5, 0.02, 3000]`` / ``[0, 0.95, 0.5, 3000]``;
    STAG4D passes its 1-based iteration counter, main:248, 255).

    Raises:
        ValueError: negative iteration or non-positive ``anneal_iters``.
    """
    if iteration < 0 or anneal_iters <= 0:
        raise ValueError("iteration must be >= 0 and anneal_iters > 0")
    r = min(iteration / anneal_iters, 1.0)
    return start[0] + r * (end[0] - start[0]), start[1] + r * (end[1] - start[1])


def sample_timestep(iteration: int, num_train_timesteps: int, generator: torch.Generator | None = None,
                    anneal_iters: int = SDS_ANNEAL_ITERS) -> int:
    """An integer timestep drawn uniformly from the annealed window, both ends included:
    ``torch.randint(int(T·t_min), int(T·t_max) + 1)`` (z4d:149, 189-190)."""
    lo, hi = timestep_window(iteration, anneal_iters)
    lo_i, hi_i = int(lo * num_train_timesteps), max(int(hi * num_train_timesteps), int(lo * num_train_timesteps))
    return int(torch.randint(lo_i, hi_i + 1, (1,), generator=generator))


def sds_weight(alphas_cumprod: Tensor, t: int) -> float:
    """``w(t) = 1 − ᾱ_t`` (z4d:151)."""
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


def sample_novel_camera(rng: random.Random, reference_elevation_deg: float = 0.0) -> tuple[int, int]:
    """STAG4D's random novel camera (main:266-268, 310-311): integer degrees.

    The azimuth is ``randint(−180, 180)`` (upper end excluded); the elevation offset
    ``ver`` is ``randint(min_ver, max_ver)`` with STAG4D's bounds, which keep the camera
    within ±80° and always cover ±30° around the reference view. STAG4D's elevation counts
    downward (``cam_utils.py:48-51``); this function returns gen4d's (up positive).

    Args:
        rng: the source of both draws (``randrange``, azimuth first).
        reference_elevation_deg: the reference view's elevation (degrees, up positive;
            STAG4D's ``opt.elevation`` with the sign flipped).

    Returns:
        ``(azimuth_deg, elevation_deg)``, integers (azimuth relative to the reference's
        world azimuth 0, in [−180, 180)).
    """
    e = -int(round(reference_elevation_deg))  # STAG4D's convention
    min_ver = max(min(-30, -30 - e), -80 - e)
    max_ver = min(max(30, 30 - e), 80 - e)
    ver = rng.randrange(min_ver, max_ver)
    hor = rng.randrange(-180, 180)
    return hor, -(e + ver)


def nearest_view(azimuth_deg: float, elevation_deg: float, view_azimuths_deg, view_elevations_deg,
                 reference: int, rng: random.Random | None = None) -> Conditioning:
    """STAG4D's nearest-view conditioning (main:332-346), for any set of candidate views.

    Strictly within ±30° of the reference view's azimuth, or else when a coin
    ``rng.random()`` lands above 0.4 (so with probability 0.6), the reference view
    conditions; otherwise the candidate nearest in azimuth does, a tie going to the
    candidate ahead (counter-clockwise). In STAG4D's case (the input frame at azimuth 0,
    the six Zero123++ views at ``30° + 60°·i``) that is its sector rule ``⌊az/60°⌋``
    (az in [0°, 360°)): 60° → the view at 90°, 180° → the view at 210°. The coin is drawn
    only outside the ±30° window.

    Args:
        azimuth_deg, elevation_deg: the sampled camera (degrees, any range; up positive).
        view_azimuths_deg, view_elevations_deg: ``[V]`` candidate views (float tensors or
            sequences, degrees).
        reference: index of the reference (input) view among the candidates.
        rng: source of the coin (``random.Random``); None: the ``random`` module's.

    Returns:
        :class:`Conditioning` with ``view`` an index into the candidates and the pose
        relative to it (main:334-346).

    Raises:
        IndexError: ``reference`` is not a candidate index.
    """
    az = torch.as_tensor(view_azimuths_deg, dtype=torch.float64)
    if not 0 <= reference < len(az):
        raise IndexError(f"reference view {reference} is not one of the {len(az)} candidates")
    rel = float(wrap_deg(azimuth_deg - az[reference]))
    if abs(rel) < INPUT_VIEW_HALF_ANGLE_DEG or (rng or random).random() > 1.0 - INPUT_VIEW_PROBABILITY:
        view = reference
    else:
        ahead = wrap_deg(az - azimuth_deg)  # > 0: the candidate lies counter-clockwise ahead
        view = min(range(len(az)), key=lambda i: (abs(float(ahead[i])), float(ahead[i]) < 0))
    return Conditioning(view, elevation_deg - float(view_elevations_deg[view]),
                        float(wrap_deg(azimuth_deg - az[view])))


def sds_loss(latents: Tensor, eps_fn, t: int, alphas_cumprod: Tensor, guidance_scale: float = SDS_CFG_SCALE,
             generator: torch.Generator | None = None) -> Tensor:
    """SDS loss on latents (DreamFusion Eq. 3; z4d:149-185).

    The noisy latent is ``√ᾱ_t·z + √(1−ᾱ_t)·ε`` (DDIM ``add_noise``, z4d:155), the guided
    prediction ``ε̂ = ε_u + s·(ε_c − ε_u)`` (z4d:177), the residual ``w(t)·(ε̂ − ε)`` with
    NaNs zeroed (z4d:179-180), and the loss ``0.5·Σ (z − sg(z − grad))²`` (z4d:182-183).

    Args:
        latents: ``[B, C, h, w]`` differentiable latents of the rendered views.
        eps_fn: ``eps_fn(noisy [B,C,h,w], t) -> (eps_uncond, eps_cond)`` of the guidance
            model (no gradient needed).
        t: integer timestep.
        alphas_cumprod: ``[T_train]`` of the guidance scheduler.
        guidance_scale: CFG scale.
        generator: RNG of the noise ε.

    Returns:
        Scalar whose gradient w.r.t. ``latents`` is ``w(t)·(ε̂ − ε)``, per sample (a
        sum over the batch, not a mean: STAG4D calls it with one sample at a time and
        sums the calls, main:271, 367-368).
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
    return 0.5 * (latents - target).square().sum()
