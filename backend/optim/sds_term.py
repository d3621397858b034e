"""The SDS loss term of reconstruction (STAG4D Sec. 3.3): novel cameras around the
object, rendered at a training time and scored by a camera-conditioned guidance model
(:class:`backend.models.zero123_guidance.Zero123Guidance`), conditioned on the nearest
footage view at that time (:func:`backend.optim.sds.nearest_view`: the reference view is
the one nearest azimuth 0° of the footage's frame, the candidates are all views at that
time).

Camera sampling: azimuth uniform in [0°, 360°), elevation uniform in [−10°, 30°], at the
median distance of the footage cameras, looking at the scene centre; 30° field of view.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch import Tensor

from backend.cameras import c2w_blender_to_viewmat, intrinsics_from_fov, look_at_c2w
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

    Raises:
        ValueError: empty footage.
    """

    def __init__(self, footage, guidance, centre: Tensor, total_iterations: int, anneal_fraction: float = 0.375,
                 seed: int = 0):
        if len(footage) == 0:
            raise ValueError("SDS needs footage to condition on")
        self.guidance = guidance
        self.footage = footage
        self.centre = centre.float()
        self.anneal_iters = max(1, int(total_iterations * anneal_fraction))
        self.rng = random.Random(seed)
        self.gen = torch.Generator().manual_seed(seed)
        az, el, r = _angles(footage.c2w.float(), self.centre)
        self.azimuth, self.elevation = az, el
        self.radius = float(r.median())
        self.time_index = footage.time_indices()
        rgb = composite_over(footage.images, 1.0)
        self.clip, self.cond_latents = guidance.encode_condition(rgb.float())
        self.K = intrinsics_from_fov(math.radians(30.0), footage.width, footage.height)[None].float()
        self.calls = 0

    def _conditioning(self, ti: int, azimuth: float, elevation: float) -> tuple[int, Tensor]:
        frames = torch.nonzero(self.time_index == ti).flatten()
        az = self.azimuth[frames]
        ref = int(torch.argmin(sds.wrap_deg(az).abs()))
        c = sds.nearest_view(azimuth, elevation, az, self.elevation[frames], ref, self.rng)
        d_el = torch.tensor([c.delta_elevation_deg])
        d_az = torch.tensor([c.delta_azimuth_deg])
        return int(frames[c.view]), pose_features(d_el, d_az, torch.zeros(1))

    def loss(self, model, step: int, device: str = "cpu") -> Tensor:
        """The SDS loss (weight not applied) of one novel view at a random training time.

        Returns:
            A differentiable scalar (gradient reaches the model's parameters).
        """
        ti = int(self.time_index[int(torch.randint(0, len(self.footage), (1,), generator=self.gen))])
        t = self.footage.unique_times()[ti]
        azimuth = self.rng.uniform(0.0, 360.0)
        elevation = self.rng.uniform(-10.0, 30.0)
        a, e = math.radians(azimuth), math.radians(elevation)
        eye = self.centre.numpy() + self.radius * np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a),
                                                            math.sin(e)])
        viewmat = c2w_blender_to_viewmat(torch.from_numpy(look_at_c2w(eye, self.centre.numpy()))[None].float())
        colors, _, _ = render_frames(model, t.reshape(1).to(device), viewmat.to(device), self.K.to(device),
                                     self.footage.width, self.footage.height, torch.ones(1, 3, device=device))
        cond, pose = self._conditioning(ti, azimuth, elevation)
        latents = self.guidance.encode_images(colors.clamp(0, 1))
        eps_fn = self.guidance.eps_fn(self.clip[cond:cond + 1], self.cond_latents[cond:cond + 1], pose.to(device))
        timestep = sds.sample_timestep(step, len(self.guidance.alphas_cumprod), self.gen, self.anneal_iters)
        self.calls += 1
        return sds.sds_loss(latents, eps_fn, timestep, self.guidance.alphas_cumprod, generator=self.gen)
