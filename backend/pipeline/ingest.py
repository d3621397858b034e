"""Ingest stage: read multi-view footage in the NeRF-synthetic / D-NeRF transforms format.

A folder holds ``transforms_train.json`` (and optionally ``transforms_test.json``) with
``camera_angle_x`` (radians) and ``frames[]`` of ``file_path`` (relative, with or without
extension), ``transform_matrix`` (Blender c2w 4x4) and ``time`` in [0, 1]. Optional
per-frame intrinsics use the nerfstudio keys ``fl_x fl_y cx cy w h``. Every malformed
input raises :class:`~backend.errors.BadInputError` naming the file and the problem.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F

from backend.cameras import c2w_blender_to_viewmat, intrinsics_from_frame
from backend.errors import BadInputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".exr", ".webp")


@dataclass
class Footage:
    """Calibrated, timed images of one split.

    Attributes:
        images: ``[F, H, W, 4]`` float32 RGBA in [0, 1], straight alpha, sRGB-encoded.
            Images without alpha get alpha 1.
        c2w: ``[F, 4, 4]`` float32 camera-to-world, Blender convention.
        viewmats: ``[F, 4, 4]`` float32 world-to-camera, OpenCV convention.
        Ks: ``[F, 3, 3]`` float32 intrinsics for the stored (possibly resized) images.
        times: ``[F]`` float32 normalized times in [0, 1].
        file_paths: the frames' ``file_path`` strings as written in the JSON.
    """

    images: torch.Tensor
    c2w: torch.Tensor
    viewmats: torch.Tensor
    Ks: torch.Tensor
    times: torch.Tensor
    file_paths: list[str]

    @property
    def height(self) -> int:
        return self.images.shape[1]

    @property
    def width(self) -> int:
        return self.images.shape[2]

    def __len__(self) -> int:
        return self.images.shape[0]

    def unique_times(self) -> torch.Tensor:
        """Sorted distinct frame times ``[T]``."""
        return torch.unique(self.times)

    def time_indices(self) -> torch.Tensor:
        """``[F]`` int64 index of each frame's time in :meth:`unique_times`."""
        return torch.searchsorted(self.unique_times(), self.times)

    def select(self, keep: torch.Tensor) -> "Footage":
        """A new Footage with the frames where ``keep`` (``[F]`` bool, or int indices) holds.

        Raises:
            ValueError: when nothing is selected.
        """
        idx = torch.nonzero(keep).flatten() if keep.dtype == torch.bool else keep.to(torch.int64)
        if len(idx) == 0:
            raise ValueError("frame selection is empty")
        return Footage(images=self.images[idx], c2w=self.c2w[idx], viewmats=self.viewmats[idx], Ks=self.Ks[idx],
                       times=self.times[idx], file_paths=[self.file_paths[i] for i in idx.tolist()])


def resolve_image_path(folder: Path, file_path: str) -> Path:
    """Find the image a ``file_path`` names: as written, or with a known extension added.

    Raises:
        BadInputError: when the path escapes the folder or no such file exists.
    """
    rel = Path(file_path)
    if rel.is_absolute() or ".." in rel.parts:
        raise BadInputError(f"file_path {file_path!r} must be relative to the footage folder, without '..'")
    base = folder / rel
    candidates = [base] if base.suffix.lower() in IMAGE_EXTENSIONS else []
    candidates += [base.with_name(base.name + ext) for ext in IMAGE_EXTENSIONS]
    for cand in candidates:
        if cand.is_file():
            return cand
    raise BadInputError(f"image {file_path!r} named in the transforms file was not found in the footage")


