"""The published architectures of backend/models/architectures.py, built on the meta
device (no memory, no download): every component's parameter count equals the count
cited for it, and the configs hold what the loaders need."""

import pytest
import torch
from accelerate import init_empty_weights

from backend.errors import JobError
from backend.models import architectures as arch
from backend.models.registry import ROLES


def _meta_params(role: str, component: str) -> int:
    with init_empty_weights():
        model = arch.build_component(role, component)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("key", sorted(arch.PUBLISHED_PARAMS), ids=lambda k: f"{k[0]}.{k[1]}")
def test_parameter_count_matches_the_cited_count(key):
    role, component = key
    expected, source = arch.PUBLISHED_PARAMS[key]
    assert _meta_params(role, component) == expected, source


def test_svd_vae_is_the_cited_encoder_plus_decoder_and_its_quant_conv():
    assert _meta_params("image_to_video", "vae") == arch.SVD_VAE_ENCODER_DECODER_PARAMS + 8 * 8 + 8


def test_every_role_has_a_published_architecture_and_every_network_a_cited_count():
    assert set(arch.PUBLISHED) == set(ROLES)
    for role, comps in arch.PUBLISHED.items():
        for name, spec in comps.items():
            if "Scheduler" in spec["class"] or (role, name) == ("image_to_video", "vae"):
                continue
            assert (role, name) in arch.PUBLISHED_PARAMS, (role, name)


def test_widths_that_must_agree_across_components():
    # Zero123++ adds the ramped CLIP image embedding to the text embedding: equal widths.
    mv = arch.PUBLISHED["multiview"]
    assert mv["vision_encoder"]["config"]["projection_dim"] == mv["text_encoder"]["config"]["hidden_size"] == \
        mv["unet"]["config"]["cross_attention_dim"] == 1024
    assert mv["text_encoder"]["config"]["num_hidden_layers"] == 23
    sds = arch.PUBLISHED["sds_guidance"]
    assert sds["image_encoder"]["config"]["projection_dim"] == sds["unet"]["config"]["cross_attention_dim"] == \
        sds["clip_camera_projection"]["config"]["embedding_dim"] == 768
    assert sds["unet"]["config"]["in_channels"] == 8
    assert arch.PUBLISHED["image_to_video"]["image_encoder"]["config"]["projection_dim"] == 1024


def test_expected_config_is_a_copy_and_rejects_unknown_names():
    cfg = arch.expected_config("multiview", "unet")
    cfg["in_channels"] = 99
    assert arch.expected_config("multiview", "unet")["in_channels"] == 4
    with pytest.raises(JobError) as e:
        arch.expected_config("nope", "unet")
    assert e.value.code == "unknown_model_role"
    with pytest.raises(JobError) as e:
        arch.expected_config("multiview", "nope")
    assert e.value.code == "unknown_component"


def test_tokenizer_has_the_real_vocabulary_size_and_special_ids():
    tok = arch.clip_tokenizer()
    assert len(tok) == 49408
    ids = tok("a cat", padding="max_length", max_length=77).input_ids
    assert len(ids) == 77 and ids[0] == 49406 and 49407 in ids
    assert max(ids) < arch.PUBLISHED["text_to_image"]["text_encoder"]["config"]["vocab_size"]


@pytest.mark.parametrize("role", sorted(arch.PUBLISHED))
def test_build_random_on_meta_returns_the_registry_loader_class(role):
    expected = {"text_to_image": "StableDiffusionPipeline"}.get(role, ROLES[role].loader.split(":")[1])
    with init_empty_weights():
        obj = arch.build_random(role, device="meta")
    assert type(obj).__name__ == expected
    total = sum(p.numel() for m in arch.networks(obj) for p in m.parameters())
    cited = sum(n for (r, _), (n, _) in arch.PUBLISHED_PARAMS.items() if r == role)
    if role == "image_to_video":
        cited += arch.SVD_VAE_ENCODER_DECODER_PARAMS + 72
    assert total == cited
    assert all(p.device.type == "meta" for m in arch.networks(obj) for p in m.parameters())
