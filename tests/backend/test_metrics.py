"""PSNR/SSIM over the full image and the object region (docs/design.md "Measuring quality")."""

import math

import pytest
import torch

from backend.eval.metrics import object_region, psnr, score_images, ssim_map, summarize


def test_psnr_identical_is_capped():
    img = torch.rand(2, 8, 8, 3, generator=torch.Generator().manual_seed(0))
    out = psnr(img, img)
    assert out.shape == (2,)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.full((2,), 120.0))  # mse clamped at 1e-12


@pytest.mark.parametrize("err", [0.1, 0.03, 0.5])
def test_psnr_constant_error(err):
    gt = torch.full((1, 6, 5, 3), 0.25)
    pred = gt + err
    assert psnr(pred, gt).item() == pytest.approx(-10 * math.log10(err ** 2), abs=1e-3)


def test_psnr_per_image_and_per_channel_mean():
    gt = torch.zeros(2, 4, 4, 3)
    pred = gt.clone()
    pred[0, ..., 0] = 0.3            # one channel off: mse = 0.09 / 3
    pred[1] = 0.1
    out = psnr(pred, gt)
    assert out[0].item() == pytest.approx(-10 * math.log10(0.09 / 3), abs=1e-3)
    assert out[1].item() == pytest.approx(20.0, abs=1e-3)


def test_object_region_dilates_single_pixel_to_9x9():
    gt = torch.zeros(1, 20, 20)
    gt[0, 10, 7] = 1.0
    m = object_region(gt, torch.zeros(1, 20, 20))
    assert m.dtype == torch.bool and m.shape == (1, 20, 20)
    expected = torch.zeros(1, 20, 20, dtype=torch.bool)
    expected[0, 6:15, 3:12] = True
    assert torch.equal(m, expected)
    # At the corner the square is clipped.
    gt2 = torch.zeros(1, 20, 20)
    gt2[0, 0, 0] = 0.9
    assert object_region(gt2, torch.zeros(1, 20, 20)).sum().item() == 25
    # Threshold is alpha > 0.5, and the union of gt and prediction.
    half = torch.full((1, 20, 20), 0.5)
    assert not object_region(half, half).any()
    gt3 = torch.zeros(1, 30, 30)
    gt3[0, 10, 7] = 1.0
    pred = torch.zeros(1, 30, 30)
    pred[0, 20, 20] = 0.6
    assert object_region(gt3, pred).sum().item() == 81 + 81
    assert object_region(gt3, pred, dilate_px=0).sum().item() == 2


def test_psnr_with_mask_ignores_other_pixels():
    gt = torch.zeros(1, 10, 10, 3)
    pred = gt.clone()
    pred[0, :, :5] = 0.2     # error left
    pred[0, :, 5:] = 0.05    # smaller error right
    mask = torch.zeros(1, 10, 10, dtype=torch.bool)
    mask[0, :, 5:] = True
    assert psnr(pred, gt, mask).item() == pytest.approx(-10 * math.log10(0.05 ** 2), abs=1e-3)
    assert psnr(pred, gt).item() == pytest.approx(-10 * math.log10((0.04 + 0.0025) / 2), abs=1e-3)


def rgba(h, w, rgb, alpha):
    img = torch.zeros(1, h, w, 4)
    img[..., :3] = torch.tensor(rgb)
    img[..., 3] = alpha
    return img


def test_score_images_object_psnr_ignores_background():
    H = W = 24
    gt = rgba(H, W, [0.2, 0.4, 0.6], 0.0)
    gt[0, 8:12, 8:12, 3] = 1.0                    # a 4x4 object
    pred = gt.clone()
    pred[0, 8:12, 8:12, :3] += 0.1                # object colour error 0.1
    # Background (alpha 0, far from the object) differs: on white it is white either way,
    # except where pred draws a faint-but-visible blob.
    pred[0, 0:2, 20:24, 3] = 0.2                  # stray semi-transparent pixels far away
    pred[0, 0:2, 20:24, :3] = 0.0
    s = score_images(pred, gt)
    # Object region: 4x4 dilated by 4 -> 12x12 = 144 px, of which 16 have error 0.1.
    assert s["object_fraction"][0] == pytest.approx(144 / (H * W))
    assert s["psnr_object"][0] == pytest.approx(-10 * math.log10(0.01 * 16 / 144), abs=1e-3)
    # Full image also sees the stray pixels (composited on white: 1 - 0.2 = 0.8).
    mse_full = (0.01 * 16 + 0.04 * 8) / (H * W)
    assert s["psnr"][0] == pytest.approx(-10 * math.log10(mse_full), abs=1e-3)
    assert s["psnr"][0] < 120 and s["psnr_object"][0] < s["psnr"][0]
    # Same background error, perfect object: object PSNR is capped, full PSNR is not.
    pred2 = pred.clone()
    pred2[0, 8:12, 8:12, :3] = gt[0, 8:12, 8:12, :3]
    s2 = score_images(pred2, gt)
    assert s2["psnr_object"][0] == pytest.approx(120.0, abs=1e-3)
    assert s2["psnr"][0] == pytest.approx(-10 * math.log10(0.04 * 8 / (H * W)), abs=1e-3)


def test_composited_on_white():
    # Fully transparent images are white regardless of their colour channels.
    a = rgba(16, 16, [0.0, 0.0, 0.0], 0.0)
    b = rgba(16, 16, [1.0, 0.3, 0.0], 0.0)
    s = score_images(a, b)
    assert s["psnr"][0] == pytest.approx(120.0, abs=1e-3)
    assert s["ssim"][0] == pytest.approx(1.0, abs=1e-6)
    assert s["object_fraction"][0] == 0.0


def test_ssim_identical_is_one_and_different_is_less():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 24, 24, 3, generator=g)
    m = ssim_map(img, img)
    assert m.shape[0] == 2
    torch.testing.assert_close(m.flatten(1).mean(1), torch.ones(2), atol=1e-5, rtol=0)
    noisy = (img + 0.2 * torch.randn(2, 24, 24, 3, generator=g)).clamp(0, 1)
    assert (ssim_map(noisy, img).flatten(1).mean(1) < 0.9).all()
    s = score_images(torch.cat([img, torch.ones(2, 24, 24, 1)], -1), torch.cat([img, torch.ones(2, 24, 24, 1)], -1))
    assert s["ssim"] == pytest.approx([1.0, 1.0], abs=1e-5)
    assert s["ssim_object"] == pytest.approx([1.0, 1.0], abs=1e-5)


def test_summarize_means():
    assert summarize({"psnr": [20.0, 30.0], "ssim": [0.5, 1.0]}) == {"psnr": 25.0, "ssim": 0.75}
    assert summarize({"psnr": []}) == {"psnr": 0.0}
