"""gen4d's SDS guidance, SDS term and generation calls compute what their reference code
computes (issue 14), one behaviour test per detail, on tiny random-weight models.

References (line numbers as cited in the docstrings of the code under test):

- Zero123-XL SDS guidance: ``zeng-yifei/STAG4D`` @ 9aa21c9 ``guidance/zero123_4d_utils.py``
  (``z4d``) and its trainer ``main.py`` (``main``);
- SVD: ``StableVideoDiffusionPipeline.__call__`` of the installed diffusers (0.42);
- sd-turbo: its model card's call (1 step, guidance 0) with the folder's own scheduler.
"""

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backend.models.zero123_guidance import Zero123Guidance, pose_features
from backend.optim import sds
from tests.helpers.fixed_coin import FixedCoin

SEED = 3


@pytest.fixture(scope="module")
def guidance(tmp_path_factory):
    from tests.helpers.tiny_models import load_tiny_through_registry, save_tiny_zero123_guidance

    g = load_tiny_through_registry("sds_guidance", save_tiny_zero123_guidance, tmp_path_factory.mktemp("models"))
    assert isinstance(g, Zero123Guidance)
    return g


def _images(b=1, size=48, seed=0):
    return torch.rand(b, size, size, 3, generator=torch.Generator().manual_seed(seed))


def _resized(g, images):
    """z4d:64/145: bilinear to the native size, align_corners=False, [B, 3, S, S]."""
    return F.interpolate(images.permute(0, 3, 1, 2), (g.image_size, g.image_size), mode="bilinear",
                         align_corners=False)


def _spy_vae_encode(g, monkeypatch):
    seen = []
    original = g.vae.encode

    def spy(x, *args, **kwargs):
        seen.append(x.detach().clone())
        return original(x, *args, **kwargs)

    monkeypatch.setattr(g.vae, "encode", spy)
    return seen


# --- Zero123-XL guidance: inputs, posteriors, pose, CFG -------------------------------------------

def test_native_size_is_the_models_own(guidance):
    # Zero123-XL: UNet sample 32 x VAE factor 8 = 256 (z4d:64, 143); the tiny: 16 x 2.
    assert guidance.image_size == guidance.unet.config.sample_size * 2 == 32


def test_rendered_view_is_resized_bilinearly_before_the_vae(guidance, monkeypatch):
    images = _images(2, 48)
    seen = _spy_vae_encode(guidance, monkeypatch)
    guidance.encode_images(images, generator=torch.Generator().manual_seed(SEED))
    torch.testing.assert_close(seen[0], _resized(guidance, images) * 2 - 1, rtol=0, atol=0)


