"""Monocular video ingest for ``video`` jobs: decode with PyAV, sample frames, find the
object's mask, crop to the object and resize for the multi-view model.

Mask sources, in order (the job reports which one it used):

1. ``"alpha"``: the video's own alpha channel (e.g. ProRes 4444, VP9/WebM with alpha,
   PNG/QuickTime RGBA), when some pixel is not opaque;
2. ``"background_removal"``: the optional ``background_removal`` model
   (:mod:`backend.models.background_removal`, CLIPSeg) when it is installed;
3. ``"opencv_background"``: a weight-free fallback for static, plain backgrounds: the
   background colour is the median of the frame borders over the clip, a pixel is
   foreground when its colour is farther than a threshold from it; morphology cleans
   the mask and the largest connected component is kept (OpenCV).

Every frame gets the same square crop (the union of the masks' bounding boxes plus a
margin), so motion inside the crop is preserved and the camera stays fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from backend.errors import BadInputError
from protocol.formats.time_grid import frame_times
from protocol.limits import IMAGE_PIXELS, VIDEO_FRAMES

#: colour distance (0..1 RGB, Euclidean) above which a pixel differs from the background.
BACKGROUND_THRESHOLD = 0.12


@dataclass
class VideoFrames:
    """Sampled, masked, cropped frames of a monocular video.

    Attributes:
        images: ``[T, S, S, 4]`` float32 RGBA in [0, 1], straight alpha, sRGB.
        times: ``[T]`` float32 normalized clip times in [0, 1] (frame i at i / (T − 1)).
        source_times_s: ``[T]`` float64 presentation times of the chosen frames (s).
        fps: the sampling rate the frames represent (frames per second).
        mask_source: ``"alpha"``, ``"background_removal"`` or ``"opencv_background"``.
        crop_box: ``(x0, y0, size)`` of the square crop in source pixels.
        source_size: ``(width, height)`` of the decoded video frames in pixels.
    """

    images: np.ndarray
    times: np.ndarray
    source_times_s: np.ndarray
    fps: float
    mask_source: str
    crop_box: tuple[int, int, int]
    source_size: tuple[int, int] = (0, 0)


def decode_video(path, fps: float | None = None, max_frames: int = 32,
                 check_cancelled: Callable[[], None] | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Decode a video and sample frames.

    Args:
        path: video file (anything FFmpeg/PyAV reads).
        fps: sampling rate; frames nearest to ``0, 1/fps, 2/fps, …`` are taken. None:
            the video's own frames.
        max_frames: at most this many frames (evenly thinned when there are more).
        check_cancelled: called every 64 decoded frames; whatever it raises stops decoding.

    The video is decoded twice: once for every frame's time, once to convert only the frames
    chosen, so memory holds ``max_frames`` frames, not the whole video.

    Returns:
        ``(frames [T, H, W, 4] uint8 RGBA, times_s [T] float64, has_alpha)``; without an
        alpha channel A is 255.

    Raises:
        BadInputError: missing, unreadable, corrupt or empty video, a bad ``fps``, frames
            over :data:`protocol.limits.IMAGE_PIXELS` pixels or more than
            :data:`protocol.limits.VIDEO_FRAMES` frames.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"video file not found: {path}")
    if fps is not None and not fps > 0:
        raise BadInputError(f"fps must be > 0, got {fps}")
    stamps, has_alpha = [], False
    try:  # pass 1: every frame's time (decoded, not converted: no frame is kept)
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise BadInputError(f"{path.name} has no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if width * height > IMAGE_PIXELS:
                raise BadInputError(f"{path.name} is {width}x{height} ({width * height:,} pixels a frame); at most "
                                    f"{IMAGE_PIXELS:,} (4096x4096)")
            has_alpha = "a" in (stream.codec_context.pix_fmt or "").replace("gray", "")
            for i, frame in enumerate(container.decode(stream)):
                if i >= VIDEO_FRAMES:
                    raise BadInputError(f"{path.name} has more than {VIDEO_FRAMES:,} frames; trim it")
                if check_cancelled is not None and i % 64 == 0:
                    check_cancelled()
                stamps.append(float(frame.time) if frame.time is not None else i / float(stream.average_rate or 24))
    except BadInputError:
        raise
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise BadInputError(f"cannot decode video {path.name}: {exc}") from None
    if not stamps:
        raise BadInputError(f"{path.name} contains no decodable frames")
    stamps = np.asarray(stamps, np.float64)
    idx = np.arange(len(stamps))
    if fps is not None:
        targets = stamps[0] + np.arange(0.0, stamps[-1] - stamps[0] + 1e-9, 1.0 / fps)
        idx = np.unique(np.abs(stamps[None, :] - targets[:, None]).argmin(1))
    if len(idx) > max_frames:
        idx = idx[np.round(np.linspace(0, len(idx) - 1, max_frames)).astype(int)]
    wanted, frames = set(idx.tolist()), {}
    try:  # pass 2: convert only the chosen frames
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(container.streams.video[0])):
                if i in wanted:
                    frames[i] = frame.to_ndarray(format="rgba")
                if len(frames) == len(wanted):
                    break
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise BadInputError(f"cannot decode video {path.name}: {exc}") from None
    if len(frames) != len(wanted):
        raise BadInputError(f"{path.name}: {len(wanted) - len(frames)} frame(s) could not be decoded again")
    return np.stack([frames[i] for i in idx]), stamps[idx], has_alpha


def plain_background_distance(rgb: np.ndarray) -> np.ndarray:
    """Colour distance of every pixel from a plain background, whose colour is the median
    of the frames' borders (all frames together).

    Args:
        rgb: ``[T, H, W, 3]`` float in [0, 1].

    Returns:
        ``[T, H, W]`` float32 Euclidean RGB distance.
    """
    border = np.concatenate([rgb[:, 0].reshape(-1, 3), rgb[:, -1].reshape(-1, 3), rgb[:, :, 0].reshape(-1, 3),
                             rgb[:, :, -1].reshape(-1, 3)])
    background = np.median(border, axis=0).astype(np.float32)
    return np.linalg.norm(rgb.astype(np.float32) - background, axis=-1)


def background_masks(rgb: np.ndarray, threshold: float = BACKGROUND_THRESHOLD) -> np.ndarray:
    """Foreground masks of frames over a static plain background (OpenCV, no weights).

    Args:
        rgb: ``[T, H, W, 3]`` uint8.
        threshold: colour distance in [0, 1] RGB units.

    Returns:
        ``[T, H, W]`` float32 in {0, 1}.

    Raises:
        BadInputError: when no object separates from the background, or the "object"
            fills nearly the whole frame (the background is not plain).
    """
    import cv2

    T, H, W, _ = rgb.shape
    dist = plain_background_distance(rgb.astype(np.float32) / 255.0)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    masks = np.zeros((T, H, W), np.float32)
    for t in range(T):
        m = (dist[t] > threshold).astype(np.uint8)
        m = cv2.morphologyEx(cv2.morphologyEx(m, cv2.MORPH_OPEN, kernel), cv2.MORPH_CLOSE, kernel)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        if n > 1:
            keep = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
            m = (labels == keep).astype(np.uint8)
        masks[t] = m
    coverage = masks.mean(axis=(1, 2))
    if coverage.min() < 0.002 or coverage.max() > 0.9:
        raise BadInputError("cannot separate the object from the background: use a video with an alpha "
                            "channel or a plain static background (object coverage per frame "
                            f"{coverage.min():.1%}..{coverage.max():.1%})")
    return masks


def square_crop_box(masks: np.ndarray, margin: float = 0.1) -> tuple[int, int, int]:
    """``(x0, y0, size)``: a square around the union of the masks' bounding boxes, grown
    by ``margin`` of its side; it may extend past the frame (padded on crop)."""
    ys, xs = np.nonzero(masks.max(axis=0) > 0.5)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    side = int(np.ceil(max(x1 - x0, y1 - y0) * (1 + 2 * margin)))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return int(round(cx - side / 2)), int(round(cy - side / 2)), side


def crop_resize(rgba: np.ndarray, box: tuple[int, int, int], size: int) -> np.ndarray:
    """Crop ``[T, H, W, 4]`` float32 to ``box`` (transparent padding outside the frame) and
    resize to ``[T, size, size, 4]`` (area interpolation, premultiplied so that edges do
    not pick up the background colour)."""
    import cv2

    x0, y0, side = box
    T, H, W, _ = rgba.shape
    out = np.zeros((T, side, side, 4), np.float32)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, W), min(y0 + side, H)
    out[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgba[:, sy0:sy1, sx0:sx1]
    pre = out.copy()
    pre[..., :3] *= pre[..., 3:]
    res = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in pre])
    a = res[..., 3:]
    res[..., :3] = np.where(a > 1e-6, res[..., :3] / np.maximum(a, 1e-6), 0.0)
    return np.clip(res, 0.0, 1.0)


def load_video(path, size: int = 320, fps: float | None = None, max_frames: int = 32,
               margin: float = 0.1, remover=None, mask_prompt: str | None = None,
               check_cancelled: Callable[[], None] | None = None) -> VideoFrames:
    """Decode, sample, mask, crop and resize a monocular video (see the module docstring).

    Args:
        path: video file.
        size: output side in pixels (the multi-view model's input, 320 for Zero123++).
        fps: sampling rate (None: every frame), then at most ``max_frames``.
        margin: crop margin as a fraction of the object's extent.
        remover: a loaded background-removal model (``masks(rgb, prompt)``), used when the
            video has no alpha; None: the OpenCV fallback.
        mask_prompt: text query for the remover (None: its default).
        check_cancelled: passed to :func:`decode_video`.

    Returns:
        :class:`VideoFrames`.

    Raises:
        BadInputError: unreadable video, fewer than 2 frames, or no separable object.
    """
    frames, stamps, has_alpha = decode_video(path, fps, max_frames, check_cancelled)
    if len(frames) < 2:
        raise BadInputError(f"{Path(path).name}: need at least 2 frames, got {len(frames)}")
    alpha = frames[..., 3].astype(np.float32) / 255.0
    if has_alpha and alpha.min() < 0.99:
        masks, source = alpha, "alpha"
    elif remover is not None:
        masks, source = remover.masks(np.ascontiguousarray(frames[..., :3]), mask_prompt), "background_removal"
    else:
        masks, source = background_masks(frames[..., :3]), "opencv_background"
    if not (masks > 0.5).any():
        raise BadInputError(f"{Path(path).name}: no object found ({source} masks are empty)")
    rgba = np.concatenate([frames[..., :3].astype(np.float32) / 255.0, masks[..., None]], axis=-1)
    box = square_crop_box(masks, margin)
    images = crop_resize(rgba, box, size)
    T = len(images)
    span = stamps[-1] - stamps[0]
    eff_fps = fps if fps is not None else ((T - 1) / span if span > 0 else 24.0)
    return VideoFrames(images=images, times=np.asarray(frame_times(T), np.float32), source_times_s=stamps,
                       fps=float(eff_fps), mask_source=source, crop_box=box,
                       source_size=(int(frames.shape[2]), int(frames.shape[1])))
