"""Ingest of transforms-format footage: shapes, values, resizing, and every bad input
raising ``BadInputError`` with a message that names the problem."""

import json
import math
import shutil

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from backend.cameras import c2w_blender_to_viewmat, intrinsics_from_fov
from backend.errors import BadInputError, JobError
from backend.pipeline.ingest import load_camera_rig, load_footage
from tests.helpers.footage import make_tiny_footage


@pytest.fixture(scope="module")
def footage_dir(tmp_path_factory):
    return make_tiny_footage(tmp_path_factory.mktemp("footage") / "f", n_cams=4, n_times=3, size=32)


@pytest.fixture
def bad_dir(tmp_path, footage_dir):
    """A private copy of the tiny footage to break."""
    return shutil.copytree(footage_dir, tmp_path / "copy")


def edit_json(folder, fn, split="train"):
    path = folder / f"transforms_{split}.json"
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_load_footage_shapes_dtypes_and_values(footage_dir):
    fo = load_footage(footage_dir)
    assert len(fo) == 12 and fo.images.shape == (12, 32, 32, 4)
    assert fo.width == 32 and fo.height == 32
    for t in (fo.images, fo.c2w, fo.viewmats, fo.Ks, fo.times):
        assert t.dtype == torch.float32
    assert fo.c2w.shape == (12, 4, 4) and fo.viewmats.shape == (12, 4, 4) and fo.Ks.shape == (12, 3, 3)
    assert fo.images.min() >= 0 and fo.images.max() <= 1
    torch.testing.assert_close(fo.unique_times(), torch.tensor([0.0, 0.5, 1.0]))
    # Frame order follows the JSON: camera-major, times 0, 0.5, 1 per camera.
    torch.testing.assert_close(fo.times, torch.tensor([0.0, 0.5, 1.0] * 4))
    meta = json.loads((footage_dir / "transforms_train.json").read_text())
    assert fo.file_paths == [f["file_path"] for f in meta["frames"]]
    # Pixels equal the PNG bytes / 255, alpha included (a disc, 0 outside).
    png = iio.imread(footage_dir / "train" / "r_001_002.png")
    np.testing.assert_allclose(fo.images[5].numpy(), png.astype(np.float32) / 255, atol=1e-7)
    alpha = fo.images[..., 3]
    assert set(torch.unique(alpha).tolist()) == {0.0, 1.0}
    assert 0.1 < alpha.mean().item() < 0.5
    # Cameras: c2w as in the file, viewmats converted, Ks from camera_angle_x.
    np.testing.assert_allclose(fo.c2w[5].numpy(), np.array(meta["frames"][5]["transform_matrix"]), atol=1e-6)
    torch.testing.assert_close(fo.viewmats[5], c2w_blender_to_viewmat(np.array(meta["frames"][5]["transform_matrix"])))
    torch.testing.assert_close(fo.Ks[0], intrinsics_from_fov(meta["camera_angle_x"], 32, 32))
    # Test split: one camera at every time.
    test = load_footage(footage_dir, "test")
    assert len(test) == 3


def test_rgb_image_gets_alpha_one(bad_dir):
    path = bad_dir / "train" / "r_000_000.png"
    rgba = iio.imread(path)
    iio.imwrite(path, rgba[..., :3])
    fo = load_footage(bad_dir)
    assert torch.equal(fo.images[0, ..., 3], torch.ones(32, 32))
    np.testing.assert_allclose(fo.images[0, ..., :3].numpy(), rgba[..., :3] / 255.0, atol=1e-7)


