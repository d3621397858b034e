"""The published architecture of each default generation model, as config dicts, and
random-weight builds of it at full size (no download).

:data:`PUBLISHED` maps ``role -> component -> {"class": "module:Class", "config": {...},
"source": "..."}``. ``config`` holds the *architecture-defining* keys of the hub repo's
``<component>/config.json`` (the keys that fix module structure and parameter shapes,
plus activation functions and norm epsilons), with the values and key names those files
use; keys that only describe training or defaults (``_diffusers_version``,
``sample_size``, token ids, ...) are left out. Schedulers are listed with the keys gen4d
relies on. ``source`` says where the values were checked; where no public copy of the
hub file was found, the values come from the model card's architecture and are pinned by
the parameter counts of :data:`PUBLISHED_PARAMS` (each cited), which
``tests/backend/test_architectures.py`` checks by building every component on the meta
device.

Why random weights: time and memory of a forward/backward pass do not depend on the
weights' values, so :func:`build_random` gives real-size models for
``benchmarks/generation.py`` where no weights can be downloaded. Their outputs are noise.

Tokenizers are built locally: a byte-level :class:`~transformers.CLIPTokenizer` whose
vocabulary has the real 49,408 entries (the 512 byte symbols, inert filler entries, and
``<|startoftext|>`` = 49406, ``<|endoftext|>`` = 49407 as in OpenAI's CLIP vocabulary) but
no BPE merges, so a prompt becomes one token per character (prompts are padded to 77
tokens by the text-to-image and Zero123++ pipelines, so their cost is unchanged).
"""

from __future__ import annotations

import copy
import importlib
import json
import tempfile
from pathlib import Path

import torch

from backend.errors import JobError

# ---------------------------------------------------------------- shared component configs

#: SD 2.x UNet (sd-turbo, Zero123++ v1.2): 865,910,724 parameters.
_SD2_UNET = {
    "act_fn": "silu",
    "attention_head_dim": [5, 10, 20, 20],
    "block_out_channels": [320, 640, 1280, 1280],
    "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "use_linear_projection": True,
}

#: SD 1.x UNet with Zero123's 8 input channels (noisy latent + condition latent).
_ZERO123_UNET = {**_SD2_UNET, "attention_head_dim": 8, "cross_attention_dim": 768, "in_channels": 8,
                 "use_linear_projection": False}

#: SD VAE (SD 1.x / 2.x, sd-turbo, Zero123++, Zero123-XL): 83,653,863 parameters.
_SD_VAE = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

#: OpenCLIP ViT-H/14 text tower as SD 2.x uses it (penultimate layer: 23 of 24 layers).
_VIT_H_TEXT = {
    "hidden_act": "gelu",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 16,
    "num_hidden_layers": 23,
    "vocab_size": 49408,
}

#: OpenCLIP ViT-H/14 image tower with its 1024-wide projection (SVD's image_encoder and
#: Zero123++'s vision_encoder): 632,076,800 parameters.
_VIT_H_VISION = {
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "image_size": 224,
    "intermediate_size": 5120,
    "layer_norm_eps": 1e-05,
    "num_attention_heads": 16,
    "num_channels": 3,
    "num_hidden_layers": 32,
    "patch_size": 14,
    "projection_dim": 1024,
}

#: OpenAI CLIP ViT-L/14 image tower with its 768-wide projection (Zero123's
#: image_encoder, from lambdalabs/sd-image-variations-diffusers): 303,966,208 parameters.
_VIT_L_VISION = {
    "hidden_act": "quick_gelu",
    "hidden_size": 1024,
    "image_size": 224,
    "intermediate_size": 4096,
    "layer_norm_eps": 1e-05,
    "num_attention_heads": 16,
    "num_channels": 3,
    "num_hidden_layers": 24,
    "patch_size": 14,
    "projection_dim": 768,
}

_SP_SOURCE = ("SoarCraft/Stable123Keypoints zero123plus_model_structure.md (module dump and parameter counts "
              "of sudo-ai/zero123plus-v1.2 as loaded by diffusers 0.35.1)")

