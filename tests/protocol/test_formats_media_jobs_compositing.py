"""protocol.formats.media, .job_states and .compositing."""

import numpy as np
import pytest
import torch

import protocol
from protocol.formats import IMAGE_EXTENSIONS, JOB_STATES, TERMINAL_STATES, composite_over, is_image_name


def test_image_extensions_are_lower_case_with_dot():
    assert IMAGE_EXTENSIONS[0] == ".png" and {".jpg", ".jpeg", ".exr", ".webp"} <= set(IMAGE_EXTENSIONS)
    assert all(e.startswith(".") and e == e.lower() for e in IMAGE_EXTENSIONS)
    assert is_image_name("train/r_000.JPG") and is_image_name("a.webp")
    assert not is_image_name("train/r_000") and not is_image_name("notes.txt")


def test_job_states_and_terminal_events_agree():
    assert JOB_STATES == ("queued", "running", "completed", "failed", "cancelled")
    assert TERMINAL_STATES == {"completed", "failed", "cancelled"} and TERMINAL_STATES < set(JOB_STATES)
    assert protocol.TERMINAL_EVENTS == TERMINAL_STATES
    assert TERMINAL_STATES < protocol.EVENT_TYPES


def test_composite_over_white_numpy():
    rgba = np.array([[[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0], [0.2, 0.4, 0.6, 0.5]]], np.float32)
    out = composite_over(rgba, 1.0)
    assert out.dtype == np.float32 and out.shape == (1, 3, 3)
    np.testing.assert_allclose(out[0], [[1, 0, 0], [1, 1, 1], [0.6, 0.7, 0.8]], atol=1e-7)


def test_composite_over_colour_and_units():
    rgba = np.array([[10.0, 20.0, 30.0, 0.25]], np.float32)
    np.testing.assert_allclose(composite_over(rgba, 255.0), [[0.25 * 10 + 0.75 * 255, 0.25 * 20 + 0.75 * 255,
                                                              0.25 * 30 + 0.75 * 255]], rtol=1e-6)
    np.testing.assert_allclose(composite_over(np.array([[0.0, 0.0, 0.0, 0.5]]), [0.0, 1.0, 0.5]),
                               [[0.0, 0.5, 0.25]])


def test_composite_over_torch_keeps_gradients_and_per_image_backgrounds():
    rgba = torch.rand(2, 4, 5, 4, requires_grad=True)
    bg = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    out = composite_over(rgba, bg)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 4, 5, 3)
    a = rgba[..., 3:]
    torch.testing.assert_close(out[0], (rgba[0, ..., :3] * a[0] + (1 - a[0])))
    torch.testing.assert_close(out[1], rgba[1, ..., :3] * a[1])
    out.sum().backward()
    assert rgba.grad is not None
    torch.testing.assert_close(composite_over(rgba.detach(), [0.0, 0.0, 0.0]),
                               rgba.detach()[..., :3] * rgba.detach()[..., 3:])


def test_composite_over_rejects_bad_shapes():
    with pytest.raises(ValueError, match="4 channels"):
        composite_over(np.zeros((2, 2, 3)), 1.0)
    with pytest.raises(ValueError, match="background"):
        composite_over(np.zeros((2, 2, 4)), np.zeros(5))
    with pytest.raises(ValueError, match="same B"):
        composite_over(np.zeros((2, 3, 3, 4)), np.zeros((3, 3)))
