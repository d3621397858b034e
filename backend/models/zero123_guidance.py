"""Camera-conditioned guidance for SDS: Zero123 / Zero123-XL (Liu et al. 2023) in the
diffusers layout of ``ashawkey/zero123-xl-diffusers``, loaded component by component.

It computes what STAG4D's guidance computes (``zeng-yifei/STAG4D`` @ 9aa21c9,
``guidance/zero123_4d_utils.py``, cited below as ``z4d:LINE``; STAG4D's trainer ``main.py``
as ``main:LINE``):

- working resolution: condition images and rendered views are resized bilinearly
  (``align_corners=False``) to the model's native size before anything else (z4d:64, 145:
  256 px for Zero123-XL); gen4d reads it from the configs, ``unet.sample_size × VAE
  factor``, so tiny test models work at their own size;
- CLIP embedding of a condition image: the resized image goes through a PIL image the way
  ``torchvision``'s ``to_pil_image`` makes it (``uint8(255·x)``, truncating), then the
  folder's ``CLIPImageProcessor`` with its defaults (z4d:65-67);
- condition latent: a *sample* of the VAE posterior of ``2x − 1``, unscaled (z4d:68,
  211-223: ``sample()`` times the scaling factor, divided by it again), drawn once per
  condition image;
- rendered-view latent: a posterior *sample* times the scaling factor, differentiable
  (z4d:145-146, 220-221);
- cross-attention context: ``clip_camera_projection([CLIP image embedding, Δpose])`` with
  ``Δpose = [Δpolar (rad), sin Δazimuth, cos Δazimuth, Δradius]`` (z4d:160-164);
  Δpolar = −Δelevation (polar angle from the zenith; STAG4D's own elevation counts
  downward, ``cam_utils.py:48-51``, and passes ``ver − fixed_elevation`` straight in,
  main:339); Δradius = 0 (main:312);
- CFG: one UNet call on ``[cond; uncond]`` in that order, the unconditional half with a
  zero context (after the projection) and a zero latent (z4d:165-176).

Folder layout: ``unet``, ``vae``, ``image_encoder`` (CLIPVisionModelWithProjection),
``feature_extractor`` (CLIPImageProcessor), ``scheduler`` (DDIM), ``clip_camera_projection``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor



class CLIPCameraProjection(ModelMixin, ConfigMixin):
    """Linear map from ``[CLIP image embedding (D), Δpose (4)]`` to the UNet's
    cross-attention width D (Zero123's "cc_projection").

    Args:
        embedding_dim: D.
        additional_embeddings: pose features (4).
    """

    @register_to_config
    def __init__(self, embedding_dim: int = 768, additional_embeddings: int = 4):
        super().__init__()
        self.proj = torch.nn.Linear(embedding_dim + additional_embeddings, embedding_dim)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, L, D + 4] -> [B, L, D]``."""
        return self.proj(x)


def pose_features(delta_elevation_deg: Tensor, delta_azimuth_deg: Tensor, delta_radius: Tensor) -> Tensor:
    """Zero123's ``[Δpolar (rad), sin Δaz, cos Δaz, Δradius]`` (z4d:160), ``[B] x3 -> [B, 4]`` float32.

    Args:
        delta_elevation_deg: the target camera's elevation minus the condition camera's
            (degrees, up positive); Δpolar = −Δelevation in radians.
        delta_azimuth_deg: target minus condition azimuth (degrees, counter-clockwise about
            the up axis, Zero123's ``atan2(y, x)``); only its sine and cosine are used, so
            any wrap gives the same features.
        delta_radius: target minus condition distance (scene units; STAG4D passes 0).
    """
    polar = torch.deg2rad(-delta_elevation_deg.float())
    az = torch.deg2rad(delta_azimuth_deg.float())
    return torch.stack([polar, torch.sin(az), torch.cos(az), delta_radius.float()], dim=-1)


class Zero123Guidance:
    """The guidance model's components and its ε prediction with CFG inputs.

    Attributes:
        unet, vae, image_encoder, feature_extractor, scheduler, camera_projection: the
            loaded components.
        image_size: side (px) images are resized to before encoding (z4d:64, 145);
            default ``unet.config.sample_size × 2**(len(vae block_out_channels) − 1)``
            (256 for Zero123-XL: latents 32 × 32, z4d:143).
    """

    COMPONENTS = ("unet", "vae", "image_encoder", "feature_extractor", "scheduler", "clip_camera_projection")

    def __init__(self, unet, vae, image_encoder, feature_extractor, scheduler, camera_projection,
                 image_size: int | None = None):
        self.unet, self.vae, self.image_encoder = unet, vae, image_encoder
        self.image_size = int(image_size or unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1))
        self.feature_extractor, self.scheduler, self.camera_projection = feature_extractor, scheduler, camera_projection
        self.alphas_cumprod = scheduler.alphas_cumprod.float()
        for m in (unet, vae, image_encoder, camera_projection):
            m.requires_grad_(False)
            m.eval()

    @classmethod
    def from_pretrained(cls, folder, local_files_only: bool = True, torch_dtype=None, variant: str | None = None,
                        **_):
        """Load the components from a zero123-xl-diffusers style folder (``variant``:
        weight-file variant such as ``"fp16"``, as diffusers' ``from_pretrained``).

        Raises:
            OSError / ValueError: from the component loaders when a part is missing or
                malformed (the registry turns these into ``model_invalid``).
        """
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        folder = Path(folder)
        missing = [c for c in cls.COMPONENTS if not (folder / c).is_dir()]
        if missing:
            raise OSError(f"{folder} lacks the component folder(s) {missing}")
        kw = {"local_files_only": local_files_only}
        if torch_dtype is not None:
            kw["torch_dtype"] = torch_dtype
        if variant is not None:
            kw["variant"] = variant
        return cls(UNet2DConditionModel.from_pretrained(folder / "unet", **kw),
                   AutoencoderKL.from_pretrained(folder / "vae", **kw),
                   CLIPVisionModelWithProjection.from_pretrained(folder / "image_encoder", **kw),
                   CLIPImageProcessor.from_pretrained(folder / "feature_extractor", local_files_only=local_files_only),
                   DDIMScheduler.from_pretrained(folder / "scheduler", local_files_only=local_files_only),
                   CLIPCameraProjection.from_pretrained(folder / "clip_camera_projection", **kw))

    def save_pretrained(self, folder) -> None:
        """Write the components in the layout :meth:`from_pretrained` reads."""
        folder = Path(folder)
        for name, comp in (("unet", self.unet), ("vae", self.vae), ("image_encoder", self.image_encoder),
                           ("feature_extractor", self.feature_extractor), ("scheduler", self.scheduler),
                           ("clip_camera_projection", self.camera_projection)):
            comp.save_pretrained(str(folder / name))

    def to(self, device):
        """Move the networks to ``device``; returns self."""
        for m in (self.unet, self.vae, self.image_encoder, self.camera_projection):
            m.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return self.unet.device

    def resize(self, images: Tensor) -> Tensor:
        """``[B, H, W, 3]`` -> ``[B, 3, S, S]`` at :attr:`image_size`, bilinear with
        ``align_corners=False`` (z4d:64, 145); differentiable."""
        x = images.permute(0, 3, 1, 2)
        return F.interpolate(x, (self.image_size, self.image_size), mode="bilinear", align_corners=False)

    @torch.no_grad()
    def encode_condition(self, images: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """CLIP embeddings and VAE latents of conditioning images (z4d:62-68).

        Args:
            images: ``[K, H, W, 3]`` float in [0, 1] (the input frame and the generated
                views, composited on white as STAG4D's loader does, ``dataset_4d.py:48``).
            generator: RNG of the posterior samples (None: torch's global RNG, as STAG4D).

        Returns:
            ``(clip [K, D], latents [K, 4, S/f, S/f])``: image embeddings and unscaled
            posterior samples.
        """
        from PIL import Image

        x = self.resize(images.float())
        u8 = (x.permute(0, 2, 3, 1).cpu() * 255).to(torch.uint8).numpy()  # truncates, as to_pil_image
        clip_in = self.feature_extractor(images=[Image.fromarray(np.ascontiguousarray(a)) for a in u8],
                                         return_tensors="pt").pixel_values
        clip = self.image_encoder(clip_in.to(self.device, self.image_encoder.dtype)).image_embeds
        dist = self.vae.encode(x.to(self.device, self.vae.dtype) * 2 - 1).latent_dist
        return clip, dist.sample(generator=generator)

    def encode_images(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Differentiable VAE latents of rendered views (z4d:145-146, 211-223).

        Args:
            images: ``[B, H, W, 3]`` in [0, 1].
            generator: RNG of the posterior sample (None: torch's global RNG).

        Returns:
            ``[B, 4, S/f, S/f]``: a posterior sample of the resized ``2x − 1``, times the
            VAE's scaling factor; the gradient flows through its mean and std.
        """
        x = self.resize(images).to(self.vae.dtype) * 2 - 1
        return self.vae.encode(x).latent_dist.sample(generator=generator) * self.vae.config.scaling_factor

    def eps_fn(self, clip: Tensor, cond_latents: Tensor, pose: Tensor):
        """The ``eps_fn`` of :func:`backend.optim.sds.sds_loss` for given conditioning.

        Args:
            clip: ``[B, D]`` CLIP embeddings of each sample's conditioning image.
            cond_latents: ``[B, 4, h, w]`` their latents.
            pose: ``[B, 4]`` :func:`pose_features` of each sampled camera relative to it.

        Returns:
            ``eps_fn(noisy [B,4,h,w], t) -> (eps_uncond, eps_cond)``; the UNet sees the
            batch ``[cond; uncond]`` (z4d:157-176).
        """
        ctx = self.camera_projection(torch.cat([clip[:, None], pose[:, None].to(clip)], dim=-1))

        def eps(noisy: Tensor, t: int) -> tuple[Tensor, Tensor]:
            # One call on [cond; uncond], z4d:157-176.
            x = torch.cat([noisy, noisy])
            c = torch.cat([cond_latents, torch.zeros_like(cond_latents)]).to(x)
            context = torch.cat([ctx, torch.zeros_like(ctx)]).to(x)
            out = self.unet(torch.cat([x, c], dim=1), t, encoder_hidden_states=context).sample
            eps_cond, eps_uncond = out.chunk(2)
            return eps_uncond, eps_cond

        return eps