#: role -> component -> {"class", "config", "source"}; see the module docstring.
PUBLISHED: dict[str, dict[str, dict]] = {
    "text_to_image": {  # stabilityai/sd-turbo: SD 2.1 architecture distilled (ADD), 512 px
        "unet": {"class": "diffusers:UNet2DConditionModel", "config": _SD2_UNET,
                 "source": "sd-turbo model card (SD 2.1 architecture); same UNet as " + _SP_SOURCE},
        "text_encoder": {"class": "transformers:CLIPTextModel", "config": _VIT_H_TEXT,
                         "source": "sd-turbo model card (OpenCLIP ViT-H text encoder); " + _SP_SOURCE},
        "vae": {"class": "diffusers:AutoencoderKL", "config": _SD_VAE, "source": _SP_SOURCE},
        "scheduler": {"class": "diffusers:EulerDiscreteScheduler",
                      "config": {"beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                                 "num_train_timesteps": 1000, "prediction_type": "epsilon", "steps_offset": 1,
                                 "timestep_spacing": "trailing"},
                      "source": "sd-turbo scheduler_config.json as recalled; not architecture (no check)"},
    },
    "image_to_video": {  # stabilityai/stable-video-diffusion-img2vid-xt
        "unet": {"class": "diffusers:UNetSpatioTemporalConditionModel",
                 "config": {"addition_time_embed_dim": 256, "block_out_channels": [320, 640, 1280, 1280],
                            "cross_attention_dim": 1024,
                            "down_block_types": ["CrossAttnDownBlockSpatioTemporal"] * 3 + ["DownBlockSpatioTemporal"],
                            "in_channels": 8, "layers_per_block": 2, "num_attention_heads": [5, 10, 20, 20],
                            "num_frames": 25, "out_channels": 4, "projection_class_embeddings_input_dim": 768,
                            "transformer_layers_per_block": 1,
                            "up_block_types": ["UpBlockSpatioTemporal"] + ["CrossAttnUpBlockSpatioTemporal"] * 3},
                 "source": "SVD_UNET dict (\"_repo_id\": stabilityai/stable-video-diffusion-img2vid-xt) in a public "
                           "test file found by find_string; 1,524,623,082 parameters (Ctrl-Crash, Table G.6)"},
        "vae": {"class": "diffusers:AutoencoderKLTemporalDecoder",
                "config": {"block_out_channels": [128, 256, 512, 512],
                           "down_block_types": ["DownEncoderBlock2D"] * 4, "in_channels": 3, "latent_channels": 4,
                           "layers_per_block": 2, "out_channels": 3, "scaling_factor": 0.18215},
                "source": "SVD paper / model card (SD VAE encoder, temporal decoder); encoder 34,163,592 + "
                          "decoder 63,579,183 parameters (Ctrl-Crash, Table G.6)"},
        "image_encoder": {"class": "transformers:CLIPVisionModelWithProjection", "config": _VIT_H_VISION,
                          "source": "SVD model card (OpenCLIP ViT-H/14); 632,076,800 parameters (Ctrl-Crash, "
                                    "Table G.6)"},
        "scheduler": {"class": "diffusers:EulerDiscreteScheduler",
                      "config": {"beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                                 "num_train_timesteps": 1000, "prediction_type": "v_prediction",
                                 "sigma_max": 700.0, "sigma_min": 0.002, "steps_offset": 1,
                                 "timestep_spacing": "leading", "use_karras_sigmas": True},
                      "source": "svd-xt scheduler_config.json as recalled; not architecture (no check)"},
    },
    "multiview": {  # sudo-ai/zero123plus-v1.2 (SD 2 based)
        "unet": {"class": "diffusers:UNet2DConditionModel", "config": _SD2_UNET, "source": _SP_SOURCE},
        "text_encoder": {"class": "transformers:CLIPTextModel", "config": _VIT_H_TEXT, "source": _SP_SOURCE},
        "vision_encoder": {"class": "transformers:CLIPVisionModelWithProjection", "config": _VIT_H_VISION,
                           "source": _SP_SOURCE + ": ViT-H/14, 32 layers, visual_projection 1280 -> 1024 (= the "
                                                  "text width, as the ramped sum needs)"},
        "vae": {"class": "diffusers:AutoencoderKL", "config": _SD_VAE, "source": _SP_SOURCE},
        "scheduler": {"class": "diffusers:EulerAncestralDiscreteScheduler",
                      "config": {"beta_end": 0.012, "beta_schedule": "linear", "beta_start": 0.00085,
                                 "num_train_timesteps": 1000, "prediction_type": "v_prediction",
                                 "steps_offset": 1, "timestep_spacing": "linspace"},
                      "source": _SP_SOURCE + " (gen4d forces timestep_spacing='trailing' at load)"},
    },
    "sds_guidance": {  # ashawkey/zero123-xl-diffusers
        "unet": {"class": "diffusers:UNet2DConditionModel", "config": _ZERO123_UNET,
                 "source": "kxhit/zero123-hf scripts/convert_zero123_to_diffusers.py from Zero123's "
                           "sd-objaverse-finetune-c_concat-256.yaml (SD 1.x UNet, in_channels 8, context 768); "
                           "SD 1.x UNet 859,520,964 parameters + 4·320·3·3 for the extra input channels"},
        "vae": {"class": "diffusers:AutoencoderKL", "config": _SD_VAE, "source": "SD 1.x VAE, 83,653,863 parameters"},
        "image_encoder": {"class": "transformers:CLIPVisionModelWithProjection", "config": _VIT_L_VISION,
                          "source": "Zero123 (fine-tuned from SD image variations: CLIP ViT-L/14); 303,966,208 "
                                    "parameters with projection (several public parameter tables)"},
        "clip_camera_projection": {"class": "backend.models.zero123_guidance:CLIPCameraProjection",
                                   "config": {"additional_embeddings": 4, "embedding_dim": 768},
                                   "source": "Zero123's cc_projection Linear(772, 768)"},
        "scheduler": {"class": "diffusers:DDIMScheduler",
                      "config": {"beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                                 "clip_sample": False, "num_train_timesteps": 1000, "prediction_type": "epsilon",
                                 "set_alpha_to_one": False, "steps_offset": 1},
                      "source": "SD 1.x DDIM schedule; not architecture (no check)"},
    },
    "background_removal": {  # CIDAS/clipseg-rd64-refined
        "model": {"class": "transformers:CLIPSegForImageSegmentation",
                  "config": {"conditional_layer": 0, "decoder_hidden_act": "quick_gelu",
                             "decoder_intermediate_size": 2048, "decoder_num_attention_heads": 4,
                             "extract_layers": [3, 6, 9], "projection_dim": 512, "reduce_dim": 64,
                             "use_complex_transposed_convolution": True,
                             "text_config": {"hidden_act": "quick_gelu", "hidden_size": 512,
                                             "intermediate_size": 2048, "max_position_embeddings": 77,
                                             "num_attention_heads": 8, "num_hidden_layers": 12,
                                             "vocab_size": 49408},
                             "vision_config": {"hidden_act": "quick_gelu", "hidden_size": 768, "image_size": 224,
                                               "intermediate_size": 3072, "num_attention_heads": 12,
                                               "num_hidden_layers": 12, "patch_size": 16}},
                  "source": "CLIPSeg paper / model card (CLIP ViT-B/16, reduce dim 64, 'refined' = complex "
                            "transposed convolution); 150,747,746 parameters (several public model reports)"},
    },
}

