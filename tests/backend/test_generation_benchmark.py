"""benchmarks/generation.py's cheap parts: argument parsing, the step-timing and
extrapolation arithmetic, the report writer, and each stage runner on tiny random-weight
models (no real-size run here)."""

import dataclasses
import json

import pytest

from benchmarks import generation as gen
from tests.helpers import tiny_models

#: keys helper D and the README table read from every measured stage.
STAGE_KEYS = {"role", "model", "dtype", "resolution", "steps_real", "steps_measured", "seconds_per_step",
              "seconds_total_extrapolated", "extrapolated", "params", "weights_bytes", "rss_after_build_bytes",
              "peak_rss_bytes", "activation_peak_bytes", "cuda_max_allocated_bytes"}


def test_parse_args_defaults_and_errors():
    a = gen.parse_args([])
    assert (a.threads, a.frames, a.steps, a.stage, a.device) == (2, 16, None, None, "auto")
    a = gen.parse_args(["--stage", "multiview", "--stage", "sds_guidance", "--threads", "4", "--steps", "2"])
    assert a.stage == ["multiview", "sds_guidance"] and a.threads == 4 and a.steps == 2
    with pytest.raises(SystemExit):
        gen.parse_args(["--stage", "nope"])
    with pytest.raises(SystemExit):
        gen.parse_args(["--threads", "0"])


def test_real_settings_are_gen4ds_defaults():
    from backend.pipeline.generate_video import GenerationSettings
    from backend.pipeline.multiview_footage import MultiviewSettings

    st, g, mv = gen.stages(16), GenerationSettings(), MultiviewSettings()
    assert st["text_to_image"].steps_real == g.image_steps and st["text_to_image"].settings["size"] == g.image_size
    assert st["image_to_video"].steps_real == g.video_steps
    assert st["image_to_video"].settings == {"height": g.video_height, "width": g.video_width,
                                             "frames": g.video_frames or 25}
    assert st["multiview"].steps_real == mv.steps
    assert (st["multiview"].settings["height"], st["multiview"].settings["width"]) == (mv.grid_height, mv.grid_width)
    assert st["multiview"].settings["guidance"] == mv.guidance_scale
    assert st["background_removal"].steps_real == 16


def test_step_durations_start_at_the_first_pass_after_the_previous_step():
    # two passes per step (reference + main) as in Zero123++; a gap before step 1
    starts = [1.0, 1.5, 3.2, 3.6]
    ends = [2.0, 4.0]
    assert gen.step_durations(starts, ends) == pytest.approx([1.0, 0.8])
    with pytest.raises(ValueError):
        gen.step_durations([1.0], [2.0, 3.0])


def test_extrapolate_arithmetic():
    r = gen.extrapolate([3.0, 2.0, 2.2], wall=10.0, steps_real=25)
    assert r["seconds_per_step"] == pytest.approx(2.1)
    assert r["seconds_overhead"] == pytest.approx(10.0 - 7.2)
    assert r["seconds_total_extrapolated"] == pytest.approx(2.8 + 3.0 + 24 * 2.1)
    assert r["extrapolated"] and r["steps_measured"] == 3
    one = gen.extrapolate([5.0], wall=6.0, steps_real=4)
    assert one["seconds_total_extrapolated"] == pytest.approx(1.0 + 4 * 5.0)
    assert not gen.extrapolate([1.0, 1.0], wall=2.0, steps_real=2)["extrapolated"]
    with pytest.raises(ValueError):
        gen.extrapolate([], 1.0, 3)


def _tiny(name, **settings):
    stage = gen.stages(3)[name]
    return dataclasses.replace(stage, settings={**stage.settings, **settings})


@pytest.mark.parametrize("name, save, settings", [
    ("text_to_image", tiny_models.save_tiny_text_to_image, {"size": 32}),
    ("image_to_video", tiny_models.save_tiny_image_to_video, {"height": 32, "width": 32, "frames": 2}),
    ("multiview", tiny_models.save_tiny_zero123plus, {"height": 48, "width": 32}),
    ("sds_guidance", tiny_models.save_tiny_zero123_guidance, {"size": 32}),
    ("background_removal", tiny_models.save_tiny_background_removal, {"frame_px": 24}),
])
def test_stage_runner_times_every_measured_step_on_tiny_models(tmp_path, name, save, settings):
    stage = _tiny(name, **settings)
    obj = tiny_models.load_tiny_through_registry(stage.role, save, tmp_path)
    r = gen.run_stage(stage, obj, steps=2)
    measured = min(2, stage.steps_real)  # capped at the real steps: sd-turbo runs 1
    n_steps = 2 * measured if name == "multiview" else measured  # multiview: 2 frames
    assert len(r["step_seconds"]) == n_steps and all(d > 0 for d in r["step_seconds"])
    assert r["seconds_per_step"] > 0 and r["extrapolated"] == (measured < stage.steps_real)
    assert r["seconds_total_extrapolated"] >= stage.steps_real * min(r["step_seconds"]) * 0.5
    if name == "multiview":
        assert r["frames_measured"] == 2 and r["anchor_stats"]["anchor_layers"] > 0
        per_frame = r["seconds_per_later_frame_extrapolated"]
        assert r["seconds_total_extrapolated"] == pytest.approx(
            r["seconds_first_frame_extrapolated"] + (stage.settings["frames"] - 1) * per_frame)


def _fake(stage, seconds, build=2.0, peak=3e9):
    return {"stage": stage, "role": stage, "model": "m", "dtype": "float32", "resolution": "8x8",
            "steps_real": 10, "steps_measured": 1, "seconds_per_step": 1.0, "seconds_total_extrapolated": seconds,
            "extrapolated": True, "params": 10, "weights_bytes": 40, "rss_after_build_bytes": 1e9,
            "peak_rss_bytes": peak, "activation_peak_bytes": peak - 1e9, "cuda_max_allocated_bytes": None,
            "build_seconds": build, "unit": "u"}


def test_report_merges_stages_and_sums_the_video_job(tmp_path):
    out = tmp_path / "gen.json"
    gen.write_report(out, [_fake("multiview", 100.0)], threads=2, frames=16, command="a")
    rep = gen.write_report(out, [_fake("background_removal", 10.0, peak=5e9)], threads=2, frames=16, command="b")
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(rep))
    assert {"device", "torch", "threads", "date", "command", "stages", "video_to_4d"} <= set(saved)
    assert set(saved["stages"]) == {"multiview", "background_removal"}
    assert STAGE_KEYS <= set(saved["stages"]["multiview"])
    v = saved["video_to_4d"]
    recon = gen.reconstruction_reference()
    assert v["seconds"] == pytest.approx(100 + 2 + 10 + 2 + recon["seconds"])
    assert v["missing"] == [] and v["peak_rss_bytes"] == 5e9 and v["extrapolated"]
    md = out.with_suffix(".md").read_text()
    assert "| multiview |" in md and "extrapolated" in md and "Video → 4D job, 16 frames" in md
    # a different thread count starts a new report instead of mixing measurements
    rep = gen.write_report(out, [_fake("multiview", 50.0)], threads=4, frames=16, command="c")
    assert set(rep["stages"]) == {"multiview"} and rep["video_to_4d"]["missing"] == ["background_removal"]


def test_reconstruction_reference_is_the_slowest_dnerf_scene():
    rows = json.loads(gen.RECONSTRUCTION_SOURCE.read_text())
    ref = gen.reconstruction_reference()
    assert ref["seconds"] == max(r["train_seconds"] for r in rows)
    assert "not measured here" in ref["source"]