def test_rendered_view_latent_is_a_scaled_posterior_sample(guidance):
    images = _images(2, 48).requires_grad_(True)
    z = guidance.encode_images(images, generator=torch.Generator().manual_seed(SEED))
    dist = guidance.vae.encode(_resized(guidance, images.detach()) * 2 - 1).latent_dist
    draw = torch.randn(dist.mean.shape, generator=torch.Generator().manual_seed(SEED))
    expected = (dist.mean + dist.std * draw) * guidance.vae.config.scaling_factor
    torch.testing.assert_close(z.detach(), expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(z.detach(), dist.mean * guidance.vae.config.scaling_factor, atol=1e-4)
    z.sum().backward()  # differentiable through mean and std
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_condition_clip_embedding_goes_through_a_truncated_uint8_pil_image(guidance):
    from PIL import Image

    images = _images(1, 48, seed=1)
    clip, _ = guidance.encode_condition(images, generator=torch.Generator().manual_seed(SEED))
    # z4d:64-67: interpolate, torchvision to_pil_image (uint8 of 255·x, truncated), processor defaults.
    u8 = (_resized(guidance, images)[0].permute(1, 2, 0) * 255).to(torch.uint8).numpy()
    pixels = guidance.feature_extractor(images=[Image.fromarray(u8)], return_tensors="pt").pixel_values
    with torch.no_grad():
        expected = guidance.image_encoder(pixels).image_embeds
    torch.testing.assert_close(clip, expected, rtol=0, atol=0)


def test_condition_latent_is_an_unscaled_posterior_sample(guidance, monkeypatch):
    images = _images(1, 48, seed=2)
    seen = _spy_vae_encode(guidance, monkeypatch)
    _, latents = guidance.encode_condition(images, generator=torch.Generator().manual_seed(SEED))
    torch.testing.assert_close(seen[0], _resized(guidance, images) * 2 - 1, rtol=0, atol=0)
    with torch.no_grad():
        dist = guidance.vae.encode(seen[0]).latent_dist
    draw = torch.randn(dist.mean.shape, generator=torch.Generator().manual_seed(SEED))
    # z4d:68 + 211-223: sample() · scaling_factor / scaling_factor.
    torch.testing.assert_close(latents, dist.mean + dist.std * draw, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(latents, dist.mean, atol=1e-4)


def test_pose_features_follow_the_reference_formula():
    # gen4d: target 10 deg above the condition camera, 40 deg counter-clockwise, 0.3 farther.
    d_el, d_az, d_r = 10.0, 40.0, 0.3
    got = pose_features(torch.tensor([d_el]), torch.tensor([d_az]), torch.tensor([d_r]))[0]
    # z4d:160 takes STAG4D's "ver", which counts downward (cam_utils.py:48-51): polar = -10 deg.
    polar = -d_el
    expected = torch.tensor([np.deg2rad(polar), np.sin(np.deg2rad(d_az)), np.cos(np.deg2rad(d_az)), d_r],
                            dtype=torch.float32)
    torch.testing.assert_close(got, expected)
    assert got[0] < 0  # raising the camera lowers the polar angle
    # Only sin/cos of the azimuth: STAG4D's unwrapped hor - fixed_azimuth (e.g. -35 - 330) is the same.
    torch.testing.assert_close(pose_features(torch.zeros(1), torch.tensor([-365.0]), torch.zeros(1)),
                               pose_features(torch.zeros(1), torch.tensor([-5.0]), torch.zeros(1)))


def test_cfg_runs_cond_then_uncond_with_zero_context_and_latent(guidance):
    clip, cond = guidance.encode_condition(_images(1, 32, seed=4), generator=torch.Generator().manual_seed(SEED))
    pose = pose_features(torch.tensor([10.0]), torch.tensor([40.0]), torch.tensor([0.0]))
    seen = {}

    def hook(_m, args, kwargs):
        seen["sample"] = (args[0] if args else kwargs["sample"]).clone()
        seen["context"] = kwargs["encoder_hidden_states"].clone()

    def out_hook(_m, _args, _kwargs, output):
        seen["out"] = output.sample.clone()

    h1 = guidance.unet.register_forward_pre_hook(hook, with_kwargs=True)
    h2 = guidance.unet.register_forward_hook(out_hook, with_kwargs=True)
    try:
        noisy = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(9))
        with torch.no_grad():
            eps_u, eps_c = guidance.eps_fn(clip, cond, pose)(noisy, 500)
    finally:
        h1.remove()
        h2.remove()
    ctx = guidance.camera_projection(torch.cat([clip[:, None], pose[:, None]], dim=-1))
    x = seen["sample"]
    # z4d:157-168: [cond; uncond]; cond half: the condition latent and the projected context.
    torch.testing.assert_close(x[:, :4], torch.cat([noisy, noisy]), rtol=0, atol=0)
    torch.testing.assert_close(x[0:1, 4:], cond, rtol=0, atol=0)
    assert (x[1:2, 4:] == 0).all() and (seen["context"][1] == 0).all()
    torch.testing.assert_close(seen["context"][0:1], ctx.detach(), rtol=0, atol=0)
    # z4d:176: the first half is the conditional prediction.
    torch.testing.assert_close(eps_c, seen["out"][0:1], rtol=0, atol=0)
    torch.testing.assert_close(eps_u, seen["out"][1:2], rtol=0, atol=0)


# --- SDS loss, timestep, annealing ----------------------------------------------------------------

def test_sds_gradient_is_the_weighted_residual_per_sample_summed_over_the_batch(guidance):
    clip, cond = guidance.encode_condition(_images(2, 32, seed=5), generator=torch.Generator().manual_seed(SEED))
    pose = pose_features(torch.tensor([10.0, -5.0]), torch.tensor([40.0, 200.0]), torch.zeros(2))
    eps_fn = guidance.eps_fn(clip, cond, pose)
    latents = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(1), requires_grad=True)
    t = 700
    loss = sds.sds_loss(latents, eps_fn, t, guidance.alphas_cumprod, generator=torch.Generator().manual_seed(2))
    loss.backward()
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(2))
    a = guidance.alphas_cumprod[t]
    with torch.no_grad():
        eu, ec = eps_fn(a.sqrt() * latents + (1 - a).sqrt() * noise, t)  # z4d:155 add_noise
        grad = (1 - a) * (eu + 5.0 * (ec - eu) - noise)  # z4d:151, 177, 179
    # z4d:183: 0.5 · sum-reduced MSE: d loss / d z = grad exactly, not grad / B.
    torch.testing.assert_close(latents.grad, grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(loss, 0.5 * grad.square().sum(), rtol=1e-4, atol=1e-6)


def test_timestep_window_and_draws_follow_the_reference_schedule():
    # z4d:56-57, 186-201: [0, 0.5, 0.02, 3000] and [0, 0.95, 0.5, 3000].
    for it, (lo, hi) in {0: (0.5, 0.95), 1: (0.5 - 0.48 / 3000, 0.95 - 0.45 / 3000), 750: (0.38, 0.8375),
                         3000: (0.02, 0.5), 7999: (0.02, 0.5)}.items():
        assert sds.timestep_window(it) == pytest.approx((lo, hi), abs=1e-12)
    # z4d:149, 189-190: t in [int(1000 t_min), int(1000 t_max)], both ends included.
    g = torch.Generator().manual_seed(0)
    draws = {sds.sample_timestep(3000, 1000, g) for _ in range(4000)}
    assert min(draws) == 20 and max(draws) == 500


def test_sds_term_anneals_on_the_next_iteration_and_randomizes_the_background(guidance, monkeypatch, tmp_path):
    """main:248/255: STAG4D increments its counter before update_step, so gen4d's 0-based
    step s uses the window of iteration s + 1; main:348: white, or black with p = 0.5;
    the view is rendered with the reference footage camera's intrinsics."""
    from backend.optim import sds_term
    from backend.pipeline.ingest import load_footage
    from tests.helpers.footage import make_tiny_footage

    footage = load_footage(make_tiny_footage(tmp_path / "f", n_cams=4, n_times=2, size=32), "train")
    term = sds_term.SDSTerm(footage, guidance, torch.zeros(3), total_iterations=80, seed=1)
    iterations, backgrounds, Ks = [], [], []
    original = sds.sample_timestep

    def spy_timestep(iteration, *args, **kwargs):
        iterations.append(iteration)
        return original(iteration, *args, **kwargs)

    def fake_render(model, t, viewmat, K, W, H, bg):
        backgrounds.append(float(bg[0, 0]))
        Ks.append(K.clone())
        return torch.full((1, H, W, 3), 0.5, requires_grad=True), None, None

    monkeypatch.setattr(sds, "sample_timestep", spy_timestep)
    monkeypatch.setattr(sds_term, "render_frames", fake_render)
    for step in range(40):
        loss = term.loss(None, step)
        assert torch.isfinite(loss)
    assert iterations == list(range(1, 41))
    assert set(backgrounds) == {0.0, 1.0} and 10 <= backgrounds.count(0.0) <= 30
    assert all(torch.equal(K[0], footage.Ks[0]) for K in Ks)


# --- novel camera and nearest-view conditioning ------------------------------------------------

_Coin = FixedCoin


AZ = torch.tensor([0.0, 30.0, 90.0, 150.0, 210.0, 270.0, 330.0])  # input + Zero123++ views
EL = torch.tensor([0.0, 20.0, -10.0, 20.0, -10.0, 20.0, -10.0])


def _stag4d_sector(hor: int) -> int:
    """main:337-345: the generated view index for hor outside the input's window."""
    return hor // 60 if hor > 0 else (360 + hor) // 60


def test_nearest_view_is_stag4d_sector_rule_for_every_integer_azimuth():
    for hor in range(-180, 180):
        c = sds.nearest_view(float(hor), 0.0, AZ, EL, 0, _Coin(0.0))  # coin below 0.4: never the input
        if -30 < hor < 30:
            assert c.view == 0, hor
        else:
            assert c.view == 1 + _stag4d_sector(hor), hor
            assert float(np.cos(np.deg2rad(c.delta_azimuth_deg))) == pytest.approx(
                float(np.cos(np.deg2rad(hor - AZ[c.view].item()))))


def test_input_window_is_strict_and_the_coin_keeps_the_input_above_0_4():
    # main:332: hor < 30 and hor > -30, or rand() > 0.4.
    assert sds.nearest_view(30.0, 0.0, AZ, EL, 0, _Coin(0.3)).view == 1
    assert sds.nearest_view(-30.0, 0.0, AZ, EL, 0, _Coin(0.3)).view == 6
    assert sds.nearest_view(29.0, 0.0, AZ, EL, 0, _Coin(0.3)).view == 0
    assert sds.nearest_view(100.0, 0.0, AZ, EL, 0, _Coin(0.41)).view == 0
    assert sds.nearest_view(100.0, 0.0, AZ, EL, 0, _Coin(0.39)).view == 2


def test_novel_camera_is_stag4d_integer_draw():
    rng = random.Random(0)
    cams = [sds.sample_novel_camera(rng, 0.0) for _ in range(20000)]
    az = {a for a, _ in cams}
    el = {e for _, e in cams}
    # main:267-268, 310-311 at opt.elevation 0: hor in [-180, 179], ver in [-30, 29] (down positive).
    assert az == set(range(-180, 180)) and el == set(range(-29, 31))
    assert all(isinstance(a, int) and isinstance(e, int) for a, e in cams[:10])
    # An input seen from 60 deg above (STAG4D elevation -60): ver in [-20, 89] -> up to 80 deg, down to -29.
    el60 = {e for _, e in (sds.sample_novel_camera(rng, 60.0) for _ in range(20000))}
    assert el60 == set(range(-29, 81))


# --- SVD and sd-turbo calls ---------------------------------------------------------------------

class _FakeSVD:
    """Records the call; returns mid-grey frames of the asked size."""

    def __init__(self, num_frames):
        from types import SimpleNamespace

        self.unet = SimpleNamespace(config=SimpleNamespace(num_frames=num_frames))
        self.kwargs = None

    def __call__(self, image, **kwargs):
        from types import SimpleNamespace

        self.image, self.kwargs = image, kwargs
        frames = np.full((kwargs["num_frames"], kwargs["height"], kwargs["width"], 3), 0.5, np.float32)
        return SimpleNamespace(frames=[frames])


def test_svd_call_passes_the_reference_defaults():
    from backend.pipeline.context import JobContext
    from backend.pipeline.generate_video import GenerationSettings, image_to_frames

    pipe = _FakeSVD(num_frames=25)  # SVD-XT's UNet
    rgba = np.full((40, 40, 4), 200, np.uint8)
    frames = image_to_frames(rgba, pipe, GenerationSettings(video_height=64, video_width=64), 16, JobContext())
    kw = {k: v for k, v in pipe.kwargs.items() if k not in ("generator", "callback_on_step_end")}
    assert kw == {"height": 64, "width": 64, "num_frames": 25, "num_inference_steps": 25, "fps": 7,
                  "motion_bucket_id": 127, "noise_aug_strength": 0.02, "min_guidance_scale": 1.0,
                  "max_guidance_scale": 3.0, "decode_chunk_size": 25, "output_type": "np"}
    assert pipe.image.size == (64, 64)
    assert frames.fps == 7.0 and np.allclose(frames.source_times_s, np.arange(25) / 7.0)


def test_svd_frames_equal_diffusers_default_call(tmp_path, monkeypatch):
    """The tiny real StableVideoDiffusionPipeline: gen4d's call gives exactly the frames of
    ``pipe(image, height, width, num_inference_steps, generator)`` with every other
    argument left at diffusers' default (all frames decoded at once included)."""
    from PIL import Image

    from backend.pipeline.context import JobContext
    from backend.pipeline.generate_video import GenerationSettings, image_to_frames
    from tests.helpers.tiny_models import load_tiny_through_registry, save_tiny_image_to_video

    pipe = load_tiny_through_registry("image_to_video", save_tiny_image_to_video, tmp_path)
    pipe.set_progress_bar_config(disable=True)
    settings = GenerationSettings(video_steps=2, video_height=32, video_width=32, seed=SEED)
    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((32, 32, 1), 255, np.uint8)], -1)
    seen = {}
    original = pipe.video_processor.postprocess_video

    def spy(video, output_type):
        out = original(video=video, output_type=output_type)
        seen["frames"] = np.array(out, copy=True)
        return out

    monkeypatch.setattr(pipe.video_processor, "postprocess_video", spy)
    image_to_frames(rgba, pipe, settings, 16, JobContext())
    monkeypatch.undo()
    ref = pipe(Image.fromarray(rgb), height=32, width=32, num_inference_steps=2,
               generator=torch.Generator().manual_seed(SEED), output_type="np").frames
    assert seen["frames"].shape[1] == pipe.unet.config.num_frames == 4
    np.testing.assert_array_equal(seen["frames"], ref)


def test_sd_turbo_call_is_one_trailing_step_without_cfg(tmp_path):
    from backend.pipeline.context import JobContext
    from backend.pipeline.generate_video import GenerationSettings, prompt_to_image
    from tests.helpers.tiny_models import load_tiny_through_registry, save_tiny_text_to_image

    pipe = load_tiny_through_registry("text_to_image", save_tiny_text_to_image, tmp_path)
    pipe.set_progress_bar_config(disable=True)
    calls = []

    def hook(_m, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        calls.append((sample.shape[0], float(torch.as_tensor(args[1] if len(args) > 1 else kwargs["timestep"]))))

    h = pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        prompt_to_image("a red ball", pipe, GenerationSettings(image_size=32), JobContext())
    finally:
        h.remove()
    # sd-turbo card: num_inference_steps=1, guidance_scale=0.0 (no CFG batch); trailing: t = 999.
    assert calls == [(1, 999.0)]