def read_image_rgba(path: Path) -> np.ndarray:
    """Read an image as float32 RGBA ``[H, W, 4]`` in [0, 1] (alpha 1 when absent).

    Raises:
        BadInputError: when the file cannot be decoded as an image.
    """
    try:
        img = np.asarray(iio.imread(path))
    except Exception as exc:  # imageio raises many types for undecodable data
        raise BadInputError(f"{path.name} is not a readable image ({type(exc).__name__}: {exc})") from exc
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise BadInputError(f"{path.name}: unsupported image shape {img.shape}")
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    elif img.dtype == np.uint16:
        img = img.astype(np.float32) / 65535.0
    else:
        img = img.astype(np.float32)
    if img.shape[2] == 3:
        img = np.concatenate([img, np.ones_like(img[..., :1])], axis=2)
    return np.clip(img, 0.0, 1.0)


def _load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BadInputError(f"{path.name} is missing from the footage folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path.name} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list) or not data["frames"]:
        raise BadInputError(f"{path.name} must be an object with a non-empty 'frames' list")
    return data


def _parse_frames(data: dict, json_name: str) -> list[tuple[dict, np.ndarray, float]]:
    """Validate every frame of a transforms dict: ``(frame, c2w [4,4] float64, time)``.

    Raises:
        BadInputError: a frame without ``file_path``/``transform_matrix``, a matrix that is
            not a finite, non-singular 4x4, or a ``time`` outside [0, 1].
    """
    out = []
    for i, frame in enumerate(data["frames"]):
        where = f"{json_name} frame {i}"
        if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
            raise BadInputError(f"{where}: needs 'file_path' and 'transform_matrix'")
        try:
            c2w = np.asarray(frame["transform_matrix"], dtype=np.float64)
        except (TypeError, ValueError):
            raise BadInputError(f"{where}: transform_matrix is not numeric") from None
        if c2w.shape != (4, 4) or not np.all(np.isfinite(c2w)):
            raise BadInputError(f"{where}: transform_matrix must be a finite 4x4 matrix, got shape {c2w.shape}")
        if abs(np.linalg.det(c2w[:3, :3])) < 1e-6:
            raise BadInputError(f"{where}: transform_matrix rotation is singular")
        t = frame.get("time", 0.0)
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= float(t) <= 1.0:
            raise BadInputError(f"{where}: time must be a number in [0, 1], got {t!r}")
        out.append((frame, c2w, float(t)))
    return out


def _camera_angle_x(data: dict, json_name: str) -> float | None:
    angle_x = data.get("camera_angle_x")
    if angle_x is not None and not (isinstance(angle_x, (int, float)) and 0 < angle_x < math.pi):
        raise BadInputError(f"{json_name}: camera_angle_x must be radians in (0, pi), got {angle_x!r}")
    return angle_x


def _intrinsics(frame: dict, angle_x: float | None, w: int, h: int, where: str) -> torch.Tensor:
    try:
        return intrinsics_from_frame(frame, angle_x, w, h)
    except ValueError as exc:
        raise BadInputError(f"{where}: {exc}") from None


def load_footage(folder: str | Path, split: str = "train", max_size: int | None = None) -> Footage:
    """Load one split (``transforms_<split>.json``) of a footage folder.

    Args:
        folder: the footage folder.
        split: ``"train"`` or ``"test"`` (any name with a matching JSON file).
        max_size: if given, images larger than this on their long side are downsampled
            (area filter) and intrinsics scaled to match.

    Returns:
        A :class:`Footage`.

    Raises:
        BadInputError: missing/invalid JSON, a frame without a 4x4 ``transform_matrix``,
            a ``time`` outside [0, 1], a missing or undecodable image, or images of
            different sizes.
    """
    folder = Path(folder)
    json_path = folder / f"transforms_{split}.json"
    data = _load_json(json_path)
    angle_x = _camera_angle_x(data, json_path.name)
    images, c2ws, Ks, times, paths = [], [], [], [], []
    size = None
    for i, (frame, c2w, t) in enumerate(_parse_frames(data, json_path.name)):
        where = f"{json_path.name} frame {i}"
        img = read_image_rgba(resolve_image_path(folder, str(frame["file_path"])))
        if size is None:
            size = img.shape[:2]
        elif img.shape[:2] != size:
            raise BadInputError(f"{where}: image size {img.shape[1]}x{img.shape[0]} differs from the first "
                                f"image's {size[1]}x{size[0]}")
        images.append(img)
        c2ws.append(c2w)
        Ks.append(_intrinsics(frame, angle_x, img.shape[1], img.shape[0], where))
        times.append(t)
        paths.append(str(frame["file_path"]))
    images_t = torch.from_numpy(np.stack(images))
    Ks_t = torch.stack(Ks)
    if max_size is not None and max(images_t.shape[1:3]) > max_size:
        images_t, Ks_t = resize_footage_images(images_t, Ks_t, max_size)
    c2w_t = torch.from_numpy(np.stack(c2ws)).to(torch.float32)
    return Footage(images=images_t, c2w=c2w_t, viewmats=c2w_blender_to_viewmat(np.stack(c2ws)), Ks=Ks_t,
                   times=torch.tensor(times, dtype=torch.float32), file_paths=paths)


@dataclass
class CameraRig:
    """Cameras and times of a transforms file, without images (for rendering).

    Attributes:
        viewmats: ``[F,4,4]`` OpenCV w2c; Ks ``[F,3,3]``; times ``[F]`` in [0,1];
        file_paths: per frame; width, height: image size in pixels.
    """

    viewmats: torch.Tensor
    Ks: torch.Tensor
    times: torch.Tensor
    file_paths: list[str]
    width: int
    height: int


def load_camera_rig(json_path: str | Path, size: tuple[int, int] | None = None) -> CameraRig:
    """Read cameras and times from a transforms file.

    The image size comes from ``size`` (width, height), else the frames' ``w``/``h``
    keys, else the first image the file names, if present.

    Raises:
        BadInputError: malformed JSON or frames, or no way to know the image size.
    """
    json_path = Path(json_path)
    data = _load_json(json_path)
    angle_x = _camera_angle_x(data, json_path.name)
    frames = _parse_frames(data, json_path.name)
    if size is None:
        first = frames[0][0]
        if "w" in first and "h" in first:
            size = (int(first["w"]), int(first["h"]))
        else:
            try:
                img = read_image_rgba(resolve_image_path(json_path.parent, str(first["file_path"])))
            except BadInputError:
                raise BadInputError(f"{json_path.name}: no image size (no w/h keys and the first image is "
                                    "missing); pass the size explicitly") from None
            size = (img.shape[1], img.shape[0])
    w, h = size
    Ks = torch.stack([_intrinsics(f, angle_x, w, h, f"{json_path.name} frame {i}")
                      for i, (f, _, _) in enumerate(frames)])
    return CameraRig(viewmats=c2w_blender_to_viewmat(np.stack([c for _, c, _ in frames])), Ks=Ks,
                     times=torch.tensor([t for _, _, t in frames], dtype=torch.float32),
                     file_paths=[str(f["file_path"]) for f, _, _ in frames], width=w, height=h)


def resize_footage_images(images: torch.Tensor, Ks: torch.Tensor, max_size: int):
    """Downsample ``[F,H,W,4]`` images so the long side is ``max_size`` and scale ``Ks``.

    Colour is resized premultiplied by alpha (so edges do not pick up background colour),
    then un-premultiplied.
    """
    F_, H, W, _ = images.shape
    scale = max_size / max(H, W)
    nh, nw = max(1, round(H * scale)), max(1, round(W * scale))
    rgb, a = images[..., :3], images[..., 3:]
    x = torch.cat([rgb * a, a], dim=-1).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(nh, nw), mode="area").permute(0, 2, 3, 1)
    a2 = x[..., 3:]
    rgb2 = torch.where(a2 > 1e-6, x[..., :3] / a2.clamp_min(1e-6), torch.zeros_like(x[..., :3]))
    Ks = Ks.clone()
    Ks[:, 0, :] *= nw / W
    Ks[:, 1, :] *= nh / H
    return torch.cat([rgb2.clamp(0, 1), a2], dim=-1), Ks
