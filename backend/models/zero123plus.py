"""Zero123++ (Shi et al. 2023) multi-view generation, written for gen4d on diffusers
components, with STAG4D's temporal anchor (:mod:`backend.models.anchor_attention`).

One condition image gives six views tiled 3 rows × 2 columns (640 × 960 px for v1.2).
Conditioning, as in the paper and its public pipeline:

- **Global**: the CLIP image embedding of the condition image, times per-token ramping
  coefficients (``config.ramping_coefficients``, 77 floats), added to the text encoder's
  embedding of the empty prompt: the cross-attention context.
- **Local (reference attention)**: the VAE latent of the condition image, noised to the
  current timestep, runs through the UNet first; every self-attention layer records its
  input, and the main pass appends those tokens to its K/V input. The unconditional
  branch of CFG uses the VAE latent of an all-zero image (zero *after* the VAE
  processor's normalization, i.e. the processor's mean colour).
- v1.2 latent / image scaling: the UNet works on ``(z − 0.22) · 0.75`` and the decoder's
  output is scaled by ``0.8 / 0.5`` before mapping to [0, 1].

Parity with the official pipeline. "Official" below means ``diffusers-support/pipeline.py``
of ``SUDO-AI-3D/zero123plus`` at commit 7d0315c31be6eb906b34cf07d91310f8e12e9b95 (the same
file as the hub's ``sudo-ai/zero123plus-pipeline``); line numbers refer to it. On the same
weights, image, initial noise and random draws this module computes what it computes:

- RGBA condition images are composited on grey 127 (official ``to_rgb_image``, :30-40,
  called at :346): :func:`to_condition_rgb`.
- The condition latent is a VAE *posterior sample*, not its mode (official :322-324).
- CFG's negative reference latent is the posterior sample of the VAE encoding of
  ``zeros_like(processed pixels)`` (official :357-359).
- The reference latent is noised by the sampler itself, ``scheduler.add_noise`` then
  ``scheduler.scale_model_input`` (official :126,131-132), which for the Euler family is
  ``(z + σ_t·n) / √(σ_t² + 1) = √ᾱ_t·z + √(1−ᾱ_t)·n``: :meth:`Zero123PlusPipeline.noisy_reference`.
- The scheduler samples with ``timestep_spacing="trailing"`` (the official README's and
  STAG4D ``scripts/gen_mv.py:88-90``'s setting for v1.2), forced when the pipeline is built.

Random draws, in order (:meth:`Zero123PlusPipeline.__call__`), all from ``generator``
(torch's global CPU RNG when it is None): (1) the condition latent's posterior noise
``[1, 4, h, w]``; (2) with CFG, the zero image's posterior noise ``[1, 4, h, w]``; (3) the
initial latents ``[1, 4, H/8, W/8]``, unless given; then per step (4) the reference noise
``[B, 4, h, w]`` (B = 2 with CFG) and (5) the ancestral sampler's noise. The official
pipeline makes the same draws in the same order, but takes (1), (2) and (4) from the
global RNG even when a generator is given (``.sample()`` and ``torch.randn_like`` without
one, official :126,323); so with ``generator=None`` and the same ``torch.manual_seed``
both draw identical numbers on the CPU. gen4d draws (3) and (4) in float32 on the CPU and
casts, so a run does not depend on the device's RNG.

The folder layout is the hub repo ``sudo-ai/zero123plus-v1.2``'s: ``vae``,
``text_encoder``, ``tokenizer``, ``unet``, ``scheduler``, ``vision_encoder``,
``feature_extractor_clip``, ``feature_extractor_vae`` and ``ramping_coefficients`` in
``model_index.json``; :meth:`Zero123PlusPipeline.from_pretrained` loads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline
from PIL import Image
from torch import Tensor

from backend.models.anchor_attention import TemporalAnchor, install_anchored_processors

#: relative azimuths of the six views (degrees), row-major over the 3 × 2 grid.
VIEW_AZIMUTHS_DEG = (30.0, 90.0, 150.0, 210.0, 270.0, 330.0)
#: absolute elevations of the six views in v1.2 (degrees; v1.1 used +30 / −20).
VIEW_ELEVATIONS_DEG_V12 = (20.0, -10.0, 20.0, -10.0, 20.0, -10.0)
#: v1.2's fixed output field of view (degrees).
VIEW_FOV_DEG_V12 = 30.0
GRID_ROWS, GRID_COLS = 3, 2
#: grey level (uint8, all three channels) under a transparent condition image (official :35).
CONDITION_BACKGROUND = 127
#: the sampler's timestep spacing for v1.2 (official README; STAG4D ``scripts/gen_mv.py:88-90``).
TIMESTEP_SPACING = "trailing"


def scale_latents(z: Tensor) -> Tensor:
    """Zero123++ v1.2's latent normalization ``(z − 0.22) · 0.75``."""
    return (z - 0.22) * 0.75


