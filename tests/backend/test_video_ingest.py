"""Monocular video ingest: PyAV decoding and sampling, masks from alpha or the OpenCV
plain-background fallback, a fixed square crop, and clear errors for bad files."""

import math

import numpy as np
import pytest

from backend.errors import BadInputError
from backend.pipeline.video_ingest import crop_resize, decode_video, load_video, square_crop_box
from tests.helpers.video import H, N, R, W, disc_frames as _disc_frames, write_video as _write


def test_plain_background_video_gets_opencv_masks(tmp_path):
    frames, centres = _disc_frames(False)
    path = _write(tmp_path / "disc.mp4", [f[..., :3] for f in frames], "libx264", "yuv420p", "rgb24")
    v = load_video(path, size=32, fps=12)
    assert v.mask_source == "opencv_background"
    assert v.images.shape == (12, 32, 32, 4) and v.images.dtype == np.float32
    assert v.times[0] == 0 and v.times[-1] == 1 and np.all(np.diff(v.source_times_s) > 0)
    assert np.allclose(np.diff(v.source_times_s), 1 / 12, atol=1e-3)
    # The mask is the disc: its area in the crop matches pi r^2 scaled to 32 px.
    x0, y0, side = v.crop_box
    expected_area = math.pi * R ** 2 * (32 / side) ** 2
    areas = v.images[..., 3].sum(axis=(1, 2))
    assert np.all(np.abs(areas - expected_area) < 0.25 * expected_area), (areas, expected_area)
    # The crop is fixed, so the object moves inside it, left to right.
    cols = (v.images[..., 3] * np.arange(32)).sum(axis=(1, 2)) / areas
    assert cols[-1] - cols[0] > 8
    # Foreground colour survives (orange), background pixels are transparent.
    fg = v.images[..., 3] > 0.9
    assert np.allclose(v.images[fg][:, :3].mean(0), np.array([230, 60, 20]) / 255, atol=0.08)


def test_background_removal_model_masks_a_video_without_alpha(tmp_path):
    """With the optional model installed (a tiny random-weight CLIPSeg through the real
    classes), its masks for the job's text query become the alpha, cropped like any mask."""
    from backend.models.background_removal import ClipSegBackgroundRemover
    from tests.helpers.tiny_models import save_tiny_background_removal

    remover = ClipSegBackgroundRemover.from_pretrained(save_tiny_background_removal(tmp_path / "bg"))
    frames, _ = _disc_frames(False)
    path = _write(tmp_path / "disc.mp4", [f[..., :3] for f in frames], "libx264", "yuv420p", "rgb24")
    v = load_video(path, size=32, fps=12, remover=remover, mask_prompt="an orange disc")
    assert v.mask_source == "background_removal"
    decoded, _, _ = decode_video(path, 12, 32)
    masks = remover.masks(np.ascontiguousarray(decoded[..., :3]), "an orange disc")
    assert 0.0 < (masks > 0.5).mean() < 1.0  # varies per pixel
    box = square_crop_box(masks, 0.1)
    assert v.crop_box == box
    expected = crop_resize(np.concatenate([decoded[..., :3] / 255.0, masks[..., None]], -1).astype(np.float32),
                           box, 32)
    np.testing.assert_allclose(v.images[..., 3], expected[..., 3], atol=1e-5)
    # The text query is used: another query gives other masks.
    other = remover.masks(np.ascontiguousarray(decoded[..., :3]), "a blue cube")
    assert np.abs(other - masks).max() > 1e-3


def test_alpha_video_uses_its_alpha(tmp_path):
    frames, _ = _disc_frames(True)
    path = _write(tmp_path / "disc.mov", frames, "png", "rgba", "rgba")
    v = load_video(path, size=24)
    assert v.mask_source == "alpha" and len(v.images) == N
    assert set(np.unique(np.round(v.images[..., 3], 1))) >= {0.0, 1.0}


def test_bad_videos_are_clear_errors(tmp_path):
    with pytest.raises(BadInputError, match="not found"):
        load_video(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(BadInputError, match="cannot decode"):
        load_video(junk)
    empty_scene = [np.full((H, W, 3), 90, np.uint8) for _ in range(6)]
    path = _write(tmp_path / "empty.mp4", empty_scene, "libx264", "yuv420p", "rgb24")
    with pytest.raises(BadInputError, match="cannot separate the object"):
        load_video(path)
    # A file cut short in the middle still decodes its first frames or fails clearly.
    frames, _ = _disc_frames(False)
    full = _write(tmp_path / "full.mp4", [f[..., :3] for f in frames], "libx264", "yuv420p", "rgb24")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 3])
    try:
        v = load_video(cut, size=16)
        assert len(v.images) >= 2
    except BadInputError as exc:
        assert "cut.mp4" in str(exc)
