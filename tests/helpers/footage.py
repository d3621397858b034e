"""Tiny synthetic transforms-format footage for protocol and server tests (not for quality)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import imageio.v3 as iio
import numpy as np

from backend.cameras import look_at_c2w
from protocol.formats import frame_times, transforms_file_name, write_transforms


def _render_ball(c2w: np.ndarray, center: np.ndarray, radius: float, size: int, fov_x: float,
                 color) -> np.ndarray:
    """Draw a flat-shaded disc where a ball projects; returns RGBA uint8 [size, size, 4]."""
    w2c = np.linalg.inv(c2w)
    pc = w2c[:3, :3] @ center + w2c[:3, 3]          # OpenGL camera coords, visible at z < 0
    depth = -pc[2]
    focal = 0.5 * size / math.tan(0.5 * fov_x)
    cx = size / 2 + focal * pc[0] / depth
    cy = size / 2 - focal * pc[1] / depth
    rad = focal * radius / depth
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    d2 = ((xs - cx) ** 2 + (ys - cy) ** 2) / max(rad, 1e-6) ** 2
    inside = d2 <= 1.0
    shade = np.clip(1.0 - 0.5 * d2, 0.0, 1.0)
    img = np.zeros((size, size, 4), dtype=np.float64)
    img[..., :3] = np.asarray(color, dtype=np.float64) * shade[..., None]
    img[..., 3] = inside
    img[..., :3] *= inside[..., None]
    return (img * 255 + 0.5).astype(np.uint8)


def make_tiny_footage(folder, n_cams: int = 4, n_times: int = 3, size: int = 32, seed: int = 0,
                      image_ext: str | Sequence[str] = ".png", name_ext: bool = False) -> Path:
    """Write a valid transforms-format footage folder of a moving coloured ball.

    Cameras sit on a circle of radius 3 (elevation about 20 degrees, Z up) looking at the
    origin. ``transforms_train.json`` has ``n_cams * n_times`` frames named
    ``./train/r_<cam>_<time>`` (the images are ``train/r_CCC_TTT<image_ext>``) with
    ``time`` on the grid ``i / (T - 1)``; ``transforms_test.json`` has one extra camera at
    every time.

    Args:
        folder: output folder (created).
        n_cams: training cameras.
        n_times: time steps.
        size: image width and height in pixels.
        seed: random seed for the ball's colour and camera phase.
        image_ext: image format by extension: ``".png"`` (RGBA), ``".webp"`` (RGBA) or
            ``".jpg"`` / ``".jpeg"`` (RGB on black, no alpha, so no object mask); a
            sequence gives camera ``c`` of each split ``image_ext[c % len(image_ext)]``.
        name_ext: write ``file_path`` with the extension (``./train/r_000_000.jpg``)
            instead of without.

    Returns:
        ``Path(folder)``.
    """
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    (folder / "train").mkdir(parents=True, exist_ok=True)
    (folder / "test").mkdir(parents=True, exist_ok=True)
    fov_x = math.radians(40.0)
    exts = [image_ext] if isinstance(image_ext, str) else list(image_ext)
    color = rng.uniform(0.3, 1.0, size=3)
    phase = rng.uniform(0, 2 * math.pi)
    elev = math.radians(20.0)

    def cam(angle: float) -> np.ndarray:
        pos = 3.0 * np.array([math.cos(elev) * math.cos(angle), math.cos(elev) * math.sin(angle), math.sin(elev)])
        return look_at_c2w(pos)

    def write(split: str, angles: list[float]) -> None:
        frames = []
        for ci, angle in enumerate(angles):
            c2w = cam(angle)
            for ti, t in enumerate(frame_times(n_times)):
                center = np.array([0.4 * t - 0.2, 0.0, 0.1 * math.sin(math.pi * t)])
                rel = f"{split}/r_{ci:03d}_{ti:03d}"
                rgba = _render_ball(c2w, center, 0.5, size, fov_x, color)
                ext = exts[ci % len(exts)]
                if ext in (".jpg", ".jpeg"):
                    iio.imwrite(folder / f"{rel}{ext}", np.ascontiguousarray(rgba[..., :3]), quality=95)
                else:
                    iio.imwrite(folder / f"{rel}{ext}", rgba)
                frames.append({"file_path": f"./{rel}{ext if name_ext else ''}", "transform_matrix": c2w,
                               "time": t})
        write_transforms(folder / transforms_file_name(split), frames, camera_angle_x=fov_x)

    write("train", [phase + 2 * math.pi * i / n_cams for i in range(n_cams)])
    write("test", [phase + math.pi / n_cams])
    return folder