def test_max_size_resizes_and_scales_intrinsics(footage_dir):
    full = load_footage(footage_dir)
    small = load_footage(footage_dir, max_size=16)
    assert small.images.shape == (12, 16, 16, 4)
    torch.testing.assert_close(small.Ks[:, :2], full.Ks[:, :2] * 0.5)
    torch.testing.assert_close(small.Ks[:, 2], full.Ks[:, 2])
    # The principal point stays at the image centre.
    assert small.Ks[0, 0, 2].item() == pytest.approx(8.0) and small.Ks[0, 1, 2].item() == pytest.approx(8.0)
    # Alpha is the 2x2 area average.
    a_full = full.images[..., 3]
    a_ref = a_full.reshape(12, 16, 2, 16, 2).mean((2, 4))
    torch.testing.assert_close(small.images[..., 3], a_ref)
    # Premultiplied resize: an edge block keeps the object colour, not black.
    rgb_ref = (full.images[..., :3] * full.images[..., 3:]).reshape(12, 16, 2, 16, 2, 3).sum((2, 4))
    expect = rgb_ref / (a_ref * 4).clamp_min(1e-6)[..., None]
    m = a_ref > 0
    torch.testing.assert_close(small.images[..., :3][m], expect[m], atol=1e-5, rtol=1e-5)
    # max_size at or above the size changes nothing.
    same = load_footage(footage_dir, max_size=32)
    assert torch.equal(same.images, full.images) and torch.equal(same.Ks, full.Ks)


def test_per_frame_nerfstudio_intrinsics_are_used(bad_dir):
    edit_json(bad_dir, lambda d: d["frames"][0].update({"fl_x": 40.0, "fl_y": 42.0, "cx": 15.0, "cy": 17.0}))
    fo = load_footage(bad_dir)
    torch.testing.assert_close(fo.Ks[0], torch.tensor([[40.0, 0.0, 15.0], [0.0, 42.0, 17.0], [0.0, 0.0, 1.0]]))
    assert fo.Ks[1, 0, 0].item() == pytest.approx(16 / math.tan(math.radians(20.0)), rel=1e-5)


def _raises(folder, *fragments, split="train"):
    with pytest.raises(BadInputError) as exc:
        load_footage(folder, split)
    msg = str(exc.value.message)
    assert exc.value.code == "bad_input"
    for frag in fragments:
        assert frag.lower() in msg.lower(), f"{frag!r} not in {msg!r}"
    return msg


def test_missing_transforms_file(bad_dir):
    (bad_dir / "transforms_train.json").unlink()
    _raises(bad_dir, "transforms_train.json", "missing")


def test_invalid_json(bad_dir):
    (bad_dir / "transforms_train.json").write_text('{"frames": [ {"file_path": ')
    _raises(bad_dir, "transforms_train.json", "not valid JSON")


def test_binary_garbage_json(bad_dir):
    (bad_dir / "transforms_train.json").write_bytes(b"\xff\xfe\x00garbage")
    _raises(bad_dir, "transforms_train.json")


@pytest.mark.parametrize("payload", [{"camera_angle_x": 0.7, "frames": []}, {"camera_angle_x": 0.7}, [1, 2]])
def test_empty_or_missing_frames(bad_dir, payload):
    (bad_dir / "transforms_train.json").write_text(json.dumps(payload))
    _raises(bad_dir, "frames")


def test_missing_file_path_key(bad_dir):
    edit_json(bad_dir, lambda d: d["frames"][2].pop("file_path"))
    _raises(bad_dir, "frame 2", "file_path")


def test_missing_transform_matrix_key(bad_dir):
    edit_json(bad_dir, lambda d: d["frames"][1].pop("transform_matrix"))
    _raises(bad_dir, "frame 1", "transform_matrix")


def test_3x3_matrix(bad_dir):
    edit_json(bad_dir, lambda d: d["frames"][3].update(transform_matrix=np.eye(3).tolist()))
    _raises(bad_dir, "frame 3", "4x4", "(3, 3)")


def test_nan_matrix(bad_dir):
    def f(d):
        d["frames"][0]["transform_matrix"][1][2] = float("nan")
    edit_json(bad_dir, f)  # json.dumps writes NaN, json.loads reads it back
    _raises(bad_dir, "frame 0", "finite")


def test_non_numeric_matrix(bad_dir):
    def f(d):
        d["frames"][0]["transform_matrix"][1][2] = "x"
    edit_json(bad_dir, f)
    _raises(bad_dir, "frame 0", "numeric")


