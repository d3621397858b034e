"""Orbital-video ingest for ``orbital`` jobs (Diffusion4D's input): one video in which the
camera circles the object while it moves, so frame k has its own camera *and* its own time.

Diffusion4D generates such videos (24 frames, 15° apart, elevation 0) and fits explicit 4D
Gaussians to them; gen4d takes the same kind of clip from the artist (a turntable render,
a drone orbit, a generated orbit) with the orbit described in ``spec["orbit"]``
(:class:`protocol.config.OrbitConfig`):

- frame k, decoded at source time ``s_k``, sits at azimuth
  ``start_azimuth_deg + sweep_deg · (s_k − s_0) / (s_last − s_0)`` and elevation
  ``elevation_deg``, ``radius`` metres from the orbit centre (the world origin), looking at
  it, world +Z up (Blender convention, :func:`backend.cameras.look_at_c2w`);
- its clip time is ``(s_k − s_0) / (s_last − s_0)`` (the same normalization as every other
  job: first frame 0, last frame 1);
- the video camera's horizontal field of view is ``fov_deg``; after the object crop of
  :func:`backend.pipeline.video_ingest.load_video` the intrinsics are cropped and scaled
  with the images (per-frame ``fl_x fl_y cx cy w h``).

The radius only sets the scene's scale (an orbit does not reveal it). The footage is
written in the transforms format, so reconstruction reads it like any multi-view footage.
"""

from __future__ import annotations

import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from backend.cameras import look_at_c2w
from backend.errors import BadInputError
from backend.pipeline.video_ingest import VideoFrames
from protocol.config import OrbitConfig, apply_options
from protocol.errors import InvalidOptionError
from protocol.formats.transforms import TRANSFORMS_TRAIN, frame_record, write_transforms


#: The orbit's settings: :class:`protocol.config.OrbitConfig` (the job spec's ``"orbit"``).
OrbitSettings = OrbitConfig


def orbit_settings(orbit: dict | None) -> OrbitConfig:
    """Settings from ``spec["orbit"]`` (None: the defaults).

    Raises:
        BadInputError: an unknown key, a non-numeric value, a field of view outside
            (1°, 170°), a non-positive radius or an elevation at ±89° or beyond.
    """
    try:
        return apply_options(OrbitConfig(), orbit)
    except InvalidOptionError as exc:
        raise BadInputError(f"orbit: {exc.message}") from None


def orbit_cameras(source_times_s: np.ndarray, orbit: OrbitSettings) -> tuple[np.ndarray, np.ndarray]:
    """Camera-to-world matrices and clip times of an orbital video's frames.

    Args:
        source_times_s: ``[T]`` presentation times of the sampled frames (s), increasing.
        orbit: the orbit.

    Returns:
        ``(c2w [T, 4, 4] float64 Blender convention, times [T] float32 in [0, 1])``.

    Raises:
        BadInputError: fewer than 2 frames, or the frames span no time.
    """
    stamps = np.asarray(source_times_s, np.float64)
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        raise BadInputError("an orbital video needs at least 2 frames at different times")
    fraction = (stamps - stamps[0]) / (stamps[-1] - stamps[0])
    az = np.radians(orbit.start_azimuth_deg + orbit.sweep_deg * fraction)
    el = math.radians(orbit.elevation_deg)
    eyes = orbit.radius * np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az),
                                    np.full_like(az, math.sin(el))], -1)
    return np.stack([look_at_c2w(eye) for eye in eyes]), fraction.astype(np.float32)


def cropped_intrinsics(frames: VideoFrames, fov_deg: float) -> dict:
    """nerfstudio intrinsics (``fl_x fl_y cx cy w h``, pixels) of the cropped, resized frames.

    The source camera is a pinhole with horizontal FOV ``fov_deg``, square pixels and the
    principal point at the frame centre; the crop ``(x0, y0, side)`` shifts the principal
    point and the resize to ``S`` pixels scales everything by ``S / side``.
    """
    width, height = frames.source_size
    if width <= 0 or height <= 0:
        raise BadInputError("the video frames have no size")
    x0, y0, side = frames.crop_box
    size = frames.images.shape[2]
    focal = 0.5 * width / math.tan(math.radians(fov_deg) / 2.0)
    scale = size / side
    return {"fl_x": focal * scale, "fl_y": focal * scale, "cx": (0.5 * width - x0) * scale,
            "cy": (0.5 * height - y0) * scale, "w": size, "h": size}


def write_orbital_footage(frames: VideoFrames, orbit: OrbitSettings, out_dir: Path) -> Path:
    """Write an ingested orbital video as transforms-format footage (see the module docstring).

    Args:
        frames: the decoded, masked, cropped video (:func:`~backend.pipeline.video_ingest.load_video`).
        orbit: the orbit the video's camera follows.
        out_dir: folder for ``transforms_train.json`` and ``train/o_<k>.png`` (created).

    Returns:
        ``out_dir``.

    Raises:
        BadInputError: see :func:`orbit_cameras` and :func:`cropped_intrinsics`.
    """
    out_dir = Path(out_dir)
    (out_dir / "train").mkdir(parents=True, exist_ok=True)
    c2w, times = orbit_cameras(frames.source_times_s, orbit)
    intr = cropped_intrinsics(frames, orbit.fov_deg)
    records = []
    for k, (image, cam, t) in enumerate(zip(frames.images, c2w, times)):
        iio.imwrite(out_dir / "train" / f"o_{k:03d}.png", (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8))
        records.append(frame_record(f"./train/o_{k:03d}", cam, t, **intr))
    write_transforms(out_dir / TRANSFORMS_TRAIN, records,
                     extra={"gen4d": {"source": "orbital_video", "mask_source": frames.mask_source,
                                      "orbit": orbit.__dict__, "crop_box": list(frames.crop_box)}})
    return out_dir
