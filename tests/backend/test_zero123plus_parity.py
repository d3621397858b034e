"""gen4d's Zero123++ computes what the official pipeline computes (issue 14), one
behaviour test per detail, on a tiny random-weight Zero123++ loaded through the model
registry. "Official" is ``diffusers-support/pipeline.py`` of ``SUDO-AI-3D/zero123plus`` at
7d0315c; line numbers refer to it.

- the reference pass's input is ``√ᾱ_t·z + √(1−ᾱ_t)·n`` (official :126,131-132);
- CFG's negative reference latent is the VAE encoding of an all-zero image (:357-359);
- the condition latent is a VAE posterior sample with the documented draw (:322-324);
- an RGBA condition is composited on grey 127 (:30-40, :346), also from the footage stage;
- the sampler runs with ``timestep_spacing="trailing"`` (official README).
"""

import json

import numpy as np
import pytest
import torch

from backend.models.zero123plus import Zero123PlusPipeline, to_condition_rgb

STEPS = 3
H, W = 48, 32  # 3 x 2 tiles of 16 px; tiny VAE factor 2 -> latents [1, 4, 24, 16]
SEED = 5


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    from tests.helpers.tiny_models import load_tiny_through_registry, save_tiny_zero123plus

    p = load_tiny_through_registry("multiview", save_tiny_zero123plus, tmp_path_factory.mktemp("models"))
    assert isinstance(p, Zero123PlusPipeline)
    return p


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def _noise():
    return torch.randn(1, 4, H // 2, W // 2, generator=torch.Generator().manual_seed(7))


def _spy_unet(pipe):
    """Record every UNet call's ``(sample, timestep, mode)``; mode "w" is the reference pass."""
    calls = []

    def hook(_m, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        mode = (kwargs.get("cross_attention_kwargs") or {}).get("mode")
        calls.append((sample.detach().clone(), torch.as_tensor(t).clone(), mode))

    return calls, pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)


def _spy_encode_condition(pipe, monkeypatch, generator):
    """Record ``encode_condition``'s image argument, its latents and the generator's state
    right after it (where the per-step draws start)."""
    seen = {}
    original = pipe.encode_condition

    def spy(image, *args, **kwargs):
        prompt, cond = original(image, *args, **kwargs)
        seen.update(image=image, cond=cond.detach().clone(), state=generator.get_state())
        return prompt, cond

    monkeypatch.setattr(pipe, "encode_condition", spy)
    return seen


def _posterior(pipe, pixels):
    dist = pipe.vae.encode(pixels).latent_dist
    return dist.mean, dist.std


def _vae_pixels(pipe, image):
    return pipe.feature_extractor_vae(images=to_condition_rgb(image), return_tensors="pt").pixel_values


def test_reference_pass_input_is_sqrt_abar_z_plus_sqrt_one_minus_abar_n(pipe, monkeypatch):
    """Official :126,131-132: the sampler's add_noise then scale_model_input, i.e. the
    reference latent at the main pass's noise level, scaled once."""
    g = torch.Generator().manual_seed(SEED)
    seen = _spy_encode_condition(pipe, monkeypatch, g)
    calls, handle = _spy_unet(pipe)
    try:
        pipe(_image(), num_inference_steps=STEPS, guidance_scale=4.0, height=H, width=W, generator=g,
             latents=_noise())
    finally:
        handle.remove()
    z = seen["cond"]
    assert z.shape == (2, 4, 8, 8)  # [negative, condition]
    assert [m for _, _, m in calls] == ["w", "r"] * STEPS
    # Replay the per-step draws: reference noise [2, 4, 8, 8], then the ancestral noise.
    replay = torch.Generator()
    replay.set_state(seen["state"])
    abar = pipe.scheduler.alphas_cumprod
    for step in range(STEPS):
        n = torch.randn(z.shape, generator=replay)
        torch.randn(1, 4, H // 2, W // 2, generator=replay)
        ref_in, t, _ = calls[2 * step]
        assert torch.equal(t, calls[2 * step + 1][1]) and torch.equal(t, pipe.scheduler.timesteps[step])
        a = abar[int(t)]
        expected = a.sqrt() * z + (1 - a).sqrt() * n
        err = (ref_in - expected).abs().max().item()
        assert torch.allclose(ref_in, expected, atol=1e-5, rtol=1e-5), \
            f"step {step} (t={int(t)}, sqrt(abar)={a.sqrt():.4f}): reference input off by {err:.3g}"


def test_negative_reference_latent_is_the_vae_encoding_of_a_zero_image(pipe, monkeypatch):
    """Official :357-359: ``encode_condition_image(torch.zeros_like(image))`` where image is
    the VAE processor's output, so "zero" is 0 after its normalization (mid-grey for
    mean = std = 0.5), not a zero latent."""
    g = torch.Generator().manual_seed(SEED)
    seen = _spy_encode_condition(pipe, monkeypatch, g)
    encoded = []
    original = pipe.vae.encode

    def spy(x, *args, **kwargs):
        encoded.append(x.detach().clone())
        return original(x, *args, **kwargs)

    monkeypatch.setattr(pipe.vae, "encode", spy)
    pipe(_image(), num_inference_steps=STEPS, guidance_scale=4.0, height=H, width=W, generator=g,
         latents=_noise())
    monkeypatch.undo()
    pixels = _vae_pixels(pipe, _image())
    assert len(encoded) == 2, f"expected the condition and a zero image through the VAE, got {len(encoded)} encodes"
    assert torch.equal(encoded[0], pixels)
    assert encoded[1].shape == pixels.shape and not encoded[1].any()
    # The negative half is that encoding's posterior sample, the second draw of the generator.
    draws = torch.Generator().manual_seed(SEED)
    torch.randn(1, 4, 8, 8, generator=draws)
    eps_neg = torch.randn(1, 4, 8, 8, generator=draws)
    mean, std = _posterior(pipe, torch.zeros_like(pixels))
    negative = seen["cond"][:1]
    assert negative.abs().max() > 1e-2
    assert torch.allclose(negative, mean + std * eps_neg, atol=1e-6), \
        f"negative reference off by {(negative - (mean + std * eps_neg)).abs().max():.3g}"


def test_condition_latent_is_a_posterior_sample_with_the_documented_draw(pipe):
    """Official :322-324: ``latent_dist.sample()``. gen4d draws its noise from ``generator``
    first (then the zero image's), and from torch's global RNG when no generator is given,
    as the official code always does."""
    pixels = _vae_pixels(pipe, _image())
    mean, std = _posterior(pipe, pixels)
    _, cond = pipe.encode_condition(_image(), generator=torch.Generator().manual_seed(SEED))
    assert cond.shape == mean.shape == (1, 4, 8, 8)
    assert (cond - mean).abs().max() > 1e-3, "condition latent equals the posterior's mode"
    eps = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(SEED))
    assert torch.allclose(cond, mean + std * eps, atol=1e-6), \
        f"not the first draw's sample: off by {(cond - (mean + std * eps)).abs().max():.3g}"
    # With CFG: [negative, condition]; the condition's noise is still the first draw.
    _, both = pipe.encode_condition(_image(), generator=torch.Generator().manual_seed(SEED), negative=True)
    assert torch.equal(both[1:], cond)
    # No generator: torch's global RNG, in the same order (so a seeded global RNG
    # reproduces the whole call, as with the official pipeline).
    seeded = pipe(_image(), num_inference_steps=STEPS, guidance_scale=4.0, height=H, width=W,
                  generator=torch.Generator().manual_seed(SEED))
    torch.manual_seed(SEED)
    global_rng = pipe(_image(), num_inference_steps=STEPS, guidance_scale=4.0, height=H, width=W)
    assert torch.equal(seeded.grid, global_rng.grid)


def test_rgba_condition_composites_on_grey_127(pipe, tmp_path, monkeypatch):
    """Official :30-40 (``to_rgb_image``), applied at :346: transparent pixels become
    (127, 127, 127), not the white that transformers' processor (or a white composite)
    would give; the footage stage hands the frames' alpha to the pipeline."""
    from backend.models import zero123plus
    from backend.pipeline.context import JobContext
    from backend.pipeline.multiview_footage import MultiviewSettings, write_multiview_footage
    from backend.pipeline.video_ingest import VideoFrames

    rgba = np.zeros((4, 3, 4), np.uint8)
    rgba[..., :3] = np.array([200, 10, 90], np.uint8)
    rgba[0, :, 3], rgba[1, :, 3], rgba[2, :, 3], rgba[3, :, 3] = 0, 255, 100, 200
    rgb = np.asarray(to_condition_rgb(rgba)).astype(int)
    assert (rgb[0] == 127).all() and (rgb[1] == [200, 10, 90]).all()
    for row, a in ((2, 100), (3, 200)):
        blend = np.round((np.array([200, 10, 90]) * a + 127 * (255 - a)) / 255)
        assert np.abs(rgb[row] - blend).max() <= 1, (a, rgb[row], blend)
    # The pipeline composites: a fully transparent condition is a grey-127 condition.
    clear = np.random.default_rng(1).integers(0, 256, (32, 32, 4), dtype=np.uint8)
    clear[..., 3] = 0
    grey = np.full((32, 32, 3), zero123plus.CONDITION_BACKGROUND, np.uint8)

    def run(image):
        return pipe(image, num_inference_steps=2, guidance_scale=4.0, height=H, width=W,
                    generator=torch.Generator().manual_seed(SEED), latents=_noise()).grid

    assert torch.equal(run(clear), run(grey))
    # The footage stage: a frame's transparent half reaches the pipeline's processors as 127.
    seen = []
    original = pipe.encode_condition
    monkeypatch.setattr(pipe, "encode_condition",
                        lambda image, *a, **k: (seen.append(np.asarray(to_condition_rgb(image))),
                                                original(image, *a, **k))[1])
    img = np.zeros((1, 16, 16, 4), np.float32)
    img[..., :3] = np.array([51, 153, 230], np.float32) / 255
    img[..., 8:, 3] = 1.0  # left half transparent
    frames = VideoFrames(images=img, times=np.zeros(1, np.float32), source_times_s=np.zeros(1), fps=1.0,
                         mask_source="alpha", crop_box=(0, 0, 16), source_size=(16, 16))
    write_multiview_footage(frames, pipe, tmp_path / "footage",
                            MultiviewSettings(steps=1, grid_height=H, grid_width=W), JobContext())
    assert len(seen) == 1
    assert (seen[0][:, :8] == 127).all(), f"transparent pixels became {np.unique(seen[0][:, :8])}"
    assert (seen[0][:, 8:] == [51, 153, 230]).all()


def _save_leading(folder):
    """The tiny model with its scheduler saved as ``timestep_spacing="leading"``."""
    from tests.helpers.tiny_models import save_tiny_zero123plus

    save_tiny_zero123plus(folder)
    path = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(path.read_text())
    config.update(timestep_spacing="leading", steps_offset=1)
    path.write_text(json.dumps(config))
    return folder


def test_scheduler_samples_with_trailing_timesteps(tmp_path):
    """The official README (and STAG4D scripts/gen_mv.py:88-90) replace v1.2's scheduler by
    ``from_config(..., timestep_spacing='trailing')``; gen4d does it when it builds the
    pipeline, whatever the folder's config says."""
    from diffusers import EulerAncestralDiscreteScheduler

    from tests.helpers.tiny_models import load_tiny_through_registry

    saved = json.loads((_save_leading(tmp_path / "probe") / "scheduler" / "scheduler_config.json").read_text())
    assert saved["timestep_spacing"] == "leading"
    p = load_tiny_through_registry("multiview", _save_leading, tmp_path / "models")
    assert isinstance(p.scheduler, EulerAncestralDiscreteScheduler)
    assert p.scheduler.config.timestep_spacing == "trailing"
    assert p.scheduler.config.steps_offset == 1  # the rest of the config is kept
    calls, handle = _spy_unet(p)
    try:
        p(_image(), num_inference_steps=STEPS, guidance_scale=1.0, height=H, width=W,
          generator=torch.Generator().manual_seed(SEED))
    finally:
        handle.remove()
    # Trailing over 1000 training steps: round(1000 - k·1000/3) - 1.
    assert [int(t) for _, t, _ in calls] == [999, 999, 666, 666, 332, 332]
