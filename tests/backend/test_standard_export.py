"""The PLY export for other 3DGS tools (issue 15, build item 4): a ``"blender"`` asset also
gets ``frames_3dgs/``, the same Gaussians refitted for the standard 3DGS formation
(:mod:`backend.pipeline.reconstruct.refit_formation`), named in the manifest's
``standard_frame_files``. The full-size figures live in ``benchmarks/standard_export.py``."""

import numpy as np
import pytest
import torch

from backend.eval.metrics import score_images, summarize
from backend.gaussians.ply import read_gaussians_ply
from backend.errors import JobCancelled, JobError
from backend.pipeline.context import JobContext
from backend.pipeline.export import export_result, load_model
from backend.pipeline.ingest import load_footage
from backend.pipeline.reconstruct.refit_formation import refit_for_formation
from backend.pipeline.runner import checked_config, run_job
from backend.render.frames import render_rgba
from protocol.formats.manifest import Manifest, ManifestError, manifest_from_dict, read_manifest
from samples.make_scene import make_scene_subprocess

BASE = {"optimization": {"iterations": 300, "batch_size": 2}, "model.n_init": 800,
        "data": {"max_image_size": 32, "low_res_factor": 1}, "densification": {"start": 10, "every": 10}}


@pytest.fixture(scope="module")
def wobble(tmp_path_factory):
    out = tmp_path_factory.mktemp("std") / "wobble"
    return make_scene_subprocess("wobble", out, size=32, n_train=10, n_test=2, n_times=4, samples=4)


def _spec(**options):
    return {"job_type": "footage", "preset": "standard", "options": {**BASE, **options}}


@pytest.fixture(scope="module")
def blender_job(wobble, tmp_path_factory):
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("std") / "result"
    spec = _spec(**{"output.standard_ply_refit": 0.2})
    return run_job(spec, wobble, out, JobContext()), out, spec


def _psnr(model, footage) -> float:
    with torch.no_grad():
        pred = render_rgba(model, footage.viewmats, footage.Ks, footage.times, footage.width, footage.height)
    return summarize(score_images(pred, footage.images))["psnr"]


@pytest.mark.timeout(300)
def test_a_blender_job_writes_refitted_standard_frames_beside_its_own(blender_job):
    manifest, out, _ = blender_job
    assert manifest["image_formation"] == "blender"
    assert manifest["standard_frame_files"] == [f"frames_3dgs/frame_{i:04d}.ply" for i in range(4)]
    assert manifest["stats"]["standard_ply_refit"]["steps"] == round(0.2 * 300)
    assert read_manifest(out).standard_frame_files == manifest["standard_frame_files"]
    for own, std in zip(manifest["frame_files"], manifest["standard_frame_files"]):
        a, b = read_gaussians_ply(out / own), read_gaussians_ply(out / std)
        assert a["means"].shape == b["means"].shape == (manifest["gaussian_count"], 3)
        # the same Gaussians, in the same order: moved a little by the refit, not reshuffled
        assert np.median(np.linalg.norm(a["means"] - b["means"], axis=1)) < 0.01
        assert np.abs(a["sh"] - b["sh"]).max() > 1e-3  # colours refitted


@pytest.mark.timeout(300)
def test_refit_recovers_what_a_standard_viewer_loses_and_leaves_the_model_alone(blender_job, wobble):
    _, out, spec = blender_job
    model = load_model(out)
    cfg = checked_config(spec)
    train = load_footage(wobble, "train", max_size=32)
    test = load_footage(wobble, "test", max_size=32)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    own = _psnr(model, test)
    model.image_formation = "3dgs"
    viewer = _psnr(model, test)  # what a standard 3DGS viewer shows of the blender frames
    model.image_formation = "blender"
    refit, stats = refit_for_formation(model, train, cfg, "3dgs", 150, JobContext())
    after = _psnr(refit, test)
    print(f"held-out PSNR: own formation {own:.2f}, as a 3dgs viewer shows it {viewer:.2f}, refit {after:.2f} dB")
    # measured: own formation 16.84, as a 3dgs viewer shows it 13.13, refit 15.19 dB (a 32 px,
    # 300-step fit; the demo's full-size figures are in benchmarks/standard_export.py). The
    # bar is half the measured gain.
    assert after - viewer >= 1.0, (own, viewer, after)
    assert refit.image_formation == "3dgs" and model.image_formation == "blender"
    assert refit.num_gaussians == model.num_gaussians
    assert stats["steps"] == 150 and stats["loss_last"] < stats["loss_first"]
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)  # the Blender asset is untouched
    assert not any(p.requires_grad for p in refit.parameters())


@pytest.mark.timeout(300)
@pytest.mark.parametrize("options", [{"output.standard_ply_refit": 0.0}, {"model.image_formation": "3dgs"}])
def test_no_standard_frames_when_off_or_already_standard(wobble, tmp_path, options):
    torch.set_num_threads(2)
    spec = _spec(**options, optimization={"iterations": 20, "batch_size": 2})
    manifest = run_job(spec, wobble, tmp_path / "r", JobContext())
    assert manifest["standard_frame_files"] is None
    assert "standard_ply_refit" not in manifest["stats"]
    assert not (tmp_path / "r" / "frames_3dgs").exists()


def test_refit_checks_its_arguments_and_stops_on_cancel(blender_job, wobble):
    _, out, spec = blender_job
    model, cfg = load_model(out), checked_config(spec)
    train = load_footage(wobble, "train", max_size=32)
    with pytest.raises(JobError, match="linear"):
        refit_for_formation(model, train, cfg, "linear", 10, JobContext())
    with pytest.raises(ValueError, match="steps"):
        refit_for_formation(model, train, cfg, "3dgs", 0, JobContext())
    ctx = JobContext()
    ctx.cancel_event.set()
    with pytest.raises(JobCancelled):
        refit_for_formation(model, train, cfg, "3dgs", 10, ctx)


def test_export_refuses_a_standard_model_that_is_not_standard(blender_job, tmp_path):
    _, out, _ = blender_job
    model = load_model(out)
    with pytest.raises(ValueError, match="3dgs"):
        export_result(model, tmp_path / "x", 2, 24.0, {}, JobContext(), standard_model=load_model(out))
    assert not (tmp_path / "x").exists()


def test_manifest_checks_standard_frame_files_and_reads_old_ones_as_none():
    files = ["frames/frame_0000.ply", "frames/frame_0001.ply"]
    std = ["frames_3dgs/frame_0000.ply", "frames_3dgs/frame_0001.ply"]
    m = Manifest(frame_count=2, frame_files=files, image_formation="blender", standard_frame_files=std)
    assert manifest_from_dict(m.to_dict()).standard_frame_files == std
    old = {k: v for k, v in m.to_dict().items() if k != "standard_frame_files"}
    assert manifest_from_dict(old).standard_frame_files is None
    for bad in (std[:1], ["/etc/passwd", std[1]], ["../x.ply", std[1]], "frames_3dgs", [std[0], 3]):
        with pytest.raises(ManifestError, match="standard_frame_files|relative"):
            Manifest(frame_count=2, frame_files=files, standard_frame_files=bad)
