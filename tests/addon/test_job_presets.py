"""The panel's Draft / Standard / High qualities and Advanced overrides produce job specs the
backend accepts, with the settings each preset promises, read from the one presets table
(``protocol/presets.py``). No bpy: the module is loaded without the add-on's ``__init__``."""

import pytest

from _nobpy import addon_module
from protocol.errors import InvalidOptionError
from protocol.job_spec import JOB_TYPES
from protocol.presets import PRESETS, reconstruct_config

job_presets = addon_module("job_presets")


def test_quality_items_come_from_the_shared_presets_table():
    items = job_presets.quality_items()
    assert [i[0] for i in items] == ["DRAFT", "STANDARD", "3MIN", "15MIN", "HIGH"]
    assert [i[1] for i in items] == [PRESETS[n].label for n in ("draft", "standard", "3min", "15min", "high")]


@pytest.mark.parametrize("quality", ["DRAFT", "STANDARD", "3MIN", "15MIN", "HIGH"])
def test_every_quality_is_a_spec_the_backend_accepts(quality):
    spec = job_presets.job_spec("prompt", quality, prompt="a dancing robot")
    assert spec == {"prompt": "a dancing robot", "job_type": "prompt", "preset": quality.lower(), "options": {}}
    assert reconstruct_config(spec["preset"], spec["options"]).optimization.iterations > 0


def test_presets_order_cost():
    cfgs = {q: reconstruct_config(job_presets.job_spec("footage", q)["preset"]) for q in ("DRAFT", "STANDARD", "HIGH")}
    draft, standard, high = cfgs["DRAFT"], cfgs["STANDARD"], cfgs["HIGH"]
    assert draft.optimization.iterations < standard.optimization.iterations < high.optimization.iterations
    assert draft.data.max_image_size < standard.data.max_image_size < high.data.max_image_size
    assert PRESETS["draft"].multiview["steps"] < PRESETS["high"].multiview["steps"]


def test_time_budget_presets_bound_their_training_time():
    """The presets named by a time budget carry it (``time_budget_s``: the schedule fits in
    it; ``time_limit_s``: the fit stops there) and spend more of it on resolution and steps."""
    three, fifteen = reconstruct_config("3min"), reconstruct_config("15min")
    assert 0 < three.optimization.time_budget_s <= 180 and 0 < fifteen.optimization.time_limit_s <= 900
    assert three.model.representation == fifteen.model.representation == "control_points"
    assert three.data.max_image_size < fifteen.data.max_image_size
    assert three.optimization.iterations < fifteen.optimization.iterations


def test_advanced_overrides_reach_the_reconstruction_config():
    spec = job_presets.job_spec("footage", "DRAFT", iterations=321, max_image_size=64, representation="hexplane",
                                densify_strategy="stag4d", confidence_weighting=True)
    cfg = reconstruct_config(spec["preset"], spec["options"])
    assert (cfg.optimization.iterations, cfg.data.max_image_size, cfg.model.representation,
            cfg.densification.strategy) == (321, 64, "hexplane", "stag4d")
    assert cfg.losses.confidence_weighting
    # "PRESET" / 0 keep the preset's values, and the preset table is not modified.
    again = job_presets.job_spec("footage", "DRAFT")
    assert again["options"] == {}
    assert reconstruct_config("draft").optimization.iterations == 500


def test_advanced_choices_are_the_config_schema_s():
    from protocol.config import DENSIFY_STRATEGIES, REPRESENTATIONS

    assert [i[0] for i in job_presets.representation_items()] == ["PRESET", *REPRESENTATIONS]
    assert [i[0] for i in job_presets.densify_items()] == ["PRESET", *DENSIFY_STRATEGIES]
    assert all(label and label != ident for ident, label, _ in job_presets.representation_items())


def test_job_types_match_the_backend():
    assert job_presets.job_types() == JOB_TYPES
    spec = job_presets.job_spec("orbital", "DRAFT", orbit={"fov_deg": 30.0}, video="clip.mp4")
    assert spec["job_type"] == "orbital" and spec["orbit"] == {"fov_deg": 30.0}


@pytest.mark.parametrize("kwargs, code, text", [
    ({"job_type": "hologram"}, "unknown_job_type", "unknown job type"),
    ({"quality": "ULTRA"}, "unknown_preset", "unknown preset"),
    ({"representation": "nerf"}, "invalid_option", "model.representation"),
    ({"iterations": -5}, "invalid_option", "optimization.iterations"),
    ({"options": {"warp_speed": 9}}, "invalid_option", "warp_speed"),
    ({"options": {"iterations": "many"}}, "invalid_option", "whole number"),
    ({"teleport": True}, "invalid_option", "teleport"),
])
def test_bad_choices_fail_in_blender_with_invalid_option(kwargs, code, text):
    args = {"job_type": "footage", "quality": "DRAFT", **kwargs}
    with pytest.raises(InvalidOptionError, match=text) as info:
        job_presets.job_spec(args.pop("job_type"), args.pop("quality"), **args)
    assert info.value.code == code
