"""The SDS loss term of reconstruction (STAG4D Sec. 3.3): novel cameras around the
object, rendered at a training time and scored by a camera-conditioned guidance model
(:class:`backend.models.zero123_guidance.Zero123Guidance`), conditioned on the nearest
footage view at that time (:func:`backend.optim.sds.nearest_view`: the reference view is
the one nearest azimuth 0° of the footage's frame, the candidates are all views at that
time).

As STAG4D's trainer does it (``zeng-yifei/STAG4D`` @ 9aa21c9, ``main.py``, ``main:LINE``):

- the camera: integer azimuth and elevation offset (:func:`backend.optim.sds.sample_novel_camera`,
  main:266-268, 310-311), at the footage cameras' (median) distance from the scene centre
  (STAG4D: the same ``opt.radius`` for all, main:318), looking at the centre, with the
  reference view's intrinsics (STAG4D: one fovy, 49.1°, for every camera, main:32, 322-330);
- the background: white, or black with probability ``invert_bg_prob`` = 0.5 (main:348);
- the timestep window follows the 1-based iteration counter (main:248, 255).

gen4d differs on purpose in three places (cost on a CPU, and gen4d's own schedule):
one SDS sample every ``sds_every`` steps at a uniformly drawn footage time, where STAG4D
draws 4 per iteration (``batch_size``, main:271) with the time fixed to the middle frame
for its first 700 iterations (main:274-279); the window anneals over ``anneal_fraction``
of the fit (STAG4D: 3000 of its 8000 iterations) instead of a fixed 3000; and the view is
rendered at the footage's image size, where STAG4D renders 128/256/512 px by progress
(main:264); both are then resized to the guidance model's 256 px.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch import Tensor

from backend.cameras import c2w_blender_to_viewmat, look_at_c2w
from backend.models.zero123_guidance import pose_features
from backend.optim import sds
from backend.render.frames import render_frames
from protocol.formats.compositing import composite_over


def _angles(c2w: Tensor, centre: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    d = c2w[:, :3, 3] - centre
    r = d.norm(dim=-1)
    az = torch.rad2deg(torch.atan2(d[:, 1], d[:, 0]))
    el = torch.rad2deg(torch.asin((d[:, 2] / r).clamp(-1, 1)))
    return az, el, r


class SDSTerm:
    """Samples a novel camera and time, renders the model there and returns the SDS loss.

    Args:
        footage: training footage (the conditioning images and their cameras).
        guidance: a loaded :class:`Zero123Guidance`.
        centre: ``[3]`` scene centre (m).
        total_iterations: the fit's iterations; the timestep window anneals over
            ``anneal_fraction`` of them (STAG4D: 3000 of 8000).
        seed: RNG seed for cameras, coins and noise.
        invert_bg_prob: probability of a black instead of a white background (main:348).

    Raises:
        ValueError: empty footage.
    """

    def __init__(self, footage, guidance, centre: Tensor, total_iterations: int, anneal_fraction: float = 0.375,
                 seed: int = 0, invert_bg_prob: float = 0.5):
        if len(footage) == 0:
            raise ValueError("SDS needs footage to condition on")
        self.guidance = guidance
        self.footage = footage
        self.centre = centre.float()
        self.anneal_iters = max(1, int(total_iterations * anneal_fraction))
        self.invert_bg_prob = float(invert_bg_prob)
        self.rng = random.Random(seed)
        self.gen = torch.Generator().manual_seed(seed)
        az, el, r = _angles(footage.c2w.float(), self.centre)
        self.azimuth, self.elevation = az, el
        self.radius = float(r.median())
        self.time_index = footage.time_indices()
        rgb = composite_over(footage.images, 1.0)
        self.clip, self.cond_latents = guidance.encode_condition(rgb.float(), generator=self.gen)
        self.calls = 0

    def reference_frame(self, ti: int) -> int:
        """The footage frame of time index ``ti`` nearest azimuth 0° (the input frame)."""
        frames = torch.nonzero(self.time_index == ti).flatten()
        return int(frames[int(torch.argmin(sds.wrap_deg(self.azimuth[frames]).abs()))])

    def _conditioning(self, ti: int, azimuth: float, elevation: float) -> tuple[int, Tensor]:
        frames = torch.nonzero(self.time_index == ti).flatten()
        az = self.azimuth[frames]
        ref = int(torch.nonzero(frames == self.reference_frame(ti)).flatten()[0])
        c = sds.nearest_view(azimuth, elevation, az, self.elevation[frames], ref, self.rng)
        d_el = torch.tensor([c.delta_elevation_deg])
        d_az = torch.tensor([c.delta_azimuth_deg])
        return int(frames[c.view]), pose_features(d_el, d_az, torch.zeros(1))

    def sample_camera(self, ti: int) -> tuple[float, float, Tensor, Tensor]:
        """A novel camera for time index ``ti``: :func:`sds.sample_novel_camera` around the
        reference frame's elevation, azimuth relative to world azimuth 0.

        Returns:
            ``(azimuth_deg, elevation_deg, viewmat [1, 4, 4], K [1, 3, 3])`` (gen4d camera
            conventions, :mod:`backend.cameras`).
        """
        ref = self.reference_frame(ti)
        azimuth, elevation = sds.sample_novel_camera(self.rng, float(self.elevation[ref]))
        a, e = math.radians(azimuth), math.radians(elevation)
        eye = self.centre.numpy() + self.radius * np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a),
                                                            math.sin(e)])
        viewmat = c2w_blender_to_viewmat(torch.from_numpy(look_at_c2w(eye, self.centre.numpy()))[None].float())
        return float(azimuth), float(elevation), viewmat, self.footage.Ks[ref:ref + 1].float()

    def loss(self, model, step: int, device: str = "cpu") -> Tensor:
        """The SDS loss (weight not applied) of one novel view at a random training time.

        Args:
            model: the 4D Gaussians being fitted.
            step: the fit's 0-based step (the window uses ``step + 1``, main:248, 255).
            device: where to render.

        Returns:
            A differentiable scalar (gradient reaches the model's parameters).
        """
        ti = int(self.time_index[int(torch.randint(0, len(self.footage), (1,), generator=self.gen))])
        t = self.footage.unique_times()[ti]
        azimuth, elevation, viewmat, K = self.sample_camera(ti)
        cond, pose = self._conditioning(ti, azimuth, elevation)
        bg = 1.0 if self.rng.random() > self.invert_bg_prob else 0.0
        colors, _, _ = render_frames(model, t.reshape(1).to(device), viewmat.to(device), K.to(device),
                                     self.footage.width, self.footage.height, torch.full((1, 3), bg, device=device))
        latents = self.guidance.encode_images(colors.clamp(0, 1), generator=self.gen)
        eps_fn = self.guidance.eps_fn(self.clip[cond:cond + 1], self.cond_latents[cond:cond + 1], pose.to(device))
        timestep = sds.sample_timestep(step + 1, len(self.guidance.alphas_cumprod), self.gen, self.anneal_iters)
        self.calls += 1
        return sds.sds_loss(latents, eps_fn, timestep, self.guidance.alphas_cumprod, generator=self.gen)