def unscale_latents(z: Tensor) -> Tensor:
    """Inverse of :func:`scale_latents`."""
    return z / 0.75 + 0.22


def unscale_image(x: Tensor) -> Tensor:
    """Zero123++ v1.2's decoder-output scaling ``x / 0.5 · 0.8`` (x in the VAE's [-1, 1])."""
    return x / 0.5 * 0.8


def to_condition_rgb(image) -> Image.Image:
    """The condition image as PIL RGB, transparent parts on grey :data:`CONDITION_BACKGROUND`.

    Follows the official ``to_rgb_image`` (pipeline.py:30-40, applied at :346): an RGBA
    image is pasted, with its alpha as the paste mask, over a solid (127, 127, 127) image,
    so each channel is PIL's rounded ``(c·a + 127·(255 − a)) / 255`` (a = 0 gives exactly
    127, a = 255 the colour). RGB is returned as is. Unlike the official code, which
    rejects other modes, other PIL modes (L, LA, P, ...) are converted to RGBA first.

    Args:
        image: PIL image, or a uint8 array ``[H, W, 3]`` (RGB) / ``[H, W, 4]`` (RGBA,
            straight alpha).

    Returns:
        PIL ``"RGB"`` image of the same size.

    Raises:
        ValueError: an array that is not uint8 ``[H, W, 3|4]``.
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (3, 4):
            raise ValueError(f"condition arrays must be uint8 [H, W, 3|4], got {image.dtype} {image.shape}")
        image = Image.fromarray(image, "RGBA" if image.shape[-1] == 4 else "RGB")
    if image.mode == "RGB":
        return image
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    out = Image.new("RGB", rgba.size, (CONDITION_BACKGROUND,) * 3)
    out.paste(rgba, mask=rgba.getchannel("A"))
    return out


def split_grid(grid: Tensor, rows: int = GRID_ROWS, cols: int = GRID_COLS) -> Tensor:
    """Split ``[C, rows·h, cols·w]`` into ``[rows·cols, C, h, w]`` views, row-major.

    Raises:
        ValueError: if the grid's size is not divisible by the tiling.
    """
    c, height, width = grid.shape
    if height % rows or width % cols:
        raise ValueError(f"grid {height}x{width} is not divisible into {rows}x{cols} tiles")
    h, w = height // rows, width // cols
    return grid.reshape(c, rows, h, cols, w).permute(1, 3, 0, 2, 4).reshape(rows * cols, c, h, w)


@dataclass
class MultiViewOutput:
    """Result of one :class:`Zero123PlusPipeline` call.

    Attributes:
        grid: ``[3, H, W]`` float32 RGB in [0, 1] (sRGB), the tiled views.
        views: ``[6, 3, H/3, W/2]`` the views in :data:`VIEW_AZIMUTHS_DEG` order.
    """

    grid: Tensor
    views: Tensor


class Zero123PlusPipeline(DiffusionPipeline):
    """Zero123++ sampling (see the module docstring) with an optional temporal anchor.

    Components (diffusers / transformers classes, loaded by ``from_pretrained``):
    ``vae`` (AutoencoderKL), ``text_encoder`` (CLIPTextModel), ``tokenizer``
    (CLIPTokenizer), ``unet`` (UNet2DConditionModel), ``scheduler`` (EulerAncestral in the
    hub config), ``vision_encoder`` (CLIPVisionModelWithProjection),
    ``feature_extractor_clip`` and ``feature_extractor_vae`` (CLIPImageProcessor). Config:
    ``ramping_coefficients``.

    The scheduler is rebuilt here, same class and config, with ``timestep_spacing`` set to
    :data:`TIMESTEP_SPACING` ("trailing"), as the official README and STAG4D's
    ``scripts/gen_mv.py:88-90`` do after loading (``EulerAncestralDiscreteScheduler
    .from_config(config, timestep_spacing="trailing")``), whatever the folder's config
    says; ``from_pretrained`` goes through here too.
    """

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler, vision_encoder, feature_extractor_clip,
                 feature_extractor_vae, ramping_coefficients: list | None = None):
        super().__init__()
        if getattr(scheduler.config, "timestep_spacing", None) != TIMESTEP_SPACING:
            scheduler = type(scheduler).from_config(scheduler.config, timestep_spacing=TIMESTEP_SPACING)
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                              scheduler=scheduler, vision_encoder=vision_encoder,
                              feature_extractor_clip=feature_extractor_clip,
                              feature_extractor_vae=feature_extractor_vae)
        self.register_to_config(ramping_coefficients=ramping_coefficients)
        self.anchor = TemporalAnchor()
        self.self_attention_layers = install_anchored_processors(self.unet, self.anchor)

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell (8 for SD-family VAEs)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @torch.no_grad()
    def vae_posterior_sample(self, pixels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A sample of the VAE posterior of ``pixels``, as the official
        ``encode_condition_image`` (pipeline.py:322-324) takes it (``.sample()``, not the mode).

        Args:
            pixels: ``[B, 3, h·f, w·f]`` in the VAE processor's normalization, on the VAE's
                device and dtype.
            generator: draws the posterior noise ``[B, 4, h, w]`` (diffusers'
                ``randn_tensor`` in the VAE's dtype); None: torch's global RNG, as official.

        Returns:
            ``[B, 4, h, w]`` ``mean + std · ε`` (unscaled latent, no ``scaling_factor``).
        """
        return self.vae.encode(pixels).latent_dist.sample(generator=generator)

    @torch.no_grad()
    def encode_condition(self, image, empty_prompt: Tensor | None = None, generator: torch.Generator | None = None,
                         negative: bool = False) -> tuple[Tensor, Tensor]:
        """Global and local conditioning of one image.

        Args:
            image: PIL image or uint8 array ``[H, W, 3|4]``; RGBA goes on grey 127
                (:func:`to_condition_rgb`, official pipeline.py:346).
            empty_prompt: :meth:`empty_prompt_embeds`, when the caller already has it.
            generator: draws the posterior noise, the condition's first, then (with
                ``negative``) the zero image's (official :356, :358).
            negative: also encode CFG's negative reference: the posterior sample of the
                VAE encoding of ``zeros_like(pixels)``, i.e. an image that is 0 after the
                VAE processor's normalization (its mean colour), not a zero latent (official :357-359).

        Returns:
            ``(prompt_embeds [1, 77, D], cond_latent)``; ``cond_latent`` is ``[1, 4, h, w]``,
            or ``[2, 4, h, w]`` = ``[negative, condition]`` with ``negative``.
        """
        device, dtype = self.unet.device, self.unet.dtype
        image = to_condition_rgb(image)
        clip_in = self.feature_extractor_clip(images=image, return_tensors="pt").pixel_values
        global_embeds = self.vision_encoder(clip_in.to(device, self.vision_encoder.dtype)).image_embeds
        text = self.empty_prompt_embeds() if empty_prompt is None else empty_prompt
        ramp = self.config.ramping_coefficients
        ramp = torch.ones(text.shape[1]) if ramp is None else torch.tensor(ramp, dtype=torch.float32)
        prompt = text + global_embeds[:, None, :].to(text.dtype) * ramp.to(device, text.dtype)[None, :, None]
        vae_in = self.feature_extractor_vae(images=image, return_tensors="pt").pixel_values
        vae_in = vae_in.to(self.vae.device, self.vae.dtype)
        cond = self.vae_posterior_sample(vae_in, generator)
        if negative:
            cond = torch.cat([self.vae_posterior_sample(torch.zeros_like(vae_in), generator), cond])
        return prompt.to(dtype), cond.to(device, dtype)

    def noisy_reference(self, cond: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """The reference pass's UNet input at timestep ``t``: the sampler's own
        ``add_noise`` then ``scale_model_input`` (official pipeline.py:126,131-132).

        For Euler-family samplers (``σ_t² = (1 − ᾱ_t) / ᾱ_t``) this is
        ``(z + σ_t·n) / √(σ_t² + 1) = √ᾱ_t·z + √(1 − ᾱ_t)·n``: the latent at the noise
        level the main pass is at, scaled once. Call after :meth:`set_timesteps` and
        before this step's ``scheduler.step``.

        Args:
            cond: ``[B, 4, h, w]`` reference latents (:meth:`encode_condition`).
            t: the current timestep (0-d tensor, from ``scheduler.timesteps``).
            noise: ``[B, 4, h, w]`` standard normal noise.
        """
        noisy = self.scheduler.add_noise(cond, noise, t.reshape(-1))
        return self.scheduler.scale_model_input(noisy, t)

    @torch.no_grad()
    def empty_prompt_embeds(self) -> Tensor:
        """``[1, 77, D]`` the text encoder's embedding of the empty prompt (CFG's
        unconditional context)."""
        tokens = self.tokenizer("", padding="max_length", max_length=self.tokenizer.model_max_length,
                                truncation=True, return_tensors="pt").input_ids.to(self.unet.device)
        return self.text_encoder(tokens)[0].to(self.unet.dtype)

    @torch.no_grad()
    def __call__(self, image, num_inference_steps: int = 75, guidance_scale: float = 4.0,
                 height: int = 960, width: int = 640, generator: torch.Generator | None = None,
                 latents: Tensor | None = None, anchor_mode: str = "off", anchor_weight: float | None = None,
                 callback=None) -> MultiViewOutput:
        """Generate the six views of ``image``.

        Args:
            image: condition image (see :meth:`encode_condition`).
            num_inference_steps: denoising steps (STAG4D: 75).
            guidance_scale: CFG scale (STAG4D: 4); ≤ 1 disables CFG.
            height, width: grid size in pixels (960 × 640 for v1.2), multiples of
                ``3 · vae_scale_factor`` and ``2 · vae_scale_factor``.
            generator: RNG for every draw, in the order of the module docstring (the
                condition's and the zero image's posterior noise, the initial noise, then
                per step the reference noise and the ancestral noise); None: torch's
                global RNG.
            latents: ``[1, 4, height/f, width/f]`` initial noise (before
                ``init_noise_sigma``); drawn from ``generator`` when None. Pass the same
                noise to every frame of a clip.
            anchor_mode: ``"off"``, ``"record"`` (frame 0) or ``"apply"`` (frame k); see
                :class:`TemporalAnchor`.
            anchor_weight: override the anchor's weight w for this call.
            callback: ``callback(step, total)`` after each denoising step.

        Returns:
            :class:`MultiViewOutput`.

        Raises:
            ValueError: bad size or anchor settings. RuntimeError: ``"apply"`` without a
                recorded anchor of the same steps and size.
        """
        f = self.vae_scale_factor
        if height % (GRID_ROWS * f) or width % (GRID_COLS * f):
            raise ValueError(f"grid {height}x{width} must be a multiple of {GRID_ROWS * f}x{GRID_COLS * f}")
        device, dtype = self.unet.device, self.unet.dtype
        self.anchor.set_mode(anchor_mode)
        self.anchor.latent_tokens = (height // f) * (width // f)
        self.anchor.base_channels = int(self.unet.config.block_out_channels[0])
        if anchor_weight is not None:
            if not 0.0 <= anchor_weight <= 1.0:
                raise ValueError(f"anchor weight must be in [0, 1], got {anchor_weight}")
            self.anchor.weight = float(anchor_weight)
        empty = self.empty_prompt_embeds()
        cfg = guidance_scale > 1.0
        prompt, cond = self.encode_condition(image, empty, generator=generator, negative=cfg)
        if cfg:
            prompt = torch.cat([empty, prompt])
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        shape = (1, self.unet.config.in_channels, height // f, width // f)
        if latents is None:
            latents = torch.randn(shape, generator=generator, dtype=torch.float32).to(device, dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must be {shape}, got {tuple(latents.shape)}")
        latents = latents.to(device, dtype) * self.scheduler.init_noise_sigma
        timesteps = self.scheduler.timesteps
        for i, t in enumerate(timesteps):
            self.anchor.step = i
            model_in = torch.cat([latents] * 2) if cfg else latents
            model_in = self.scheduler.scale_model_input(model_in, t)
            ref_noise = torch.randn(cond.shape, generator=generator, dtype=torch.float32).to(device, dtype)
            noisy_cond = self.noisy_reference(cond, t, ref_noise)
            ref_dict: dict = {}
            self.unet(noisy_cond, t, encoder_hidden_states=prompt,
                      cross_attention_kwargs={"mode": "w", "ref_dict": ref_dict})
            noise_pred = self.unet(model_in, t, encoder_hidden_states=prompt,
                                   cross_attention_kwargs={"mode": "r", "ref_dict": ref_dict}).sample
            if cfg:
                uncond, condp = noise_pred.chunk(2)
                noise_pred = uncond + guidance_scale * (condp - uncond)
            latents = self.scheduler.step(noise_pred, t, latents, generator=generator).prev_sample
            if callback is not None:
                callback(i + 1, len(timesteps))
        self.anchor.step = 0
        decoded = self.vae.decode(unscale_latents(latents) / self.vae.config.scaling_factor).sample
        grid = (unscale_image(decoded)[0].float() * 0.5 + 0.5).clamp(0, 1).cpu()
        return MultiViewOutput(grid=grid, views=split_grid(grid))


def view_cameras(radius: float, input_azimuth_deg: float = 0.0, fov_deg: float = VIEW_FOV_DEG_V12,
                 elevations_deg=VIEW_ELEVATIONS_DEG_V12) -> tuple[np.ndarray, float]:
    """Blender-convention c2w of the six generated views, looking at the origin, Z up.

    Azimuth is measured from +X towards +Y (the input view sits at ``input_azimuth_deg``,
    elevation 0 in v1.2's normalized frame); view i is at ``input + VIEW_AZIMUTHS_DEG[i]``.

    Returns:
        ``(c2w [6, 4, 4] float64, camera_angle_x radians)``.
    """
    from backend.cameras import look_at_c2w

    c2ws = []
    for az, el in zip(VIEW_AZIMUTHS_DEG, elevations_deg):
        a, e = math.radians(input_azimuth_deg + az), math.radians(el)
        pos = radius * np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])
        c2ws.append(look_at_c2w(pos))
    return np.stack(c2ws), math.radians(fov_deg)


def generate_anchored_views(pipe: Zero123PlusPipeline, frames: list, num_inference_steps: int = 75,
                            guidance_scale: float = 4.0, anchor_weight: float = 0.5, seed: int = 0,
                            height: int = 960, width: int = 640, progress=None, spill_dir=None,
                            stag4d_token_rule: bool = True) -> tuple[list[MultiViewOutput], dict]:
    """Multi-view images of every frame of a clip with STAG4D's temporal anchor.

    Frame 0 runs in ``"record"`` mode, every later frame in ``"apply"`` mode with weight
    ``anchor_weight``; every frame starts from the same initial noise and RNG seed (so
    the only coupling between frames is the anchor). The anchor cache is freed when the
    clip is done, also when a frame fails or the job is cancelled.

    Every denoising step of every later frame is anchored, as in STAG4D; the cache lives
    in host memory and spills to ``spill_dir`` beyond the anchor's memory limit
    (:class:`~backend.models.anchor_attention.TemporalAnchor`).

    Args:
        pipe: a loaded :class:`Zero123PlusPipeline`.
        frames: condition images, frame 0 first.
        progress: ``progress(done_steps, total_steps)`` over the whole clip.
        spill_dir: folder for the part of the anchor cache that does not fit in memory
            (None: a temporary folder); its files are deleted when the clip is done.
        stag4d_token_rule: STAG4D's token-count rule, which also anchors the mid block's
            reference tokens (default, as the reference code); False: multi-view tokens only.

    Returns:
        ``(outputs, stats)``: one :class:`MultiViewOutput` per frame; stats holds
        ``anchor_cache_bytes`` (its size after frame 0, memory and disk),
        ``anchor_spilled_bytes`` (the part on disk), ``anchor_cache_entries``,
        ``anchor_layers``, ``anchor_steps`` (steps run per frame) and ``anchored_steps``
        (the fewest steps any later frame had anchored; equal to ``anchor_steps``).

    Raises:
        ValueError: no frames, or bad sizes (see :meth:`Zero123PlusPipeline.__call__`).
        RuntimeError: the cache cannot spill (disk full).
    """
    if not frames:
        raise ValueError("no frames to generate views for")
    f = pipe.vae_scale_factor
    shape = (1, pipe.unet.config.in_channels, height // f, width // f)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    total = len(frames) * num_inference_steps
    outputs, stats = [], {}
    pipe.anchor.spill_dir = spill_dir
    pipe.anchor.stag4d_token_rule = bool(stag4d_token_rule)
    try:
        for k, frame in enumerate(frames):
            def step_done(i, n, k=k):
                if progress is not None:
                    progress(k * num_inference_steps + i, total)

            out = pipe(frame, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                       height=height, width=width, generator=torch.Generator().manual_seed(seed), latents=noise,
                       anchor_mode="record" if k == 0 else "apply", anchor_weight=anchor_weight,
                       callback=step_done)
            if k == 0:
                stats = {"anchor_cache_bytes": pipe.anchor.cache_bytes,
                         "anchor_spilled_bytes": pipe.anchor.spilled_bytes,
                         "anchor_cache_entries": len(pipe.anchor.cache),
                         "anchor_layers": len(pipe.self_attention_layers),
                         "anchor_steps": num_inference_steps,
                         "anchored_steps": num_inference_steps if len(frames) > 1 else 0}
            else:
                stats["anchored_steps"] = min(stats["anchored_steps"], len(pipe.anchor.applied_steps))
            outputs.append(out)
    finally:
        pipe.anchor.clear()
        pipe.anchor.set_mode("off")
    return outputs, stats
