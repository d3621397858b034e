"""Small synthetic videos written with PyAV: a coloured disc moving over a plain grey
background, with or without an alpha channel."""

import math

import av
import numpy as np

W, H, N, FPS, R = 96, 64, 24, 24, 9


def disc_frames(with_alpha: bool):
    """``N`` RGBA uint8 frames ``[H, W, 4]`` of a radius-``R`` orange disc moving right
    over grey, and the disc centres (px); alpha is the disc when ``with_alpha``, else 255."""
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    frames, centres = [], []
    for i in range(N):
        cx, cy = 30 + 36 * i / (N - 1), 32 + 6 * math.sin(2 * math.pi * i / N)
        inside = (xs - cx) ** 2 + (ys - cy) ** 2 <= R ** 2
        img = np.zeros((H, W, 4), np.uint8)
        img[..., :3] = (90, 90, 90)
        img[inside, :3] = (230, 60, 20)
        img[..., 3] = np.where(inside, 255, 0) if with_alpha else 255
        frames.append(img)
        centres.append((cx, cy))
    return frames, centres


def write_video(path, frames, codec, pix_fmt, fmt):
    """Encode ``frames`` (uint8 arrays in ``fmt``, e.g. ``"rgb24"``) with PyAV at ``FPS``."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=FPS)
        s.width, s.height, s.pix_fmt = W, H, pix_fmt
        for f in frames:
            for packet in s.encode(av.VideoFrame.from_ndarray(f, format=fmt)):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path