#: Cited parameter counts: (role, component) -> (count, citation). Checked exactly by
#: tests/backend/test_architectures.py on meta-device builds of :data:`PUBLISHED`.
PUBLISHED_PARAMS: dict[tuple[str, str], tuple[int, str]] = {
    ("text_to_image", "unet"): (865_910_724, _SP_SOURCE),
    ("text_to_image", "text_encoder"): (340_387_840, _SP_SOURCE),
    ("text_to_image", "vae"): (83_653_863, _SP_SOURCE),
    ("multiview", "unet"): (865_910_724, _SP_SOURCE),
    ("multiview", "text_encoder"): (340_387_840, _SP_SOURCE),
    ("multiview", "vision_encoder"): (632_076_800, _SP_SOURCE),
    ("multiview", "vae"): (83_653_863, _SP_SOURCE),
    ("image_to_video", "unet"): (1_524_623_082, "Ctrl-Crash (2025) Table G.6; an SVD-XT model survey"),
    ("image_to_video", "image_encoder"): (632_076_800, "Ctrl-Crash (2025) Table G.6"),
    ("sds_guidance", "unet"): (859_520_964 + 4 * 320 * 3 * 3,
                               "SD 1.x UNet 859,520,964 (many public parameter audits) + the 4 extra conv_in "
                               "input channels (4·320·3·3 = 11,520)"),
    ("sds_guidance", "vae"): (83_653_863, "SD 1.x VAE (public parameter audits)"),
    ("sds_guidance", "image_encoder"): (303_966_208, "CLIP ViT-L/14 image tower with projection "
                                                      "(public parameter tables)"),
    ("sds_guidance", "clip_camera_projection"): (772 * 768 + 768, "Linear(772, 768)"),
    ("background_removal", "model"): (150_747_746, "CIDAS/clipseg-rd64-refined (public fine-tuning reports)"),
}

