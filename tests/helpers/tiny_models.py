"""Tiny random-weight models of the real diffusers / transformers classes, saved to a
folder in the same layout as the hub models, for tests that must exercise the real
loading and pipeline code without any download. Quality is meaningless; structure is real.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

TEXT_DIM = 32  # text hidden size = cross-attention dim = CLIP projection dim


def _byte_unicode_alphabet() -> list[str]:
    """The 256 printable stand-ins for bytes used by byte-level BPE vocabularies."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def tiny_clip_tokenizer():
    """A character-level CLIPTokenizer (byte alphabet, no merges), max length 77."""
    import tempfile

    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        save_tiny_clip_tokenizer(Path(tmp))
        return CLIPTokenizer.from_pretrained(tmp)


def save_tiny_clip_tokenizer(folder: Path) -> None:
    """Write :func:`tiny_clip_tokenizer`'s files to ``folder``."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {}
    for c in _byte_unicode_alphabet():
        vocab[c] = len(vocab)
    for c in _byte_unicode_alphabet():
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77,
                        pad_token="<|endoftext|>")
    tok.save_pretrained(str(folder))


def _tiny_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(hidden_size=TEXT_DIM, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                         vocab_size=1000, max_position_embeddings=77, projection_dim=TEXT_DIM,
                         bos_token_id=512, eos_token_id=513, pad_token_id=513)
    return CLIPTextModel(cfg)


def _tiny_unet(sample_size: int = 16):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), norm_num_groups=8,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                cross_attention_dim=TEXT_DIM, attention_head_dim=8)


def _tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         norm_num_groups=8, sample_size=32)


def save_tiny_text_to_image(folder: Path, seed: int = 0) -> Path:
    """A tiny StableDiffusionPipeline (what ``AutoPipelineForText2Image`` loads for
    SD-family folders such as sd-turbo), saved with ``save_pretrained``."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    torch.manual_seed(seed)
    pipe = StableDiffusionPipeline(vae=_tiny_vae(), text_encoder=_tiny_text_encoder(),
                                   tokenizer=tiny_clip_tokenizer(), unet=_tiny_unet(),
                                   scheduler=EulerDiscreteScheduler(timestep_spacing="trailing", steps_offset=1),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(folder))
    return Path(folder)


def _tiny_sd2_layout_unet():
    """A tiny UNet with the *layout* of Zero123++ v1.2's SD2 UNet where the anchor is
    concerned: an 8x latent grid; a deepest level with the same width as the level above
    it but no attention; a cross-attention mid block at that deepest level's resolution
    (so STAG4D's token rule reaches the mid block's reference tokens, as at real size).
    Attention only at level 1 keeps a 120 x 80 latent fast on a CPU."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(sample_size=32, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16, 16), norm_num_groups=4,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                                cross_attention_dim=TEXT_DIM, attention_head_dim=8)


def _tiny_vae_8x():
    """A tiny AutoencoderKL with the SD VAE's 8x downsampling (4 levels)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8, 8),
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         norm_num_groups=4, sample_size=64)


def save_tiny_zero123plus(folder: Path, seed: int = 0, tile: int = 16, sd2_layout: bool = False) -> Path:
    """A tiny Zero123++-layout folder loadable by
    :class:`backend.models.zero123plus.Zero123PlusPipeline` (grid ``3·tile × 2·tile``).

    ``sd2_layout``: use :func:`_tiny_sd2_layout_unet`, an 8x VAE and v1.2's 512-px
    condition image, for the real 960 x 640 grid (``tile`` is ignored)."""
    from diffusers import EulerAncestralDiscreteScheduler
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from backend.models.zero123plus import Zero123PlusPipeline

    torch.manual_seed(seed)
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=37,
                                                            num_attention_heads=4, num_hidden_layers=2,
                                                            image_size=32, patch_size=8,
                                                            projection_dim=TEXT_DIM))
    clip_proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    side = 512 if sd2_layout else tile
    vae_proc = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                                  image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    ramp = torch.linspace(0.1, 1.0, 77).tolist()
    pipe = Zero123PlusPipeline(vae=_tiny_vae_8x() if sd2_layout else _tiny_vae(), text_encoder=_tiny_text_encoder(),
                               tokenizer=tiny_clip_tokenizer(),
                               unet=_tiny_sd2_layout_unet() if sd2_layout else _tiny_unet(),
                               scheduler=EulerAncestralDiscreteScheduler(timestep_spacing="trailing"),
                               vision_encoder=vision, feature_extractor_clip=clip_proc,
                               feature_extractor_vae=vae_proc, ramping_coefficients=ramp)
    pipe.save_pretrained(str(folder))
    return Path(folder)


