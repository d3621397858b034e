"""Efficient4D confidence maps: a corrupted region of one frame gets low confidence,
clean video gets near-uniform high confidence, first/last frames are 1; and the weighted
loss ignores errors where the confidence is 0."""

import cv2
import numpy as np
import pytest
import torch
from pytorch_msssim import ssim

from backend.optim.confidence import confidence_maps, ssim_map, weighted_image_loss
from backend.optim.losses import image_loss

V, T, S = 2, 8, 48
PATCH = (slice(14, 22), slice(14, 22))     # inside the square of view 0, frame 4 (rows/cols 12..36)
TEAR = (slice(26, 34), slice(14, 34))      # a block of the square shifted by 3 px
CLEAN = np.ones((S, S), bool)
CLEAN[10:38, 10:38] = False                # well away from both corruptions


def video() -> np.ndarray:
    """[V, T, S, S, 3]: a smoothly textured 24 px square moving (2, 1) px per frame over a
    smooth gradient background; view 1 shows the texture flipped, moving on another path."""
    rng = np.random.default_rng(0)
    tex = rng.random((6, 6, 3)).astype(np.float32)
    tex = cv2.GaussianBlur(cv2.resize(tex, (24, 24), interpolation=cv2.INTER_NEAREST), (0, 0), 1.0)
    yy, xx = np.mgrid[0:S, 0:S] / S
    out = np.zeros((V, T, S, S, 3), np.float32)
    for v in range(V):
        for t in range(T):
            img = np.stack([0.2 + 0.1 * xx, 0.25 + 0.1 * yy, 0.3 + 0 * xx], -1).astype(np.float32)
            x0, y0 = 4 + 2 * t + 2 * v, 8 + t
            img[y0:y0 + 24, x0:x0 + 24] = tex if v == 0 else tex[::-1]
            out[v, t] = img
    return out


@pytest.fixture(autouse=True)
def one_thread():
    n = cv2.getNumThreads()
    cv2.setNumThreads(1)
    yield
    cv2.setNumThreads(n)


def test_clean_video_is_confident_everywhere():
    c = confidence_maps(torch.from_numpy(video()))
    assert c.shape == (V, T, S, S) and c.dtype == torch.float32
    assert (c[:, 0] == 1).all() and (c[:, -1] == 1).all()
    # Midpoint interpolation (x_t unseen) is imperfect where the motion is not linear or
    # at occlusion edges: measured mean 0.953, 10% quantile 0.84, 1% quantile 0.31.
    assert c.mean() > 0.93
    assert torch.quantile(c.flatten(), 0.1) > 0.8
    assert c.min() >= 0 and c.max() <= 1


def test_corrupted_region_gets_low_confidence():
    clean = video()
    bad = clean.copy()
    bad[0, 4][PATCH] = [1.0, 0.0, 1.0]                                          # wrong colour
    bad[0, 4][TEAR] = np.roll(clean[0, 4][TEAR], 3, axis=1)                     # jitter/tear
    c = confidence_maps(torch.from_numpy(bad))
    patch, tear = c[0, 4][PATCH].mean(), c[0, 4][TEAR][:, 3:].mean()
    rest = c[0, 4][torch.from_numpy(CLEAN)]
    assert patch < 0.3
    assert tear < 0.8 and tear < rest.mean() - 0.25
    assert rest.mean() > 0.95
    # Averaging (Efficient4D): frames that use frame 4 as a neighbour are affected less.
    assert c[0, 3][PATCH].mean() > patch + 0.2 and c[0, 5][PATCH].mean() > patch + 0.2
    # The other view is untouched.
    torch.testing.assert_close(c[1], confidence_maps(torch.from_numpy(clean))[1])
    assert (c[:, 0] == 1).all() and (c[:, -1] == 1).all()


def test_min_reduction_spares_the_neighbours_of_a_bad_frame():
    bad = video()
    bad[0, 4][PATCH] = [1.0, 0.0, 1.0]
    c = confidence_maps(torch.from_numpy(bad), reduce="min")
    assert c[0, 4][PATCH].mean() < 0.3
    for t in (2, 3, 5, 6):
        assert c[0, t][PATCH].mean() > 0.9, t


def test_tear_alone_and_rgba_input():
    clean = video()
    bad = clean.copy()
    bad[0, 4][TEAR] = np.roll(clean[0, 4][TEAR], 3, axis=1)
    rgba = np.concatenate([bad, np.ones(bad.shape[:-1] + (1,), np.float32)], -1)
    c = confidence_maps(torch.from_numpy(rgba))           # opaque RGBA == RGB
    assert c[0, 4][TEAR][:, 3:].mean() < 0.7
    assert c[0, 4][torch.from_numpy(CLEAN)].mean() > 0.95
    torch.testing.assert_close(c, confidence_maps(torch.from_numpy(bad)))


def test_short_clips_and_bad_input():
    v = torch.from_numpy(video()[:, :2])
    assert (confidence_maps(v) == 1).all()                # T = 2: only first/last frames
    with pytest.raises(ValueError):
        confidence_maps(v[..., :2])
    with pytest.raises(ValueError):
        confidence_maps(torch.from_numpy(video()), method="raft")
    with pytest.raises(ValueError):
        confidence_maps(torch.from_numpy(video()), reduce="median")


def test_ssim_map_matches_pytorch_msssim_inside():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 32, 40, 3, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    m = ssim_map(x, y)
    ref = ssim(x.permute(0, 3, 1, 2), y.permute(0, 3, 1, 2), data_range=1.0, size_average=False)
    torch.testing.assert_close(m[:, 5:-5, 5:-5].mean((1, 2)), ref, rtol=1e-4, atol=1e-5)
    assert torch.allclose(ssim_map(x, x), torch.ones(2, 32, 40))


def test_weighted_loss_ignores_zero_confidence():
    g = torch.Generator().manual_seed(1)
    target = torch.rand(2, 32, 32, 3, generator=g)
    pred = target.clone()
    pred[0, 10:16, 12:18] = 1.0 - pred[0, 10:16, 12:18]                       # a big local error
    conf = torch.ones(2, 32, 32)
    assert weighted_image_loss(pred, target, conf) > 0.01
    conf[0, 5:21, 7:23] = 0.0                   # the error plus the SSIM window radius (5 px)
    pred.requires_grad_(True)
    loss = weighted_image_loss(pred, target, conf)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    # Elsewhere it is the ordinary 0.8·L1 + 0.2·(1 − SSIM) and has a gradient.
    pred2 = (target + 0.05 * torch.randn(target.shape, generator=g)).clamp(0, 1).requires_grad_(True)
    full = weighted_image_loss(pred2, target, torch.ones(2, 32, 32))
    l1 = (pred2 - target).abs().mean()
    assert full.item() == pytest.approx((0.8 * l1 + 0.2 * (1 - ssim_map(pred2, target).mean())).item(), rel=1e-5)
    assert full.item() == pytest.approx(image_loss(pred2, target).item(), rel=0.1)
    half = weighted_image_loss(pred2, target, torch.full((2, 32, 32), 0.5))
    assert half.item() == pytest.approx(0.5 * full.item(), rel=1e-5)
    full.backward()
    assert pred2.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        weighted_image_loss(pred2, target, torch.ones(2, 32))