#: the SVD temporal VAE's encoder and decoder as counted by Ctrl-Crash (2025) Table G.6
#: (34,163,592 + 63,579,183); the model adds its 1×1 ``quant_conv`` (8·8 + 8 = 72).
SVD_VAE_ENCODER_DECODER_PARAMS = 34_163_592 + 63_579_183

def published_component_params(role: str) -> dict[str, int]:
    """``{component: parameters}`` of ``role``'s default model, from the cited counts of
    :data:`PUBLISHED_PARAMS` (SVD's temporal VAE: :data:`SVD_VAE_ENCODER_DECODER_PARAMS`
    plus its 1×1 ``quant_conv``, 8·8 + 8).

    Raises:
        KeyError: a role with no cited counts.
    """
    out = {comp: n for (r, comp), (n, _) in PUBLISHED_PARAMS.items() if r == role}
    if role == "image_to_video":
        out["vae"] = SVD_VAE_ENCODER_DECODER_PARAMS + 8 * 8 + 8
    if not out:
        raise KeyError(f"no published parameter counts for role {role!r}")
    return out


#: the model class and ``from_pretrained`` loader each role's object is built as (the
#: class ``backend.models.registry.load`` returns for the role).
_TOKENIZER_SPECIAL = ("<|startoftext|>", "<|endoftext|>")
CLIP_VOCAB_SIZE = 49408


def expected_config(role: str, component: str) -> dict:
    """The architecture-defining ``config.json`` keys of one component (a deep copy).

    Raises:
        JobError: ``unknown_model_role`` / ``unknown_component`` for names not in
            :data:`PUBLISHED`.
    """
    if role not in PUBLISHED:
        raise JobError("unknown_model_role", f"no published architecture for role {role!r}; roles are "
                                             f"{sorted(PUBLISHED)}")
    if component not in PUBLISHED[role]:
        raise JobError("unknown_component", f"role {role!r} has no component {component!r}; components are "
                                            f"{sorted(PUBLISHED[role])}")
    return copy.deepcopy(PUBLISHED[role][component]["config"])


def component_class(role: str, component: str):
    """The Python class of ``PUBLISHED[role][component]["class"]`` (``"module:Class"``)."""
    expected_config(role, component)  # validates the names
    module_name, class_name = PUBLISHED[role][component]["class"].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_component(role: str, component: str):
    """One component at its published size, default-initialized (random), float32, on
    the current default device; under ``accelerate.init_empty_weights()`` it is built on
    the meta device (no memory), which is how the tests count parameters.

    Returns:
        a diffusers model / scheduler or a transformers model.
    """
    cls = component_class(role, component)
    cfg = expected_config(role, component)
    if PUBLISHED[role][component]["class"].startswith("transformers:"):
        return cls(cls.config_class(**cfg))
    return cls.from_config(cfg)


def clip_tokenizer(max_length: int = 77, pad_token: str = "<|endoftext|>"):
    """A byte-level ``CLIPTokenizer`` with the real vocabulary size (49,408) and special
    token ids (49406 / 49407), without BPE merges (see the module docstring)."""
    from transformers import CLIPTokenizer

    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    symbols, extra = [], 0
    for b in range(256):  # GPT-2's bytes_to_unicode table
        if b in keep:
            symbols.append(chr(b))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    for i in range(len(vocab), CLIP_VOCAB_SIZE - 2):
        vocab[f"<|unused{i}|>"] = i
    vocab[_TOKENIZER_SPECIAL[0]] = CLIP_VOCAB_SIZE - 2
    vocab[_TOKENIZER_SPECIAL[1]] = CLIP_VOCAB_SIZE - 1
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"),
                             model_max_length=max_length, pad_token=pad_token)


