"""The clip time grid every gen4d component shares.

A clip of ``T`` frames covers the normalized time interval [0, 1]: frame ``i`` sits at
``t_i = i / (T − 1)``, so the first frame is at 0 and the last at 1; a single frame sits
at 0. Footage ``time`` values, result ``manifest.json`` ``times``, captured footage and
the backend's exported frames all use this grid.
"""

from __future__ import annotations

import operator

__all__ = ["frame_times", "frame_time"]


def _whole(value, what: str) -> int:
    """``value`` as an int (bools refused), else a clear TypeError naming ``what``."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {value!r}") from None


def _count(frame_count) -> int:
    """``frame_count`` as an int ≥ 1, else a clear TypeError / ValueError."""
    count = _whole(frame_count, "frame count")
    if count < 1:
        raise ValueError(f"frame count must be at least 1, got {count}")
    return count


def frame_time(index: int, frame_count: int) -> float:
    """Normalized time of frame ``index`` of ``frame_count``: ``index / (T − 1)``; 0.0 when T = 1.

    Args:
        index: frame index, ``0 <= index < frame_count``.
        frame_count: number of frames T ≥ 1.

    Returns:
        The time as a Python float (float64) in [0, 1].

    Raises:
        TypeError: a non-integer index or count.
        ValueError: ``frame_count < 1`` or ``index`` outside ``[0, T)``.
    """
    count = _count(frame_count)
    i = _whole(index, "frame index")
    if not 0 <= i < count:
        raise ValueError(f"frame index {i} is outside [0, {count})")
    return i / (count - 1) if count > 1 else 0.0


def frame_times(frame_count: int) -> list[float]:
    """Normalized times of a clip's frames: frame ``i`` at ``i / (T − 1)``; ``[0.0]`` for T = 1.

    Args:
        frame_count: number of frames T ≥ 1 (any integer type, not bool).

    Returns:
        ``T`` Python floats (float64), increasing from 0.0 to 1.0. Convert with
        ``np.asarray(times, np.float32)`` or ``torch.tensor(times, dtype=torch.float32)``:
        both round each value to the same float32 as computing ``i / (T − 1)`` in float32.

    Raises:
        TypeError: a non-integer count.
        ValueError: ``frame_count < 1``.
    """
    count = _count(frame_count)
    if count == 1:
        return [0.0]
    return [i / (count - 1) for i in range(count)]
