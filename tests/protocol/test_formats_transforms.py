"""protocol.formats.transforms: transforms_*.json round trip, validation, image resolution."""

import json
import math

import numpy as np
import pytest

from protocol.formats import (TRANSFORMS_TRAIN, TransformsError, parse_transforms, read_transforms,
                              resolve_image_path, transforms_file_name, write_transforms)


def _c2w(x=0.0):
    m = np.eye(4)
    m[:3, 3] = [x, -3.0, 0.5]
    return m


def _frames(n=3):
    return [{"file_path": f"./train/r_{i:03d}", "transform_matrix": _c2w(i), "time": i / (n - 1),
             "camera_index": i} for i in range(n)]


def test_write_read_round_trip(tmp_path):
    path = write_transforms(tmp_path / TRANSFORMS_TRAIN, _frames(), camera_angle_x=0.7,
                            intrinsics={"w": 32, "h": 32}, extra={"gen4d": {"source": "test"}})
    doc = json.loads(path.read_text())
    assert list(doc) == ["camera_angle_x", "w", "h", "frames", "gen4d"]
    assert list(doc["frames"][0]) == ["file_path", "transform_matrix", "time", "camera_index"]
    assert doc["frames"][1]["transform_matrix"] == _c2w(1).tolist()
    assert path.read_text() == json.dumps(doc, indent=1)
    t = read_transforms(path)
    assert t.camera_angle_x == 0.7 and t.times == [0.0, 0.5, 1.0]
    assert [f.file_path for f in t.frames] == ["./train/r_000", "./train/r_001", "./train/r_002"]
    np.testing.assert_array_equal(t.frames[2].c2w, _c2w(2))
    assert t.frames[2].c2w.dtype == np.float64 and t.frames[0].fields["camera_index"] == 0
    assert t.document["gen4d"] == {"source": "test"}


def test_numpy_values_and_per_frame_intrinsics(tmp_path):
    frames = [{"file_path": "a.png", "transform_matrix": _c2w().astype(np.float32), "time": np.float32(0.25),
               "fl_x": 20.0, "fl_y": 20.0, "cx": 8.0, "cy": 8.0, "w": 16, "h": 16}]
    path = write_transforms(tmp_path / "t.json", frames)  # no camera_angle_x: per-frame fl_x
    doc = json.loads(path.read_text())
    assert "camera_angle_x" not in doc and doc["frames"][0]["time"] == 0.25
    assert read_transforms(path).frames[0].fields["fl_x"] == 20.0


@pytest.mark.parametrize("change,fragment", [
    (lambda d: d.update(frames=[]), "non-empty 'frames' list"),
    (lambda d: d.pop("frames"), "non-empty 'frames' list"),
    (lambda d: d.update(camera_angle_x=40.0), "camera_angle_x must be radians in (0, pi)"),
    (lambda d: d["frames"][1].pop("file_path"), "frame 1: needs 'file_path' and 'transform_matrix'"),
    (lambda d: d["frames"][1].update(file_path=3), "frame 1: file_path must be a non-empty string"),
    (lambda d: d["frames"][2].pop("transform_matrix"), "frame 2: needs"),
    (lambda d: d["frames"][0].update(transform_matrix=np.eye(3).tolist()), "finite 4x4 matrix, got shape (3, 3)"),
    (lambda d: d["frames"][0].update(transform_matrix=[[1, 2], [3]]), "not numeric"),
    (lambda d: d["frames"][0].update(transform_matrix=np.zeros((4, 4)).tolist()), "singular"),
    (lambda d: d["frames"][0].update(time=1.5), "time must be a number in [0, 1], got 1.5"),
    (lambda d: d["frames"][0].update(time="0.5"), "time must be a number in [0, 1]"),
    (lambda d: d["frames"][0].update(time=True), "time must be a number in [0, 1]"),
    (lambda d: d["frames"][0].update(fl_x=-3.0), "fl_x must be a positive number"),
    (lambda d: d["frames"][0].update(cx=float("nan")), "cx must be a finite number"),
    (lambda d: d.pop("camera_angle_x"), "frame 0: frame has no fl_x/fl_y and the file has no camera_angle_x"),
])
def test_validation_messages_name_file_and_frame(change, fragment):
    doc = {"camera_angle_x": 0.7, "frames": [dict(f, transform_matrix=f["transform_matrix"].tolist())
                                             for f in _frames()]}
    change(doc)
    with pytest.raises(TransformsError) as exc:
        parse_transforms(doc, "transforms_train.json")
    assert fragment in str(exc.value) and "transforms_train.json" in str(exc.value)