def save_tiny_zero123_guidance(folder: Path, seed: int = 0) -> Path:
    """A tiny zero123-xl-diffusers-layout folder loadable by
    :class:`backend.models.zero123_guidance.Zero123Guidance` (8-channel UNet input)."""
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from backend.models.zero123_guidance import CLIPCameraProjection, Zero123Guidance

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=16, in_channels=8, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), norm_num_groups=8,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                cross_attention_dim=TEXT_DIM, attention_head_dim=8)
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=37,
                                                            num_attention_heads=4, num_hidden_layers=2,
                                                            image_size=32, patch_size=8, projection_dim=TEXT_DIM))
    proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    guidance = Zero123Guidance(unet, _tiny_vae(), vision, proc, sched,
                               CLIPCameraProjection(embedding_dim=TEXT_DIM, additional_embeddings=4))
    guidance.save_pretrained(folder)
    return Path(folder)


def save_tiny_image_to_video(folder: Path, seed: int = 0) -> Path:
    """A tiny StableVideoDiffusionPipeline (spatio-temporal UNet, temporal-decoder VAE,
    CLIP vision encoder at its required 224 px), saved with ``save_pretrained``."""
    from diffusers import (AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, StableVideoDiffusionPipeline,
                           UNetSpatioTemporalConditionModel)
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    unet = UNetSpatioTemporalConditionModel(sample_size=16, in_channels=8, out_channels=4, layers_per_block=1,
                                            block_out_channels=(32, 64),
                                            down_block_types=("CrossAttnDownBlockSpatioTemporal",
                                                              "DownBlockSpatioTemporal"),
                                            up_block_types=("UpBlockSpatioTemporal",
                                                            "CrossAttnUpBlockSpatioTemporal"),
                                            cross_attention_dim=TEXT_DIM, num_attention_heads=(2, 4),
                                            addition_time_embed_dim=8, projection_class_embeddings_input_dim=24,
                                            num_frames=4)
    vae = AutoencoderKLTemporalDecoder(block_out_channels=(32, 64),  # GroupNorm(32) is built in
                                       down_block_types=("DownEncoderBlock2D",) * 2, latent_channels=4)
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=37,
                                                            num_attention_heads=4, num_hidden_layers=2,
                                                            image_size=224, patch_size=32,
                                                            projection_dim=TEXT_DIM))
    proc = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    sched = EulerDiscreteScheduler(prediction_type="v_prediction", timestep_spacing="leading", steps_offset=1,
                                   use_karras_sigmas=True, sigma_min=0.002, sigma_max=700.0)
    pipe = StableVideoDiffusionPipeline(vae=vae, image_encoder=vision, unet=unet, scheduler=sched,
                                        feature_extractor=proc)
    pipe.save_pretrained(str(folder))
    return Path(folder)


def save_tiny_background_removal(folder: Path, seed: int = 0, bias: float = 3.0) -> Path:
    """A tiny CLIPSeg (``CIDAS/clipseg-rd64-refined`` layout) loadable by
    :class:`backend.models.background_removal.ClipSegBackgroundRemover`. The decoder's
    last bias is set to ``bias`` so the random-weight masks are mostly above 0.5 (an
    object is found) while still varying per pixel."""
    from transformers import (CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor,
                              ViTImageProcessor)

    from backend.models.background_removal import ClipSegBackgroundRemover

    torch.manual_seed(seed)
    config = CLIPSegConfig(
        text_config={"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
                     "vocab_size": 600, "max_position_embeddings": 77, "bos_token_id": 512,
                     "eos_token_id": 513, "pad_token_id": 513},
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4,
                       "num_hidden_layers": 2, "image_size": 32, "patch_size": 8},
        projection_dim=16, reduce_dim=16, extract_layers=[0, 1], decoder_num_attention_heads=2,
        decoder_intermediate_size=32)
    model = CLIPSegForImageSegmentation(config)
    with torch.no_grad():
        model.decoder.transposed_convolution.bias.fill_(bias)
    image_processor = ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.48, 0.46, 0.41],
                                        image_std=[0.27, 0.26, 0.28])
    processor = CLIPSegProcessor(image_processor=image_processor, tokenizer=tiny_clip_tokenizer())
    ClipSegBackgroundRemover(processor, model).save_pretrained(folder)
    return Path(folder)


def load_tiny_through_registry(role: str, save, models_dir: Path):
    """Save a tiny model with ``save(folder)`` into ``models_dir/role`` and load it back
    through :func:`backend.models.registry.load` (the real code path), with
    ``$GEN4D_MODELS_DIR`` pointing at ``models_dir`` only while loading."""
    import os

    from backend.models import registry

    save(Path(models_dir) / role)
    old = os.environ.get(registry.MODELS_DIR_ENV)
    os.environ[registry.MODELS_DIR_ENV] = str(models_dir)
    try:
        return registry.load(role)
    finally:
        if old is None:
            del os.environ[registry.MODELS_DIR_ENV]
        else:
            os.environ[registry.MODELS_DIR_ENV] = old
