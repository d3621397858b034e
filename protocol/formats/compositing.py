"""Compositing straight-alpha RGBA over a background, for numpy arrays and torch tensors alike."""

from __future__ import annotations

import numpy as np

__all__ = ["composite_over"]


def composite_over(rgba, background):
    """Composite straight (non-premultiplied) alpha RGBA over a background colour.

    ``rgb · a + (1 − a) · background``, computed in the input's own array type and dtype
    (numpy or torch: only indexing, ``*``, ``+`` and ``-`` are used, so gradients flow).

    Args:
        rgba: ``[..., 4]`` float colour and alpha, alpha in [0, 1] (e.g. ``[H, W, 4]`` or
            ``[B, H, W, 4]``). Colour units are free (0–1 or 0–255) as long as
            ``background`` uses the same ones.
        background: a scalar (``1.0``: white in 0–1 units), a ``[3]`` colour, or ``[B, 3]``
            colours, one per image of a ``[B, ..., 4]`` batch. Python sequences are turned
            into the type of ``rgba``.

    Returns:
        ``[..., 3]`` composited colour, same type as ``rgba``.

    Raises:
        ValueError: ``rgba`` whose last axis is not 4, or a background of another shape.
    """
    shape = tuple(getattr(rgba, "shape", ()))
    if not shape or shape[-1] != 4:
        raise ValueError(f"rgba must have 4 channels in its last axis, got shape {shape}")
    bg = background
    if isinstance(bg, (list, tuple)):
        bg = rgba.new_tensor(bg) if hasattr(rgba, "new_tensor") else np.asarray(bg, dtype=rgba.dtype)
    bg_shape = tuple(getattr(bg, "shape", ()))
    if len(bg_shape) == 2:
        if bg_shape[1] != 3 or len(shape) < 2 or bg_shape[0] != shape[0]:
            raise ValueError(f"a [B, 3] background needs rgba [B, ..., 4] with the same B; got background "
                             f"{bg_shape} for rgba {shape}")
        bg = bg.reshape((bg_shape[0],) + (1,) * (len(shape) - 2) + (3,))
    elif len(bg_shape) == 1 and bg_shape[0] not in (1, 3):
        raise ValueError(f"background must be a scalar, [3] or [B, 3], got shape {bg_shape}")
    elif len(bg_shape) > 2:
        raise ValueError(f"background must be a scalar, [3] or [B, 3], got shape {bg_shape}")
    alpha = rgba[..., 3:]
    return rgba[..., :3] * alpha + (1.0 - alpha) * bg
