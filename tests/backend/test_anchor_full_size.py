"""The temporal anchor at Zero123++ v1.2's real grid (960 x 640, 75 steps, CFG 4) on a tiny
random-weight model with the SD2 UNet's layout (tests/helpers/tiny_models.py,
``sd2_layout=True``): every step is anchored, also when the cache spills to disk, and
STAG4D's token rule reaches the mid block's reference tokens."""

import numpy as np
import pytest
import torch

from backend.models.zero123plus import Zero123PlusPipeline, generate_anchored_views

H, W, STEPS = 960, 640, 75


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    from tests.helpers.tiny_models import load_tiny_through_registry, save_tiny_zero123plus

    p = load_tiny_through_registry("multiview", lambda f: save_tiny_zero123plus(f, sd2_layout=True),
                                   tmp_path_factory.mktemp("models"))
    assert isinstance(p, Zero123PlusPipeline) and p.vae_scale_factor == 8
    return p


def _frames(n):
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (64, 64, 4), dtype=np.uint8) for _ in range(n)]


def test_anchor_covers_75_of_75_steps_at_960x640_with_the_cache_spilled(pipe, tmp_path):
    steps_run = {}

    def progress(done, total):
        steps_run[done] = total

    pipe.anchor.max_memory_bytes = 256 * 1024  # far below the cache: most of it goes to disk
    try:
        outputs, stats = generate_anchored_views(pipe, _frames(2), num_inference_steps=STEPS, guidance_scale=4.0,
                                                 height=H, width=W, progress=progress, spill_dir=tmp_path / "spill")
    finally:
        pipe.anchor.max_memory_bytes = None
    assert len(steps_run) == 2 * STEPS and max(steps_run) == 2 * STEPS  # steps run: 75 per frame
    assert stats["anchor_steps"] == STEPS
    assert stats["anchored_steps"] == STEPS  # steps anchored: every one, in each later frame
    assert stats["anchor_cache_entries"] == stats["anchor_layers"] * STEPS
    assert stats["anchor_spilled_bytes"] > 0.9 * stats["anchor_cache_bytes"]
    assert outputs[0].grid.shape == (3, H, W) and torch.isfinite(outputs[1].grid).all()
    assert not (tmp_path / "spill").exists()


def _main_pass_k(pipe, image, mode, steps=2, weight=1.0):
    """K projections of every self-attention layer's main pass at each step."""
    records, handles = {}, []
    for name, module in pipe.unet.named_modules():
        if name.endswith("attn1"):
            def hook(_m, _inp, out, key=name):
                records.setdefault(key, []).append(out.detach().clone())
            handles.append(module.to_k.register_forward_hook(hook))
    try:
        pipe(image, num_inference_steps=steps, guidance_scale=4.0, height=H, width=W,
             generator=torch.Generator().manual_seed(1),
             latents=torch.randn(1, 4, H // 8, W // 8, generator=torch.Generator().manual_seed(2)),
             anchor_mode=mode, anchor_weight=weight)
    finally:
        for h in handles:
            h.remove()
    return {name: calls[1::2] for name, calls in records.items()}  # [reference pass, main pass] per step


@pytest.mark.parametrize("rule", [True, False])
def test_stag4d_rule_anchors_the_mid_blocks_reference_tokens(pipe, rule):
    f0, fk = _frames(2)
    pipe.anchor.stag4d_token_rule = rule
    pipe.anchor.cache_dtype = torch.float32  # exact comparisons (fp16 only rounds)
    try:
        k0 = _main_pass_k(pipe, f0, "record")
        kk = _main_pass_k(pipe, fk, "apply")
    finally:
        pipe.anchor.stag4d_token_rule = True
        pipe.anchor.cache_dtype = torch.float16
        pipe.anchor.clear()
        pipe.anchor.set_mode("off")
    mid = [n for n in k0 if n.startswith("mid_block")]
    others = [n for n in k0 if not n.startswith("mid_block")]
    assert len(mid) == 1 and others
    latent_mv = {"mid_block": (H // 64) * (W // 64)}  # mid block: 15 x 10 multi-view tokens
    for name in k0:
        for step, (a, b) in enumerate(zip(k0[name], kk[name])):
            n_mv = latent_mv["mid_block"] if name.startswith("mid_block") else (H // 16) * (W // 16)
            assert torch.allclose(a[:, :n_mv], b[:, :n_mv], atol=1e-5), (name, step)  # w = 1: frame 0's
            same_ref = torch.allclose(a[:, n_mv:], b[:, n_mv:], atol=1e-5)
            # The reference tokens come from frame k's own image, except in the mid block
            # under STAG4D's rule, which averages them too.
            assert same_ref == (rule and name.startswith("mid_block")), (name, step, rule)
