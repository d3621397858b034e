"""Per-job reconstruction options run through the one job code path (``run_job``) and
leave their mark on the result. The mechanisms' effects are tested in their own modules'
tests; here: wiring, result format, and clear errors."""

import json

import numpy as np
import pytest
import torch

from backend.errors import JobError
from backend.gaussians.hexplane import HexPlaneGaussians4D
from backend.gaussians.ply import read_gaussians_ply
from backend.pipeline.context import JobContext
from backend.pipeline.export import load_model
from backend.pipeline.runner import run_job
from samples.make_scene import make_scene_subprocess
from tests.helpers.footage import make_tiny_footage

BASE = {"optimization": {"iterations": 60, "batch_size": 2}, "model.n_init": 600,
        "data": {"max_image_size": 32, "low_res_factor": 1}, "densification": {"start": 10, "every": 10}}


@pytest.fixture(scope="module")
def wobble(tmp_path_factory):
    out = tmp_path_factory.mktemp("opts") / "wobble"
    return make_scene_subprocess("wobble", out, size=32, n_train=5, n_test=1, n_times=4, samples=4)


def _run(footage, out, **options):
    torch.set_num_threads(2)
    spec = {"job_type": "footage", "preset": "standard", "options": {**BASE, **options}}
    manifest = run_job(spec, footage, out, JobContext())
    return manifest, load_model(out)


def _means(out, manifest, i):
    return read_gaussians_ply(out / manifest["frame_files"][i])["means"]


@pytest.mark.timeout(240)
def test_hexplane_job_exports_moving_frames(wobble, tmp_path):
    manifest, model = _run(wobble, tmp_path / "r", representation="hexplane", coarse_fraction=0.3)
    assert isinstance(model, HexPlaneGaussians4D)
    assert manifest["frame_count"] == 4
    first, last = _means(tmp_path / "r", manifest, 0), _means(tmp_path / "r", manifest, 3)
    assert first.shape == last.shape == (manifest["gaussian_count"], 3)
    assert np.abs(first - last).max() > 1e-4  # the deformation field moved the Gaussians


@pytest.mark.timeout(240)
def test_stag4d_densification_and_scale_cap(wobble, tmp_path):
    manifest, model = _run(wobble, tmp_path / "r", strategy="stag4d", max_scale_ratio=7.5, stop_fraction=0.9)
    assert manifest["gaussian_count"] != 600  # refinement grew and/or pruned Gaussians
    scales = read_gaussians_ply(tmp_path / "r" / manifest["frame_files"][0])["log_scales"]
    ratio = np.exp(scales.max(1) - scales.min(1))
    assert ratio.max() <= 7.5 * (1 + 1e-4)


@pytest.mark.timeout(240)
def test_confidence_weighting_and_rigidity_run(wobble, tmp_path):
    manifest, model = _run(wobble, tmp_path / "r", confidence_weighting=True, rigidity_weight=0.5)
    assert manifest["spec"]["options"]["confidence_weighting"] is True
    assert manifest["stats"]["final_loss"] > 0
    assert np.isfinite(manifest["stats"]["final_loss"])


def test_confidence_weighting_refuses_unsynchronized_footage(tmp_path):
    folder = make_tiny_footage(tmp_path / "f", n_cams=3, n_times=3)
    data = json.loads((folder / "transforms_train.json").read_text())
    data["frames"] = data["frames"][:-1]  # one camera misses the last time
    (folder / "transforms_train.json").write_text(json.dumps(data))
    with pytest.raises(JobError) as info:
        _run(folder, tmp_path / "r", confidence_weighting=True)
    assert info.value.code == "invalid_option" and "every camera at every time" in info.value.message


@pytest.mark.parametrize("key,value", [("representation", "nerf"), ("densification.strategy", "mcmc"),
                                       ("no_such_option", 1), ("iterations", "many"), ("motion", "static"),
                                       ("lr_means", float("nan")), ("batch_size", 0), ("sh_degree", 1)])
def test_bad_options_are_clear_errors(tmp_path, key, value):
    folder = make_tiny_footage(tmp_path / "f")
    with pytest.raises(JobError) as info:
        run_job({"job_type": "footage", "preset": "tiny", "options": {key: value}}, folder, tmp_path / "r",
                JobContext())
    assert info.value.code == "invalid_option" and key in info.value.message
    assert not (tmp_path / "r" / "manifest.json").exists()


@pytest.mark.parametrize("section", ["multiview", "generation"])
def test_unknown_generation_setting_is_an_error_not_dropped(tmp_path, section):
    """Generation-stage overrides used to be filtered silently (``runner._settings``)."""
    with pytest.raises(JobError) as info:
        run_job({"job_type": "video", "video": "clip.mp4", "preset": "tiny", section: {"warp_speed": 9}},
                tmp_path, tmp_path / "r", JobContext())
    assert info.value.code == "invalid_option" and "warp_speed" in info.value.message
