"""Render a result folder at the cameras and times of a transforms file (``backend render``).

Output PNGs are RGBA with straight alpha, named by each frame's ``file_path`` (``.png``
added when it has no extension), so anyone can score a result against their own ground
truth with the same names. The rendering itself is :mod:`backend.render.frames`.
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np

from backend.errors import BadInputError
from backend.pipeline.export import load_model
from backend.pipeline.ingest import load_camera_rig
from backend.render.frames import premultiplied_to_straight, render_rgba

__all__ = ["output_name", "premultiplied_to_straight", "render_result_at_cameras", "render_rgba"]


def output_name(file_path: str) -> Path:
    """Relative output path for a frame's ``file_path`` (``.png`` appended if needed).

    Raises:
        BadInputError: for absolute paths or ``..``.
    """
    rel = Path(file_path)
    if rel.is_absolute() or ".." in rel.parts:
        raise BadInputError(f"file_path {file_path!r} must be relative, without '..'")
    return rel if rel.suffix.lower() == ".png" else rel.with_name(rel.name + ".png")


def render_result_at_cameras(result_dir: Path, cameras_json: Path, out_dir: Path,
                             size: tuple[int, int] | None = None) -> list[Path]:
    """Render every frame of ``cameras_json`` from the result's 4D model.

    Args:
        result_dir: result folder with ``model.pt``.
        cameras_json: transforms file (cameras, ``time`` per frame).
        out_dir: output root; files are written at ``out_dir / file_path``.
        size: optional (width, height); default from the file (see ``load_camera_rig``).

    Returns:
        Paths written, in frame order.

    Raises:
        FileNotFoundError: no model in ``result_dir``.
        BadInputError: malformed cameras file.
    """
    model = load_model(result_dir)
    rig = load_camera_rig(cameras_json, size)
    images = render_rgba(model, rig.viewmats, rig.Ks, rig.times, rig.width, rig.height)
    written = []
    for img, fp in zip(images, rig.file_paths):
        path = Path(out_dir) / output_name(fp)
        path.parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(path, (img.numpy() * 255).round().astype(np.uint8))
        written.append(path)
    return written
