"""Camera-conditioned guidance for SDS: Zero123 / Zero123-XL (Liu et al. 2023) in the
diffusers layout of ``ashawkey/zero123-xl-diffusers``, loaded component by component.

Conditioning (Zero123, Sec. 3.2, as its diffusers port does it):

- cross-attention context: ``clip_camera_projection([CLIP image embedding, Δpose])``
  with ``Δpose = [Δpolar (rad), sin Δazimuth, cos Δazimuth, Δradius]`` ([B, 1, D]);
  Δpolar = −Δelevation (polar angle is measured from the zenith);
- concatenated latent: the conditioning image's VAE latent (mode of the posterior,
  unscaled) beside the noisy latent, 8 input channels in all;
- CFG's unconditional branch: zero context and zero latent.

Folder layout: ``unet``, ``vae``, ``image_encoder`` (CLIPVisionModelWithProjection),
``feature_extractor`` (CLIPImageProcessor), ``scheduler`` (DDIM), ``clip_camera_projection``.
"""

from __future__ import annotations

from pathlib import Path

import torch
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
    """Zero123's ``[Δpolar (rad), sin Δaz, cos Δaz, Δradius]``, ``[B] x3 -> [B, 4]`` float32."""
    polar = torch.deg2rad(-delta_elevation_deg.float())
    az = torch.deg2rad(delta_azimuth_deg.float())
    return torch.stack([polar, torch.sin(az), torch.cos(az), delta_radius.float()], dim=-1)


class Zero123Guidance:
    """The guidance model's components and its ε prediction with CFG inputs.

    Attributes:
        unet, vae, image_encoder, feature_extractor, scheduler, camera_projection: the
            loaded components.
    """

    COMPONENTS = ("unet", "vae", "image_encoder", "feature_extractor", "scheduler", "clip_camera_projection")

    def __init__(self, unet, vae, image_encoder, feature_extractor, scheduler, camera_projection):
        self.unet, self.vae, self.image_encoder = unet, vae, image_encoder
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

    @torch.no_grad()
    def encode_condition(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """CLIP embeddings and VAE latents of conditioning images.

        Args:
            images: ``[K, H, W, 3]`` float in [0, 1] (the input frame and the generated
                views), H and W multiples of the VAE factor.

        Returns:
            ``(clip [K, D], latents [K, 4, h, w])``.
        """
        clip_in = self.feature_extractor(images=list(images.cpu().numpy()), return_tensors="pt",
                                         do_rescale=False).pixel_values
        clip = self.image_encoder(clip_in.to(self.device, self.image_encoder.dtype)).image_embeds
        x = images.permute(0, 3, 1, 2).to(self.device, self.vae.dtype) * 2 - 1
        return clip, self.vae.encode(x).latent_dist.mode()

    def encode_images(self, images: Tensor) -> Tensor:
        """Differentiable VAE latents of rendered views, scaled: ``[B, H, W, 3]`` in
        [0, 1] -> ``[B, 4, h, w]``."""
        x = images.permute(0, 3, 1, 2).to(self.vae.dtype) * 2 - 1
        return self.vae.encode(x).latent_dist.mean * self.vae.config.scaling_factor

    def eps_fn(self, clip: Tensor, cond_latents: Tensor, pose: Tensor):
        """The ``eps_fn`` of :func:`backend.optim.sds.sds_loss` for given conditioning.

        Args:
            clip: ``[B, D]`` CLIP embeddings of each sample's conditioning image.
            cond_latents: ``[B, 4, h, w]`` their latents.
            pose: ``[B, 4]`` :func:`pose_features` of each sampled camera relative to it.

        Returns:
            ``eps_fn(noisy [B,4,h,w], t) -> (eps_uncond, eps_cond)``.
        """
        ctx = self.camera_projection(torch.cat([clip[:, None], pose[:, None].to(clip)], dim=-1))

        def eps(noisy: Tensor, t: int) -> tuple[Tensor, Tensor]:
            x = torch.cat([noisy, noisy])
            c = torch.cat([torch.zeros_like(cond_latents), cond_latents]).to(x)
            context = torch.cat([torch.zeros_like(ctx), ctx]).to(x)
            out = self.unet(torch.cat([x, c], dim=1), t, encoder_hidden_states=context).sample
            return out.chunk(2)

        return eps