def _clip_image_processor(size: int, mean=None, std=None, resample: int = 3):
    from transformers import CLIPImageProcessor

    kw = {} if mean is None else {"image_mean": mean, "image_std": std}
    return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                              resample=resample, **kw)


def _build(role: str) -> dict:
    return {name: build_component(role, name) for name in PUBLISHED[role]}


def build_random(role: str, dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0):
    """The role's loader object (the class ``registry.load(role)`` returns) with every
    network at its published size and random weights (each class's own initialization
    under ``torch.manual_seed(seed)``), without any download.

    Roles and returned classes: ``text_to_image`` -> ``StableDiffusionPipeline`` (what
    ``AutoPipelineForText2Image`` gives for sd-turbo); ``image_to_video`` ->
    ``StableVideoDiffusionPipeline``; ``multiview`` -> :class:`~backend.models.zero123plus
    .Zero123PlusPipeline`; ``sds_guidance`` -> :class:`~backend.models.zero123_guidance
    .Zero123Guidance`; ``background_removal`` -> :class:`~backend.models.background_removal
    .ClipSegBackgroundRemover`.

    Processors (tokenizers, image processors) use the sizes of the hub files: CLIP images
    at 224 px, Zero123++'s VAE condition at 512 px (mean 0.5, std 0.8, as
    ``SoarCraft/Stable123Keypoints`` lists it), CLIPSeg at 352 px.

    Args:
        role: a key of :data:`PUBLISHED`.
        dtype: parameter dtype (built in float32, then cast).
        device: torch device.
        seed: RNG seed of the initialization.

    Raises:
        JobError: ``unknown_model_role``.
    """
    if role not in PUBLISHED:
        expected_config(role, "")
    torch.manual_seed(seed)
    c = _build(role)
    if role == "text_to_image":
        from diffusers import StableDiffusionPipeline

        obj = StableDiffusionPipeline(vae=c["vae"], text_encoder=c["text_encoder"], tokenizer=clip_tokenizer(),
                                      unet=c["unet"], scheduler=c["scheduler"], safety_checker=None,
                                      feature_extractor=None, requires_safety_checker=False)
    elif role == "image_to_video":
        from diffusers import StableVideoDiffusionPipeline

        obj = StableVideoDiffusionPipeline(vae=c["vae"], image_encoder=c["image_encoder"], unet=c["unet"],
                                           scheduler=c["scheduler"], feature_extractor=_clip_image_processor(224))
    elif role == "multiview":
        from backend.models.zero123plus import Zero123PlusPipeline

        obj = Zero123PlusPipeline(vae=c["vae"], text_encoder=c["text_encoder"], tokenizer=clip_tokenizer(pad_token="!"),
                                  unet=c["unet"], scheduler=c["scheduler"], vision_encoder=c["vision_encoder"],
                                  feature_extractor_clip=_clip_image_processor(224),
                                  feature_extractor_vae=_clip_image_processor(512, [0.5] * 3, [0.8] * 3, resample=2),
                                  ramping_coefficients=torch.linspace(0.0, 1.2, 77).tolist())
    elif role == "sds_guidance":
        from backend.models.zero123_guidance import Zero123Guidance

        # sample_size is not part of PUBLISHED (it shapes no weight): Zero123-XL works at 256 px.
        obj = Zero123Guidance(c["unet"], c["vae"], c["image_encoder"], _clip_image_processor(224), c["scheduler"],
                              c["clip_camera_projection"], image_size=256)
    else:  # background_removal
        from transformers import CLIPSegProcessor, ViTImageProcessor

        from backend.models.background_removal import ClipSegBackgroundRemover

        image_processor = ViTImageProcessor(size={"height": 352, "width": 352}, resample=2,
                                            image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
        obj = ClipSegBackgroundRemover(CLIPSegProcessor(image_processor=image_processor, tokenizer=clip_tokenizer()),
                                       c["model"])
    for module in networks(obj):
        module.to(device=device, dtype=dtype)
    return obj


def networks(obj) -> list[torch.nn.Module]:
    """The ``torch.nn.Module`` parts of a role object (pipeline components, guidance
    networks, the CLIPSeg model), each once."""
    if hasattr(obj, "components"):  # diffusers pipelines
        parts = list(obj.components.values())
    else:
        parts = list(vars(obj).values())
    out, seen = [], set()
    for p in parts:
        if isinstance(p, torch.nn.Module) and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out
