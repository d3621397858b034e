"""Tests for samples.make_scene: tiny Cycles renders in a subprocess (keeps this
process's bpy untouched), checked for format, camera conventions, motion and caching."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from samples.make_scene import camera_positions, look_at_c2w  # noqa: E402

import importlib.util  # noqa: E402

if importlib.util.find_spec("bpy") is None:  # rendering runs in a subprocess; don't import bpy here
    pytest.skip("bpy is not installed", allow_module_level=True)
iio = pytest.importorskip("imageio.v3")

SIZE, N_TRAIN, N_TEST, N_TIMES, SAMPLES = 32, 3, 1, 3, 4


def _run_cli(scene: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "samples.make_scene", "--scene", scene, "--out", str(out),
           "--size", str(SIZE), "--train-cams", str(N_TRAIN), "--test-cams", str(N_TEST),
           "--times", str(N_TIMES), "--samples", str(SAMPLES), *extra]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def wobble(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wobble")
    _run_cli("wobble", out)
    return out


def _load(out: Path, split: str) -> dict:
    return json.loads((out / f"transforms_{split}.json").read_text())


def _image(out: Path, file_path: str) -> np.ndarray:
    return iio.imread(out / (file_path + ".png"))


@pytest.mark.parametrize("split,n_cams", [("train", N_TRAIN), ("test", N_TEST)])
def test_transforms_format_and_cameras(wobble, split, n_cams):
    doc = _load(wobble, split)
    assert 0.1 < doc["camera_angle_x"] < 3.0
    assert doc["w"] == doc["h"] == SIZE
    frames = doc["frames"]
    assert len(frames) == n_cams * N_TIMES
    pairs = {(f["camera_index"], f["time_index"]) for f in frames}
    assert pairs == {(c, t) for c in range(n_cams) for t in range(N_TIMES)}
    for f in frames:
        assert f["file_path"].startswith(f"./{split}/r_") and not f["file_path"].endswith(".png")
        assert f["time"] == pytest.approx(f["time_index"] / (N_TIMES - 1), abs=1e-12)
        m = np.asarray(f["transform_matrix"], dtype=np.float64)
        assert m.shape == (4, 4)
        np.testing.assert_allclose(m[3], [0, 0, 0, 1], atol=1e-7)
        rot = m[:3, :3]
        np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-5)
        assert np.linalg.det(rot) == pytest.approx(1.0, abs=1e-5)
        # The camera looks down its -Z axis, at the scene centre (the world origin).
        view = -rot[:, 2]
        to_centre = -m[:3, 3] / np.linalg.norm(m[:3, 3])
        angle = np.degrees(np.arccos(np.clip(view @ to_centre, -1, 1)))
        assert angle < 2.0
        assert rot[:, 0][2] == pytest.approx(0.0, abs=1e-5)  # no roll: x axis horizontal
        assert rot[:, 1][2] > 0  # image up points upward in the world


def test_same_camera_pose_at_every_time(wobble):
    frames = _load(wobble, "train")["frames"]
    by_cam: dict[int, list] = {}
    for f in frames:
        by_cam.setdefault(f["camera_index"], []).append(np.asarray(f["transform_matrix"]))
    for mats in by_cam.values():
        for m in mats[1:]:
            np.testing.assert_array_equal(m, mats[0])


def test_images_rgba_with_background_and_object(wobble):
    for split in ("train", "test"):
        for f in _load(wobble, split)["frames"]:
            im = _image(wobble, f["file_path"])
            assert im.shape == (SIZE, SIZE, 4) and im.dtype == np.uint8
            a = im[..., 3]
            assert (a == 0).any() and (a == 255).any()
            # The object never touches the image border.
            assert a[0].max() == a[-1].max() == a[:, 0].max() == a[:, -1].max() == 0
    assert (wobble / "preview_grid.png").is_file()


def test_wobble_moves_between_first_and_last_time(wobble):
    frames = _load(wobble, "train")["frames"]
    for cam in range(N_TRAIN):
        first = next(f for f in frames if f["camera_index"] == cam and f["time_index"] == 0)
        last = next(f for f in frames
                    if f["camera_index"] == cam and f["time_index"] == N_TIMES - 1)
        a = _image(wobble, first["file_path"]).astype(np.float32) / 255.0
        b = _image(wobble, last["file_path"]).astype(np.float32) / 255.0
        obj = (a[..., 3] > 0.5) | (b[..., 3] > 0.5)
        on_white = lambda im: im[..., :3] * im[..., 3:] + 1.0 - im[..., 3:]  # noqa: E731
        diff = np.abs(on_white(a) - on_white(b)).mean(-1)[obj]
        assert diff.mean() > 0.05, (cam, diff.mean())


def test_second_run_is_cached_and_force_is_deterministic(wobble):
    stamp = json.loads((wobble / "sample.json").read_text())
    assert stamp["params"]["scene"] == "wobble" and stamp["params"]["size"] == SIZE
    png = wobble / "train" / "r_001_002.png"
    before, mtime = png.read_bytes(), png.stat().st_mtime_ns
    res = _run_cli("wobble", wobble)
    assert "cached" in res.stderr
    assert png.stat().st_mtime_ns == mtime
    res = _run_cli("wobble", wobble, "--force")
    assert "cached" not in res.stderr
    assert png.read_bytes() == before  # same bytes when re-rendered on the same machine


@pytest.mark.parametrize("scene", ["rigid", "articulated"])
def test_other_scenes_render_and_move(tmp_path, scene):
    _run_cli(scene, tmp_path)
    frames = _load(tmp_path, "train")["frames"]
    f0 = next(f for f in frames if f["camera_index"] == 0 and f["time_index"] == 0)
    f1 = next(f for f in frames if f["camera_index"] == 0 and f["time_index"] == N_TIMES - 1)
    a, b = _image(tmp_path, f0["file_path"]), _image(tmp_path, f1["file_path"])
    for im in (a, b):
        assert (im[..., 3] == 0).any() and (im[..., 3] == 255).any()
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 2.0


def test_camera_layout_pure_python():
    train, test = camera_positions(14, 2, 2.0)
    assert train.shape == (14, 3) and test.shape == (2, 3)
    np.testing.assert_allclose(np.linalg.norm(train, axis=1), 2.0)
    el = np.degrees(np.arcsin(train[:, 2] / 2.0))
    assert el.min() >= -15.0 and el.max() <= 60.0 and el.max() - el.min() > 50.0
    # Test views are held out: not on top of any training view.
    u, v = train / 2.0, test / 2.0
    assert np.degrees(np.arccos(np.clip(v @ u.T, -1, 1))).min() > 10.0
    m = look_at_c2w(train[0])
    np.testing.assert_allclose(-m[:3, 2], -train[0] / 2.0, atol=1e-12)
    with pytest.raises(ValueError):
        look_at_c2w([0.0, 0.0, 1.0])  # looking straight down along the up vector