def test_writer_refuses_what_the_reader_would_reject(tmp_path):
    frames = _frames()
    frames[1]["time"] = 2.0
    with pytest.raises(TransformsError, match="frame 1: time"):
        write_transforms(tmp_path / "t.json", frames, camera_angle_x=0.7)
    with pytest.raises(TransformsError, match="given twice"):
        write_transforms(tmp_path / "t.json", _frames(), camera_angle_x=0.7, extra={"frames": []})
    with pytest.raises(TransformsError, match="unknown intrinsics key"):
        write_transforms(tmp_path / "t.json", _frames(), camera_angle_x=0.7, intrinsics={"focal": 3})
    with pytest.raises(TransformsError, match="frame 0: needs"):
        write_transforms(tmp_path / "t.json", [{"file_path": "a"}], camera_angle_x=0.7)
    assert not (tmp_path / "t.json").exists()


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="transforms_train.json is missing from the footage folder"):
        read_transforms(tmp_path / TRANSFORMS_TRAIN)
    (tmp_path / TRANSFORMS_TRAIN).write_text('{"frames": [')
    with pytest.raises(TransformsError, match="transforms_train.json is not valid JSON"):
        read_transforms(tmp_path / TRANSFORMS_TRAIN)
    (tmp_path / TRANSFORMS_TRAIN).write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TransformsError, match="transforms_train.json"):
        read_transforms(tmp_path / TRANSFORMS_TRAIN)


def test_file_names():
    assert transforms_file_name("train") == TRANSFORMS_TRAIN == "transforms_train.json"
    assert transforms_file_name("test") == "transforms_test.json"
    for bad in ("", "../x", "a/b"):
        with pytest.raises(ValueError):
            transforms_file_name(bad)


def test_resolve_image_path_tries_every_image_extension(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.jpg").write_bytes(b"j")
    (tmp_path / "train" / "b.png").write_bytes(b"p")
    (tmp_path / "train" / "b.webp").write_bytes(b"w")
    (tmp_path / "train" / "c.JPEG").write_bytes(b"J")
    assert resolve_image_path(tmp_path, "./train/a") == tmp_path / "train" / "a.jpg"
    assert resolve_image_path(tmp_path, "train/a.jpg") == tmp_path / "train" / "a.jpg"
    assert resolve_image_path(tmp_path, "./train/b") == tmp_path / "train" / "b.png"  # .png first
    assert resolve_image_path(tmp_path, "train/c.JPEG") == tmp_path / "train" / "c.JPEG"
    with pytest.raises(FileNotFoundError, match="'./train/missing' named in the transforms file was not found"):
        resolve_image_path(tmp_path, "./train/missing")


@pytest.mark.parametrize("fp", ["/etc/passwd", "../outside/r", "./train/../../x", "C:/x"])
def test_resolve_image_path_rejects_paths_leaving_the_folder(tmp_path, fp):
    with pytest.raises(TransformsError, match="must be relative to the footage folder"):
        resolve_image_path(tmp_path, fp)


def test_camera_angle_x_is_validated_on_write(tmp_path):
    with pytest.raises(TransformsError, match="camera_angle_x"):
        write_transforms(tmp_path / "t.json", _frames(), camera_angle_x=math.pi)
