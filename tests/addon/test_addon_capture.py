"""Capture selected animated object: the add-on renders an animation from cameras around it
into footage the backend reads, with cameras that agree with the images, and leaves the
scene as it was."""

import importlib.util
import json

import numpy as np
import pytest
import torch

from _run import BLENDERS, run_bpy_script

from backend.pipeline.ingest import load_footage

if importlib.util.find_spec("bpy") is None:
    pytest.skip("needs the bpy module", allow_module_level=True)


@pytest.fixture(scope="module", params=BLENDERS)
def captured(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("capture")
    return run_bpy_script("capture_checks.py", out, blender=request.param)


def test_capture_writes_footage_the_backend_reads(captured):
    footage = load_footage(captured["footage"], "train")
    assert len(footage) == 6 * 5 and footage.width == footage.height == 48
    np.testing.assert_allclose(footage.unique_times().numpy(), [0, 0.25, 0.5, 0.75, 1.0], atol=1e-6)
    doc = json.loads((footage_dir(captured) / "transforms_train.json").read_text())
    assert doc["gen4d"]["scene_frames"] == [1, 2, 3, 4, 5] and doc["gen4d"]["fps"] == 12.0
    # Only the ball is rendered (the ground plane is hidden): every image shows a compact
    # object, covering a few percent of the frame, with transparent surroundings.
    coverage = (footage.images[..., 3] > 0.5).float().mean(dim=(1, 2))
    assert 0.01 < float(coverage.min()) and float(coverage.max()) < 0.4


def footage_dir(captured):
    from pathlib import Path
    return Path(captured["footage"])


def test_cameras_project_the_moving_object_onto_its_image(captured):
    """The ball's world centre at each frame's scene frame, projected with the written c2w
    (through the backend's camera conversion) and intrinsics, lands on the mask centroid."""
    footage = load_footage(captured["footage"], "train")
    frames = json.loads((footage_dir(captured) / "transforms_train.json").read_text())["gen4d"]["scene_frames"]
    errors = []
    for k in range(len(footage)):
        alpha = footage.images[k, ..., 3].numpy()
        ys, xs = np.mgrid[0:alpha.shape[0], 0:alpha.shape[1]] + 0.5
        centroid = np.array([(xs * alpha).sum(), (ys * alpha).sum()]) / alpha.sum()
        scene_frame = frames[int(footage.time_indices()[k])]
        centre = torch.tensor([*captured["centres"][str(scene_frame)], 1.0], dtype=torch.float64)
        p = footage.viewmats[k].double() @ centre
        uv = (footage.Ks[k].double() @ (p[:3] / p[2])).numpy()[:2]
        errors.append(float(np.linalg.norm(uv - centroid)))
    # A sphere's silhouette centroid sits within a fraction of a pixel of its projected
    # centre at this focal length; a wrong axis convention would put it pixels away.
    assert max(errors) < 0.6, errors
    # The object moves: its mask in one camera shifts between the first and last time.
    first, last = footage.images[0, ..., 3], footage.images[len(footage) - 6, ..., 3]
    assert float((first - last).abs().mean()) > 0.01


def test_capture_restores_the_scene(captured):
    assert captured["after"] == captured["before"]


def test_capture_operator_and_its_errors(captured):
    assert captured["op_result"] == ["FINISHED"] and captured["op_frames"] == 2 * 5
    assert "no geometry" in captured["empty_error"]
    assert "gen4d_capture_camera" not in " ".join(captured["objects_after_failure"])
    assert "no such file" in captured["orbital_error"]


def test_orbital_operator_offers_what_the_backend_accepts(captured):
    """The From Orbital Video operator's defaults are protocol.config.OrbitConfig's, and its
    limits stay inside the bounds the backend checks."""
    from dataclasses import fields

    from protocol.config import OrbitConfig, apply_options

    ui = captured["orbit_ui"]
    assert set(ui) == {f.name for f in fields(OrbitConfig)}
    for f in fields(OrbitConfig):
        assert abs(ui[f.name]["default"] - f.default) < 1e-5, f.name
    for name in ("elevation_deg", "fov_deg", "radius"):
        apply_options(OrbitConfig(), {name: ui[name]["min"]})  # the UI's extremes are accepted
    for name in ("elevation_deg", "fov_deg"):
        apply_options(OrbitConfig(), {name: ui[name]["max"]})
