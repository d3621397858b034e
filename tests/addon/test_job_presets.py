"""The panel's Draft / Standard / High presets and Advanced overrides produce job specs the
backend accepts, with the settings each preset promises. No bpy: the module is loaded
from its file, outside the add-on package."""

import importlib.util
from dataclasses import fields

import pytest

from _run import REPO
from backend.errors import JobError
from backend.pipeline.generate_video import GenerationSettings
from backend.pipeline.multiview_footage import MultiviewSettings
from backend.pipeline.reconstruct import ReconstructConfig

spec_ = importlib.util.spec_from_file_location("gen4d_job_presets", REPO / "blender_addon" / "job_presets.py")
job_presets = importlib.util.module_from_spec(spec_)
spec_.loader.exec_module(job_presets)


@pytest.mark.parametrize("preset", sorted(job_presets.PRESETS))
def test_every_preset_is_a_spec_the_backend_accepts(preset):
    spec = job_presets.job_spec("prompt", preset, prompt="a dancing robot")
    assert spec["job_type"] == "prompt" and spec["prompt"] == "a dancing robot"
    cfg = ReconstructConfig.from_options(spec["preset"], spec["options"])  # raises on unknown keys
    assert cfg.iterations > 0
    for cls, key in ((MultiviewSettings, "multiview"), (GenerationSettings, "generation")):
        known = {f.name for f in fields(cls)}
        assert set(spec[key]) <= known, (key, set(spec[key]) - known)


def test_presets_order_cost():
    cfgs = {name: ReconstructConfig.from_options(s["preset"], s["options"])
            for name, s in ((n, job_presets.job_spec("footage", n)) for n in job_presets.PRESETS)}
    draft, standard, high = cfgs["DRAFT"], cfgs["STANDARD"], cfgs["HIGH"]
    assert draft.iterations < standard.iterations < high.iterations
    assert draft.max_image_size < standard.max_image_size < high.max_image_size
    assert job_presets.job_spec("footage", "HIGH")["preset"] == "gpu"


def test_advanced_overrides_reach_the_reconstruction_config():
    spec = job_presets.job_spec("footage", "DRAFT", iterations=321, max_image_size=64, representation="hexplane",
                                densify_strategy="stag4d", confidence_weighting=True)
    cfg = ReconstructConfig.from_options(spec["preset"], spec["options"])
    assert (cfg.iterations, cfg.max_image_size, cfg.representation, cfg.densify_strategy) == \
        (321, 64, "hexplane", "stag4d")
    assert cfg.confidence_weighting
    # "PRESET" / 0 keep the preset's values, and the preset table is not modified.
    again = job_presets.job_spec("footage", "DRAFT")
    assert again["options"] == {"iterations": 500, "max_image_size": 96}


def test_job_types_match_the_backend():
    from backend.pipeline.runner import JOB_TYPES

    assert job_presets.JOB_TYPES == JOB_TYPES
    spec = job_presets.job_spec("orbital", "DRAFT", orbit={"fov_deg": 30.0}, video="clip.mp4")
    assert spec["job_type"] == "orbital" and spec["orbit"] == {"fov_deg": 30.0}


def test_bad_choices_are_clear_errors():
    with pytest.raises(ValueError, match="unknown job type"):
        job_presets.job_spec("hologram", "DRAFT")
    with pytest.raises(ValueError, match="unknown preset"):
        job_presets.job_spec("footage", "ULTRA")
    with pytest.raises(ValueError, match="representation"):
        job_presets.job_spec("footage", "DRAFT", representation="nerf")
    with pytest.raises(ValueError, match="must be 0"):
        job_presets.job_spec("footage", "DRAFT", iterations=-5)
    # An override the backend does not know is refused there, by name.
    spec = job_presets.job_spec("footage", "DRAFT")
    spec["options"]["warp_speed"] = 9
    with pytest.raises(JobError, match="warp_speed"):
        ReconstructConfig.from_options(spec["preset"], spec["options"])
