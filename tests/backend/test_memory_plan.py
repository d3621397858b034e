"""Memory plans chosen by ``vram_budget_gb``: the choice at budgets (on a test fixture of
measured numbers: tests/fixtures/generation_profile_fixture.json), the estimate's
arithmetic, applying a plan to tiny CPU pipelines, and validation of the budget."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from backend.errors import JobError
from backend.models import memory
from backend.models.memory import MemoryPlan, StageSettings, apply_plan, estimate_peak_bytes, plan_for
from protocol.config import ReconstructConfig, apply_options
from protocol.errors import InvalidOptionError
from protocol.job_spec import validate_job_spec
from tests.conftest import REPO_ROOT
from tests.helpers.tiny_models import (load_tiny_through_registry, save_tiny_image_to_video, save_tiny_text_to_image,
                                       save_tiny_zero123_guidance, save_tiny_zero123plus)

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "generation_profile_fixture.json"
GB = 1e9


@pytest.fixture
def profiles(monkeypatch):
    monkeypatch.setenv(memory.PROFILE_ENV, str(FIXTURE))
    return memory.load_profiles()


def test_fixture_profiles_are_read_by_role(profiles):
    assert set(profiles) == set(memory.PLANNED_ROLES)
    svd = profiles["image_to_video"]  # the stage named after the role wins over image_to_video_card
    assert (svd.height, svd.width, svd.frames, svd.activation_peak_bytes) == (576, 576, 14, 14_000_000_000)
    assert (profiles["multiview"].height, profiles["multiview"].width) == (960, 640)


@pytest.mark.parametrize("role", memory.PLANNED_ROLES)
def test_a_smaller_budget_never_gets_a_larger_estimate(profiles, role):
    settings = memory.settings_for(role, profiles=profiles)
    budgets = [80, 48, 24, 16, 12, 10, 8, 6, 5, 4, 3, 2, 1, 0.5]
    plans = [plan_for(b, "cuda", role, settings) for b in budgets]
    estimates = [p.estimate_bytes for p in plans]
    assert estimates == sorted(estimates, reverse=True), list(zip(budgets, estimates, plans))
    for b, p in zip(budgets, plans):  # each estimate is what estimate_peak_bytes says of the plan
        assert p.estimate_bytes == estimate_peak_bytes(role, p, settings)
        if p.fits:
            assert p.estimate_bytes <= memory.USABLE_FRACTION * b * GB


def test_12gb_offloads_svd_because_its_estimate_needs_it(profiles):
    from backend.pipeline.generate_video import GenerationSettings

    # 14 frames, as the fixture's profile (the default, SVD-XT's 25, scales activations by 25/14)
    settings = memory.settings_for("image_to_video", GenerationSettings(video_frames=14), profiles=profiles)
    plan = plan_for(12, "cuda", "image_to_video", settings)
    usable = memory.USABLE_FRACTION * 12 * GB
    resident = MemoryPlan("image_to_video", dtype="fp16", decode_chunk_size=8)
    assert estimate_peak_bytes("image_to_video", resident, settings) > usable  # no offload would not fit
    assert (plan.dtype, plan.offload, plan.fits) == ("fp16", "model", True)
    assert plan.estimate_bytes <= usable
    assert plan.decode_chunk_size == 8  # the fastest chunk that fits: offload alone is enough here
    roomy = plan_for(24, "cuda", "image_to_video", settings)
    assert (roomy.offload, roomy.dtype) == ("none", "fp16")


def test_12gb_keeps_multiview_resident_in_fp16_and_smaller_budgets_offload(profiles):
    settings = memory.settings_for("multiview", profiles=profiles)
    assert (plan_for(12, "cuda", "multiview", settings).offload, plan_for(12, "cuda", "multiview", settings).dtype) \
        == ("none", "fp16")
    small = plan_for(6, "cuda", "multiview", settings)
    assert small.offload == "model" and small.fits


def test_no_budget_changes_nothing(profiles):
    for role in memory.PLANNED_ROLES:
        plan = plan_for(None, "cuda", role, memory.settings_for(role, profiles=profiles))
        assert (plan.dtype, plan.offload, plan.vae_slicing, plan.vae_tiling, plan.fits, plan.budget_gb) == \
            (None, "none", False, False, None, None)
        assert plan.decode_chunk_size is None  # SVD: every frame in one pass, as diffusers does


def test_estimate_arithmetic():
    comps = memory.component_params("multiview")
    settings = StageSettings(960, 640, profile=memory.StageProfile("multiview", activation_peak_bytes=4 * 10 ** 9,
                                                                   height=960, width=640))
    full = MemoryPlan("multiview", dtype="fp32")
    phases = memory.estimate_phases("multiview", full, settings)
    weights32 = sum(comps.values()) * 4
    assert phases["encode"] == weights32
    assert phases["denoise"] == weights32 + 4 * 10 ** 9
    assert phases["decode"] == weights32 + 960 * 640 * memory.DECODE_ELEMENTS_PER_PIXEL["AutoencoderKL"] * 4
    half = memory.estimate_phases("multiview", MemoryPlan("multiview", dtype="fp16"), settings)
    assert half["denoise"] == (weights32 + 4 * 10 ** 9) // 2  # fp16 halves weights and activations
    off = memory.estimate_phases("multiview", MemoryPlan("multiview", dtype="fp16", offload="model"), settings)
    assert off["denoise"] == comps["unet"] * 2 + 2 * 10 ** 9  # only the (pinned) UNet resident
    assert off["encode"] == (comps["unet"] + comps["vision_encoder"]) * 2  # + the largest encoder
    tiled = memory.estimate_phases("multiview", MemoryPlan("multiview", dtype="fp16", vae_tiling=True), settings)
    assert half["decode"] - tiled["decode"] == (960 - 768) * 640 * memory.DECODE_ELEMENTS_PER_PIXEL["AutoencoderKL"] * 2
    # a job twice the measured size: activations scale with pixels
    big = StageSettings(1920, 640, profile=settings.profile)
    assert memory.estimate_phases("multiview", full, big)["denoise"] == weights32 + 8 * 10 ** 9


def test_svd_decode_chunk_divides_the_decode_estimate():
    s = StageSettings(576, 576, frames=14, decode_batch=14)
    per_frame = 576 * 576 * memory.DECODE_ELEMENTS_PER_PIXEL["AutoencoderKLTemporalDecoder"] * 2
    dec = {c: memory.estimate_phases("image_to_video", MemoryPlan("image_to_video", dtype="fp16",
                                                                  decode_chunk_size=c), s)["decode"] for c in (1, 4)}
    assert dec[4] - dec[1] == 3 * per_frame


def test_missing_profile_is_said_in_the_plan(monkeypatch, tmp_path):
    monkeypatch.setenv(memory.PROFILE_ENV, str(tmp_path / "absent.json"))
    plan = plan_for(12, "cuda", "multiview")
    assert any("no measured activations" in n for n in plan.notes)


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), 1e6, "12", True, [12]])
def test_bad_budgets_are_refused_everywhere(bad):
    with pytest.raises(InvalidOptionError) as err:
        apply_options(ReconstructConfig(), {"vram_budget_gb": bad})
    assert err.value.code == "invalid_option" and "vram_budget_gb" in err.value.message
    with pytest.raises(JobError) as jerr:
        memory.check_budget(bad)
    assert jerr.value.code == "invalid_option"
    with pytest.raises(InvalidOptionError):
        validate_job_spec({"job_type": "video", "video": "a.mp4", "options": {"memory": {"vram_budget_gb": bad}}})


def test_good_budgets_and_null_are_accepted():
    assert apply_options(ReconstructConfig(), {"vram_budget_gb": 12}).memory.vram_budget_gb == 12.0
    assert apply_options(ReconstructConfig(), {"memory.vram_budget_gb": 7.5}).memory.vram_budget_gb == 7.5
    assert apply_options(ReconstructConfig(), {"vram_budget_gb": None}).memory.vram_budget_gb is None
    assert ReconstructConfig().memory.vram_budget_gb is None
    assert validate_job_spec({"options": {"vram_budget_gb": 12}}).memory.vram_budget_gb == 12.0


def test_cli_option_parses_to_the_budget():
    from backend.__main__ import _options, _parse_option

    opts = _options([_parse_option("vram_budget_gb=12"), _parse_option("iterations=5")])
    assert validate_job_spec({"options": opts}).memory.vram_budget_gb == 12.0
    assert validate_job_spec({"options": _options([_parse_option("vram_budget_gb=null")])}).memory.vram_budget_gb \
        is None


# -- applying plans to tiny CPU pipelines --------------------------------------------------------


def test_apply_plan_sets_dtype_and_vae_switches_on_a_diffusers_pipeline(tmp_path):
    pipe = load_tiny_through_registry("text_to_image", save_tiny_text_to_image, tmp_path)
    assert pipe.unet.dtype == torch.float32 and not pipe.vae.use_slicing and not pipe.vae.use_tiling
    actions = apply_plan(pipe, MemoryPlan("text_to_image", dtype="bf16", vae_slicing=True, vae_tiling=True), "cpu")
    assert pipe.unet.dtype == pipe.vae.dtype == pipe.text_encoder.dtype == torch.bfloat16
    assert pipe.vae.use_slicing and pipe.vae.use_tiling
    assert pipe.memory_plan.dtype == "bf16" and any("tiling on" in a for a in actions)
    out = pipe(prompt=["a", "b"], num_inference_steps=2, guidance_scale=0.0, height=64, width=64, output_type="np",
               generator=torch.Generator().manual_seed(0)).images  # 64 px > the tiny VAE's 32 px tile
    assert out.shape == (2, 64, 64, 3) and np.isfinite(out).all()
    apply_plan(pipe, MemoryPlan("text_to_image", dtype="fp32"), "cpu")
    assert pipe.unet.dtype == torch.float32 and not pipe.vae.use_slicing and not pipe.vae.use_tiling


def test_apply_plan_on_zero123plus_runs_with_tiling_in_bf16(tmp_path):
    pipe = load_tiny_through_registry("multiview", save_tiny_zero123plus, tmp_path)
    apply_plan(pipe, MemoryPlan("multiview", dtype="bf16", vae_tiling=True), "cpu")
    assert pipe.unet.dtype == pipe.vision_encoder.dtype == pipe.vae.dtype == torch.bfloat16
    assert pipe.vae.use_tiling
    rgb = np.full((32, 32, 3), 200, np.uint8)
    out = pipe(rgb, num_inference_steps=2, guidance_scale=4.0, height=48, width=32,
               generator=torch.Generator().manual_seed(0))
    assert out.grid.shape == (3, 48, 32) and torch.isfinite(out.grid).all()


def test_offload_on_the_cpu_is_skipped_and_said(tmp_path, caplog):
    pipe = load_tiny_through_registry("multiview", save_tiny_zero123plus, tmp_path)
    with caplog.at_level("INFO", logger="backend.models.memory"):
        actions = apply_plan(pipe, MemoryPlan("multiview", offload="model"), "cpu")
    assert "model CPU offload skipped: no accelerator (cpu)" in actions
    assert "offload skipped" in caplog.text
    assert not hasattr(pipe.unet, "_hf_hook") and pipe.unet.device.type == "cpu"


def test_zero123_guidance_plan(tmp_path):
    guidance = load_tiny_through_registry("sds_guidance", save_tiny_zero123_guidance, tmp_path)
    apply_plan(guidance, MemoryPlan("sds_guidance", dtype="fp16"), "cpu")
    assert guidance.unet.dtype == guidance.vae.dtype == guidance.camera_projection.proj.weight.dtype == torch.float16
    assert guidance.image_encoder.dtype == torch.float16
    with pytest.raises(ValueError, match="sequential"):
        apply_plan(guidance, MemoryPlan("sds_guidance", offload="sequential"), "cuda")


def test_svd_plan_keeps_slicing_off_the_temporal_decoder_and_runs(tmp_path):
    from backend.pipeline.context import JobContext
    from backend.pipeline.generate_video import GenerationSettings, image_to_frames

    pipe = load_tiny_through_registry("image_to_video", save_tiny_image_to_video, tmp_path)
    actions = apply_plan(pipe, MemoryPlan("image_to_video", dtype="bf16", vae_slicing=True, decode_chunk_size=1),
                         "cpu")
    assert pipe.unet.dtype == pipe.vae.dtype == torch.bfloat16
    assert any("temporal decoder ignores them" in a for a in actions)
    calls = []
    decode = pipe.vae.decode
    pipe.vae.decode = lambda z, num_frames, **kw: calls.append(num_frames) or decode(z, num_frames=num_frames, **kw)
    settings = GenerationSettings(video_steps=2, video_frames=4, video_height=32, video_width=32)
    frames = image_to_frames(np.full((32, 32, 4), 200, np.uint8), pipe, settings, 16, JobContext(),
                             decode_chunk_size=pipe.memory_plan.decode_chunk_size)
    assert calls == [1, 1, 1, 1]  # one frame per decode pass, as the plan says
    assert np.isfinite(frames.images).all()


def test_runner_loads_under_the_budget_and_reports_the_plan(tmp_path, monkeypatch, profiles):
    from backend.models import registry
    from backend.pipeline.context import JobContext
    from backend.pipeline.runner import load_model

    save_tiny_zero123plus(tmp_path / "models" / "multiview")
    monkeypatch.setenv(registry.MODELS_DIR_ENV, str(tmp_path / "models"))
    events, plans = [], {}
    ctx = JobContext(on_progress=events.append, min_interval_s=0.0)
    pipe = load_model("multiview", {"job_type": "video", "options": {"vram_budget_gb": 6}}, "cpu", ctx,
                      "multiview", plans)
    plan = plans["multiview"]
    assert plan["budget_gb"] == 6.0 and plan["dtype"] == "fp32" and plan["offload"] == "model"  # CPU: fp32
    assert plan["estimate_is"] == "host-side estimate, not a measurement"
    assert "model CPU offload skipped: no accelerator (cpu)" in plan["applied"]
    assert any(e.message and "memory plan for multiview" in e.message and "ESTIMATED" in e.message for e in events)
    assert pipe.memory_plan.offload == "model"
    plain = load_model("multiview", {"job_type": "video"}, "cpu", ctx, "multiview", plans2 := {})
    assert plans2 == {} and not hasattr(plain, "memory_plan") and plain.unet.dtype == torch.float32


def test_without_a_budget_a_cuda_job_is_planned_for_its_gpu_and_a_cpu_job_is_not(monkeypatch):
    import torch

    from backend.models.memory import auto_budget_gb

    assert auto_budget_gb("cpu") is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: SimpleNamespace(total_memory=12e9))
    assert auto_budget_gb("cuda") == pytest.approx(12.0)
    assert auto_budget_gb("cpu") is None


def test_default_sizes_are_the_stage_settings_defaults():
    from backend.pipeline.generate_video import GenerationSettings
    from backend.pipeline.multiview_footage import MultiviewSettings

    gen, mv = GenerationSettings(), MultiviewSettings()
    for role in memory.DEFAULT_SIZES:
        a = memory.settings_for(role, profiles={})
        b = memory.settings_for(role, gen, mv, profiles={})
        assert (a.height, a.width, a.frames) == (b.height, b.width, b.frames), role
