"""STAG4D's temporal anchor attention, verified by behaviour on a tiny random-weight
Zero123++ loaded through the model registry, with fixed noise."""

import numpy as np
import pytest
import torch

from backend.models.zero123plus import Zero123PlusPipeline, generate_anchored_views

STEPS = 3
H, W = 48, 32  # 3 x 2 tiles of 16 px


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    from tests.helpers.tiny_models import load_tiny_through_registry, save_tiny_zero123plus

    p = load_tiny_through_registry("multiview", save_tiny_zero123plus, tmp_path_factory.mktemp("models"))
    assert isinstance(p, Zero123PlusPipeline)
    p.anchor.cache_dtype = torch.float32  # exact comparisons; the default fp16 only rounds
    return p


def _frames():
    rng = np.random.default_rng(0)
    return [(rng.uniform(0, 255, (32, 32, 3))).astype(np.uint8) for _ in range(2)]


def _noise():
    return torch.randn(1, 4, H // 2, W // 2, generator=torch.Generator().manual_seed(7))


def _run(pipe, image, mode, weight=None):
    return pipe(image, num_inference_steps=STEPS, guidance_scale=3.0, height=H, width=W,
                generator=torch.Generator().manual_seed(1), latents=_noise(), anchor_mode=mode, anchor_weight=weight)


def test_weight_zero_reproduces_the_unanchored_pipeline_exactly(pipe):
    f0, fk = _frames()
    plain = _run(pipe, fk, "off")
    _run(pipe, f0, "record")
    anchored = _run(pipe, fk, "apply", 0.0)
    assert torch.equal(plain.grid, anchored.grid)
    # ... and a non-zero weight does change frame k.
    half = _run(pipe, fk, "apply", 0.5)
    assert (half.grid - plain.grid).abs().max() > 1e-4
    assert plain.views.shape == (6, 3, 16, 16)


def _capture_kqv(pipe):
    """Record every self-attention layer's q/k/v projections, per call."""
    records, handles = {}, []
    for name, module in pipe.unet.named_modules():
        if name.endswith("attn1"):
            for proj in ("to_q", "to_k", "to_v"):
                def hook(_m, _inp, out, key=(name, proj)):
                    records.setdefault(key, []).append(out.detach().clone())
                handles.append(getattr(module, proj).register_forward_hook(hook))
    return records, handles


def test_weight_one_makes_frame_k_kv_equal_frame_0(pipe):
    f0, fk = _frames()
    rec0, handles = _capture_kqv(pipe)
    _run(pipe, f0, "record")
    for h in handles:
        h.remove()
    reck, handles = _capture_kqv(pipe)
    _run(pipe, fk, "apply", 1.0)
    for h in handles:
        h.remove()
    layers = sorted({name for name, _ in rec0})
    assert len(layers) == len(pipe.self_attention_layers) > 0
    for name in layers:
        # Two UNet calls per step: the reference pass (K/V from the reference tokens
        # alone) and the main pass, whose K/V input is [multi-view tokens, reference tokens].
        q0, qk = rec0[(name, "to_q")][1::2], reck[(name, "to_q")][1::2]
        for proj in ("to_k", "to_v"):
            main0, maink = rec0[(name, proj)][1::2], reck[(name, proj)][1::2]
            assert len(main0) == len(maink) == STEPS
            for step in range(STEPS):
                n_mv = q0[step].shape[1]  # queries: the multi-view tokens only
                assert torch.allclose(maink[step][:, :n_mv], main0[step][:, :n_mv], atol=1e-6, rtol=1e-5), \
                    (name, proj, step)
                # The reference-image tokens are left alone: they come from frame k's image.
                assert not torch.allclose(maink[step][:, n_mv:], main0[step][:, n_mv:], atol=1e-4)
        # Queries are left alone too: frame k's own.
        assert not torch.allclose(qk[-1], q0[-1], atol=1e-4)


def test_cache_holds_one_entry_per_layer_per_step_and_is_freed(pipe):
    frames = _frames()
    seen = []
    outputs, stats = generate_anchored_views(pipe, frames, num_inference_steps=STEPS, guidance_scale=3.0,
                                             anchor_weight=0.5, height=H, width=W,
                                             progress=lambda done, total: seen.append((done, total)))
    assert len(outputs) == 2
    assert stats["anchor_cache_entries"] == stats["anchor_layers"] * STEPS
    # Bytes: every entry is [2 (CFG), tokens, channels] float32 here.
    assert stats["anchor_cache_bytes"] > 0
    assert pipe.anchor.cache_bytes == 0 and pipe.anchor.cache == {} and pipe.anchor.mode == "off"
    assert seen[-1] == (2 * STEPS, 2 * STEPS) and len(seen) == 2 * STEPS
    # Recorded keys are exactly (layer, step) for every self-attention layer and step.
    _run(pipe, frames[0], "record")
    assert set(pipe.anchor.cache) == {(n, s) for n in pipe.self_attention_layers for s in range(STEPS)}
    pipe.anchor.clear()


def test_apply_without_anchor_and_bad_weights_are_clear_errors(pipe):
    f0, fk = _frames()
    pipe.anchor.clear()
    with pytest.raises(RuntimeError, match="no temporal anchor cached"):
        _run(pipe, fk, "apply", 0.5)
    with pytest.raises(ValueError, match="anchor weight"):
        _run(pipe, fk, "apply", 1.5)
    with pytest.raises(ValueError, match="anchor mode"):
        _run(pipe, fk, "sideways")


def test_cache_spills_to_disk_past_its_memory_limit_and_still_anchors_every_step(pipe, tmp_path):
    frames = _frames()
    in_memory, stats_mem = generate_anchored_views(pipe, frames, num_inference_steps=STEPS, guidance_scale=3.0,
                                                   height=H, width=W)
    assert stats_mem["anchor_spilled_bytes"] == 0 and stats_mem["anchored_steps"] == STEPS
    per_step = stats_mem["anchor_cache_bytes"] // STEPS
    spill = tmp_path / "spill"
    pipe.anchor.max_memory_bytes = int(1.5 * per_step)
    try:
        spilled, stats = generate_anchored_views(pipe, frames, num_inference_steps=STEPS, guidance_scale=3.0,
                                                 height=H, width=W, spill_dir=spill)
    finally:
        pipe.anchor.max_memory_bytes = None
    assert stats["anchor_cache_bytes"] == stats_mem["anchor_cache_bytes"]
    assert stats["anchor_cache_bytes"] - stats["anchor_spilled_bytes"] <= 1.5 * per_step
    assert stats["anchor_spilled_bytes"] >= (STEPS - 1.5) * per_step
    assert stats["anchored_steps"] == STEPS and stats["anchor_cache_entries"] == stats["anchor_layers"] * STEPS
    # Spilling changes where the anchor lives, not what it is: identical images.
    for a, b in zip(in_memory, spilled):
        assert torch.equal(a.grid, b.grid)
    assert not spill.exists() and pipe.anchor.cache_bytes == 0


def test_stag4d_token_counts_at_real_size():
    """STAG4D's ``int(9600 / (C // 320)**2)`` on Zero123++ v1.2's UNet at 960 x 640
    (latent 120 x 80, a 512-px condition image -> 64 x 64 reference latent)."""
    from backend.models.anchor_attention import stag4d_anchored_tokens

    levels = {320: (9600, 4096), 640: (2400, 1024), 1280: (600, 256)}
    for c, (mv, ref) in levels.items():
        assert stag4d_anchored_tokens(c, mv + ref, 9600, 320) == mv  # down / up blocks: multi-view only
    assert stag4d_anchored_tokens(1280, 150 + 64, 9600, 320) == 214  # mid block: every token
    with pytest.raises(ValueError, match="below"):
        stag4d_anchored_tokens(160, 10, 9600, 320)
