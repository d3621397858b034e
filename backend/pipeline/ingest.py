"""Ingest stage: read multi-view footage in the NeRF-synthetic / D-NeRF transforms format.

The format (``transforms_train.json`` and optionally ``transforms_test.json`` with
``camera_angle_x``, ``frames[]`` of ``file_path``, ``transform_matrix`` = Blender c2w 4x4,
``time`` in [0, 1], optional nerfstudio intrinsics ``fl_x fl_y cx cy w h``) and its
validation live in :mod:`protocol.formats.transforms`; the images may be any of
:data:`protocol.formats.IMAGE_EXTENSIONS`. Every malformed input raises
:class:`~backend.errors.BadInputError` naming the file and the problem.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F

from backend.cameras import c2w_blender_to_viewmat, intrinsics_from_frame
from backend.errors import BadInputError
from protocol.formats import transforms as _transforms
from protocol.limits import FOOTAGE_FRAMES, IMAGE_PIXELS


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
    """Find the image a ``file_path`` names (:func:`protocol.formats.resolve_image_path`:
    as written, or with a known image extension added).

    Raises:
        BadInputError: when the path escapes the folder or no such file exists.
    """
    try:
        return _transforms.resolve_image_path(folder, file_path)
    except (_transforms.TransformsError, FileNotFoundError) as exc:
        raise BadInputError(str(exc)) from None


def check_image_pixels(source: Path | bytes, name: str | None = None) -> None:
    """Refuse an image with more than :data:`protocol.limits.IMAGE_PIXELS` pixels, reading only
    its header (Pillow opens lazily), so a decompression bomb is never decoded. Every image
    ingest path calls it (footage frames here, uploaded images in
    :func:`backend.pipeline.generate_video.load_image_rgba`).

    Args:
        source: an image file, or its bytes (an upload).
        name: the name errors use (default: the file's name).

    Raises:
        BadInputError: the image is too large (its size and the limit named).
    """
    from PIL import Image

    name = name or Path(source).name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as im:
                w, h = im.size
    except Image.DecompressionBombError:
        raise BadInputError(f"{name} is larger than Pillow's decompression-bomb limit; at most "
                            f"{IMAGE_PIXELS:,} pixels (4096x4096) per image") from None
    except Exception:  # noqa: BLE001 - not a format Pillow knows: imageio decides when decoding
        return
    if w * h > IMAGE_PIXELS:
        raise BadInputError(f"{name} is {w}x{h} ({w * h:,} pixels); at most {IMAGE_PIXELS:,} pixels "
                            f"(4096x4096) per image")


def read_image_rgba(path: Path) -> np.ndarray:
    """Read an image as float32 RGBA ``[H, W, 4]`` in [0, 1] (alpha 1 when absent).

    Raises:
        BadInputError: when the file cannot be decoded as an image, or it has more than
            :data:`protocol.limits.IMAGE_PIXELS` pixels (checked before decoding).
    """
    check_image_pixels(path)
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


def _read_transforms(path: Path) -> _transforms.Transforms:
    """Read and validate a transforms file (:func:`protocol.formats.read_transforms`).

    Raises:
        BadInputError: missing or invalid JSON, a frame without ``file_path`` /
            ``transform_matrix``, a matrix that is not a finite, non-singular 4x4, a
            ``time`` outside [0, 1], bad intrinsics or a bad ``camera_angle_x``.
    """
    try:
        doc = _transforms.read_transforms(path)
    except (_transforms.TransformsError, FileNotFoundError) as exc:
        raise BadInputError(str(exc)) from None
    if len(doc.frames) > FOOTAGE_FRAMES:
        raise BadInputError(f"{path.name} lists {len(doc.frames):,} frames; at most {FOOTAGE_FRAMES:,}")
    return doc


def _intrinsics(frame: dict, angle_x: float | None, w: int, h: int, where: str) -> torch.Tensor:
    try:
        return intrinsics_from_frame(frame, angle_x, w, h)
    except ValueError as exc:
        raise BadInputError(f"{where}: {exc}") from None


def load_footage(folder: str | Path, split: str = "train", max_size: int | None = None,
                 check_cancelled: Callable[[], None] | None = None) -> Footage:
    """Load one split (``transforms_<split>.json``) of a footage folder.

    Args:
        folder: the footage folder.
        split: ``"train"`` or ``"test"`` (any name with a matching JSON file).
        max_size: if given, images larger than this on their long side are downsampled
            (area filter) and intrinsics scaled to match.
        check_cancelled: called before each image is read (e.g.
            :meth:`backend.pipeline.context.JobContext.check_cancelled`); whatever it
            raises stops the load.

    Returns:
        A :class:`Footage`.

    Raises:
        BadInputError: missing/invalid JSON, a frame without a 4x4 ``transform_matrix``,
            a ``time`` outside [0, 1], a missing or undecodable image, images of
            different sizes, more than :data:`protocol.limits.FOOTAGE_FRAMES` frames or
            an image over :data:`protocol.limits.IMAGE_PIXELS` pixels.
    """
    folder = Path(folder)
    json_path = folder / _transforms.transforms_file_name(split)
    doc = _read_transforms(json_path)
    images, c2ws, Ks, times, paths = [], [], [], [], []
    size = None
    for i, frame in enumerate(doc.frames):
        if check_cancelled is not None:
            check_cancelled()
        where = f"{json_path.name} frame {i}"
        img = read_image_rgba(resolve_image_path(folder, frame.file_path))
        if size is None:
            size = img.shape[:2]
        elif img.shape[:2] != size:
            raise BadInputError(f"{where}: image size {img.shape[1]}x{img.shape[0]} differs from the first "
                                f"image's {size[1]}x{size[0]}")
        K = _intrinsics(frame.fields, doc.camera_angle_x, img.shape[1], img.shape[0], where)
        img_t = torch.from_numpy(img)
        if max_size is not None and max(img.shape[:2]) > max_size:  # one at a time: memory ~ the small size
            small, K_small = resize_footage_images(img_t[None], K[None], max_size)
            img_t, K = small[0], K_small[0]
        images.append(img_t)
        c2ws.append(frame.c2w)
        Ks.append(K)
        times.append(frame.time)
        paths.append(frame.file_path)
    images_t = torch.stack(images)
    Ks_t = torch.stack(Ks)
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
    doc = _read_transforms(json_path)
    frames = doc.frames
    if size is None:
        first = frames[0].fields
        if "w" in first and "h" in first:
            size = (int(first["w"]), int(first["h"]))
        else:
            try:
                img = read_image_rgba(resolve_image_path(json_path.parent, frames[0].file_path))
            except BadInputError:
                raise BadInputError(f"{json_path.name}: no image size (no w/h keys and the first image is "
                                    "missing); pass the size explicitly") from None
            size = (img.shape[1], img.shape[0])
    w, h = size
    Ks = torch.stack([_intrinsics(f.fields, doc.camera_angle_x, w, h, f"{json_path.name} frame {i}")
                      for i, f in enumerate(frames)])
    return CameraRig(viewmats=c2w_blender_to_viewmat(np.stack([f.c2w for f in frames])), Ks=Ks,
                     times=torch.tensor([f.time for f in frames], dtype=torch.float32),
                     file_paths=[f.file_path for f in frames], width=w, height=h)


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
