"""protocol.formats.time_grid: frame i of T at i / (T − 1)."""

import numpy as np
import pytest

from protocol.formats import frame_time, frame_times


def test_grid_spans_zero_to_one():
    assert frame_times(5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert frame_times(2) == [0.0, 1.0]
    times = frame_times(24)
    assert times[0] == 0.0 and times[-1] == 1.0 and len(times) == 24
    assert times == [i / 23 for i in range(24)]


def test_single_frame_is_at_zero():
    assert frame_times(1) == [0.0]
    assert frame_time(0, 1) == 0.0


def test_numpy_integer_counts_work():
    assert frame_times(np.int64(3)) == [0.0, 0.5, 1.0]


@pytest.mark.parametrize("bad", [0, -1])
def test_fewer_than_one_frame_is_a_value_error(bad):
    with pytest.raises(ValueError, match="at least 1"):
        frame_times(bad)


@pytest.mark.parametrize("bad", [2.0, "3", True, None])
def test_non_integer_count_is_a_type_error(bad):
    with pytest.raises(TypeError, match="integer"):
        frame_times(bad)


def test_frame_time_matches_the_grid_and_checks_its_index():
    assert [frame_time(i, 7) for i in range(7)] == frame_times(7)
    with pytest.raises(ValueError, match="outside"):
        frame_time(7, 7)
    with pytest.raises(ValueError, match="outside"):
        frame_time(-1, 7)


def test_float32_rounding_matches_float32_division():
    """What the backend's float32 tensors held before: i / (T − 1) divided in float32."""
    for count in (2, 3, 7, 24, 97, 1000):
        expected = np.arange(count, dtype=np.float32) / np.float32(count - 1)
        np.testing.assert_array_equal(np.asarray(frame_times(count), np.float32), expected)