def test_singular_matrix(bad_dir):
    edit_json(bad_dir, lambda d: d["frames"][0].update(transform_matrix=np.zeros((4, 4)).tolist()))
    _raises(bad_dir, "frame 0", "singular")


@pytest.mark.parametrize("t", [1.5, -0.1, "0.5", True])
def test_time_out_of_range_or_not_a_number(bad_dir, t):
    edit_json(bad_dir, lambda d: d["frames"][4].update(time=t))
    _raises(bad_dir, "frame 4", "time", "[0, 1]")


def test_bad_camera_angle(bad_dir):
    edit_json(bad_dir, lambda d: d.update(camera_angle_x=40.0))  # degrees, not radians
    _raises(bad_dir, "camera_angle_x", "radians")


def test_missing_image(bad_dir):
    (bad_dir / "train" / "r_001_001.png").unlink()
    _raises(bad_dir, "r_001_001", "not found")


def test_text_file_renamed_png(bad_dir):
    (bad_dir / "train" / "r_000_001.png").write_text("this is not a picture\n")
    _raises(bad_dir, "r_000_001.png", "not a readable image")


def test_mismatched_image_sizes(bad_dir):
    path = bad_dir / "train" / "r_002_000.png"
    iio.imwrite(path, np.zeros((20, 24, 4), np.uint8))
    msg = _raises(bad_dir, "frame 6", "24x20", "32x32")
    assert "differs" in msg


@pytest.mark.parametrize("fp", ["/etc/passwd", "../outside/r_000_000", "./train/../../x"])
def test_absolute_or_parent_file_path(bad_dir, fp):
    edit_json(bad_dir, lambda d: d["frames"][0].update(file_path=fp))
    _raises(bad_dir, "must be relative")


def test_file_path_with_extension_is_accepted(bad_dir):
    edit_json(bad_dir, lambda d: d["frames"][0].update(file_path="train/r_000_000.png"))
    assert len(load_footage(bad_dir)) == 12


def test_bad_input_error_is_a_job_error():
    err = BadInputError("x")
    assert isinstance(err, JobError) and err.code == "bad_input" and err.message == "x"


def test_load_camera_rig_with_images(footage_dir):
    rig = load_camera_rig(footage_dir / "transforms_test.json")
    assert (rig.width, rig.height) == (32, 32)
    fo = load_footage(footage_dir, "test")
    torch.testing.assert_close(rig.viewmats, fo.viewmats)
    torch.testing.assert_close(rig.Ks, fo.Ks)
    torch.testing.assert_close(rig.times, fo.times)
    assert rig.file_paths == fo.file_paths


def test_load_camera_rig_without_images(bad_dir):
    shutil.rmtree(bad_dir / "test")
    with pytest.raises(BadInputError, match="no image size"):
        load_camera_rig(bad_dir / "transforms_test.json")
    rig = load_camera_rig(bad_dir / "transforms_test.json", size=(64, 48))
    assert (rig.width, rig.height) == (64, 48)
    assert rig.Ks[0, 0, 2].item() == pytest.approx(32.0) and rig.Ks[0, 1, 2].item() == pytest.approx(24.0)
    assert rig.Ks[0, 0, 0].item() == pytest.approx(32 / math.tan(math.radians(20.0)), rel=1e-5)
    assert rig.viewmats.shape == (3, 4, 4) and len(rig.file_paths) == 3
    # Or from w/h keys in the frames.
    edit_json(bad_dir, lambda d: [f.update(w=40, h=30) for f in d["frames"]], split="test")
    rig = load_camera_rig(bad_dir / "transforms_test.json")
    assert (rig.width, rig.height) == (40, 30)


def test_load_camera_rig_validates_frames(bad_dir):
    edit_json(bad_dir, lambda d: d["frames"][0].update(time=2.0), split="test")
    with pytest.raises(BadInputError, match="time"):
        load_camera_rig(bad_dir / "transforms_test.json")
