"""The ``orbital`` job's ingest: an orbiting video becomes one camera per frame, at one time
per frame, with intrinsics that follow the object crop.

The video is synthetic and exact: a shaded ball whose centre moves along a known path,
drawn where a pinhole camera with a known field of view, on a known orbit, sees it,
written as an RGBA PNG-in-MOV (the alpha channel is the mask). Each ingested frame's
camera must then project the ball's centre at that frame's time onto the centre of its
mask.
"""

import math

import av
import numpy as np
import pytest
import torch

from backend.cameras import look_at_c2w
from backend.errors import BadInputError
from backend.pipeline.context import JobContext
from backend.pipeline.ingest import load_footage
from backend.pipeline.orbital_video import OrbitSettings, orbit_settings, write_orbital_footage
from backend.pipeline.runner import run_job
from backend.pipeline.video_ingest import load_video
from protocol.errors import InvalidOptionError
from protocol.job_spec import validate_job_spec
from tests.helpers.footage import _render_ball

N_FRAMES, SQUARE, PAD, FPS = 24, 64, 16, 24
SQUARE_FOV = math.radians(40.0)
ORBIT = {"sweep_deg": 345.0, "start_azimuth_deg": 30.0, "elevation_deg": 20.0, "radius": 3.0}


def ball_centre(t: float) -> np.ndarray:
    return np.array([0.5 * t - 0.25, 0.25 * math.sin(math.pi * t), 0.1])


def true_fov_deg() -> float:
    """Horizontal FOV of the padded (SQUARE + 2·PAD wide) frame with the square's focal length."""
    focal = 0.5 * SQUARE / math.tan(SQUARE_FOV / 2)
    return math.degrees(2 * math.atan(0.5 * (SQUARE + 2 * PAD) / focal))


@pytest.fixture(scope="module")
def orbital_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("orbital") / "orbit.mov"
    el = math.radians(ORBIT["elevation_deg"])
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SQUARE + 2 * PAD, SQUARE, "rgba"
        for k in range(N_FRAMES):
            t = k / (N_FRAMES - 1)
            az = math.radians(ORBIT["start_azimuth_deg"] + ORBIT["sweep_deg"] * t)
            eye = ORBIT["radius"] * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
            ball = _render_ball(look_at_c2w(eye), ball_centre(t), 0.35, SQUARE, SQUARE_FOV, (0.9, 0.4, 0.2))
            frame = np.zeros((SQUARE, SQUARE + 2 * PAD, 4), np.uint8)
            frame[:, PAD:PAD + SQUARE] = ball
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgba")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def centre_errors(folder) -> tuple[np.ndarray, "object"]:
    """Pixel distance between each frame's mask centroid and the projected ball centre."""
    footage = load_footage(folder, "train")
    errors = []
    for k in range(len(footage)):
        alpha = footage.images[k, ..., 3].numpy()
        ys, xs = np.mgrid[0:alpha.shape[0], 0:alpha.shape[1]] + 0.5
        centroid = np.array([(xs * alpha).sum(), (ys * alpha).sum()]) / alpha.sum()
        p = footage.viewmats[k].double() @ torch.tensor([*ball_centre(float(footage.times[k])), 1.0]).double()
        uv = (footage.Ks[k].double() @ (p[:3] / p[2])).numpy()[:2]
        errors.append(np.linalg.norm(uv - centroid))
    return np.array(errors), footage


def test_each_frame_gets_its_orbit_camera_and_time(orbital_video, tmp_path):
    frames = load_video(orbital_video, size=64, max_frames=48)
    assert frames.mask_source == "alpha" and frames.source_size == (SQUARE + 2 * PAD, SQUARE)
    out = write_orbital_footage(frames, OrbitSettings(fov_deg=true_fov_deg(), **ORBIT), tmp_path / "footage")
    errors, footage = centre_errors(out)

    assert len(footage) == N_FRAMES
    np.testing.assert_allclose(footage.times.numpy(), np.arange(N_FRAMES) / (N_FRAMES - 1), atol=1e-6)
    centres = footage.c2w[:, :3, 3].double()
    np.testing.assert_allclose(centres.norm(dim=-1).numpy(), 3.0, atol=1e-6)
    az = torch.rad2deg(torch.atan2(centres[:, 1], centres[:, 0])).numpy()
    wrapped = (az - 30.0 - np.arange(N_FRAMES) * 15.0 + 180.0) % 360.0 - 180.0  # on the circle
    assert np.abs(wrapped).max() < 1e-4
    # The cropped, resized intrinsics put the moving ball where the camera sees it.
    assert errors.max() < 0.5, errors


def test_a_wrong_field_of_view_misplaces_the_object(orbital_video, tmp_path):
    """The check above is sensitive: 15° too wide a FOV moves projections by pixels."""
    frames = load_video(orbital_video, size=64, max_frames=48)
    out = write_orbital_footage(frames, OrbitSettings(fov_deg=true_fov_deg() + 15.0, **ORBIT), tmp_path / "f")
    errors, _ = centre_errors(out)
    assert errors.max() > 2.0


@pytest.mark.parametrize("orbit, message", [({"fov": 40}, "unknown OrbitConfig option 'fov'"),
                                            ({"fov_deg": 200}, "'fov_deg' must be < 170"),
                                            ({"radius": -1}, "'radius' must be > 0"),
                                            ({"elevation_deg": 89}, "'elevation_deg' must be < 89"),
                                            ({"elevation_deg": "high"}, "must be a finite number")])
def test_bad_orbit_settings_are_clear_errors(orbit, message):
    with pytest.raises(BadInputError, match=message):
        orbit_settings(orbit)
    # The same check refuses such a spec up front (CLI, server submit, add-on).
    with pytest.raises(InvalidOptionError, match=message):
        validate_job_spec({"job_type": "orbital", "video": "a.mp4", "orbit": orbit})


def test_orbital_job_end_to_end(orbital_video, tmp_path):
    spec = {"job_type": "orbital", "video": orbital_video.name, "preset": "tiny",
            "orbit": {**ORBIT, "fov_deg": true_fov_deg()}}
    manifest = run_job(spec, orbital_video.parent, tmp_path / "result", JobContext())
    assert manifest["frame_count"] == N_FRAMES
    written = load_footage(tmp_path / "result" / "generated_footage", "train")
    assert len(written) == N_FRAMES
    with pytest.raises(BadInputError, match="needs spec\\['video'\\]"):
        run_job({"job_type": "orbital", "preset": "tiny"}, orbital_video.parent, tmp_path / "r2", JobContext())
