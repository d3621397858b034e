"""SDS with STAG4D's settings, verified by behaviour: the annealed timestep window, the
weight, nearest-view conditioning, and a gradient that reaches the Gaussians through a
tiny random-weight Zero123 guidance model loaded through the registry."""


import pytest
import torch

from backend.cameras import intrinsics_from_fov, look_at_c2w, c2w_blender_to_viewmat
from backend.models.zero123_guidance import Zero123Guidance, pose_features
from backend.optim import sds
from backend.render import rasterize
from tests.helpers.fixed_coin import FixedCoin


def test_timestep_window_follows_stag4d_schedule():
    assert sds.timestep_window(0) == pytest.approx((0.50, 0.95))
    assert sds.timestep_window(1500) == pytest.approx((0.26, 0.725))
    assert sds.timestep_window(3000) == pytest.approx((0.02, 0.50))
    assert sds.timestep_window(9000) == pytest.approx((0.02, 0.50))
    g = torch.Generator().manual_seed(0)
    early = [sds.sample_timestep(0, 1000, g) for _ in range(300)]
    late = [sds.sample_timestep(5000, 1000, g) for _ in range(300)]
    assert 500 <= min(early) and max(early) <= 950 and max(early) - min(early) > 350
    assert 20 <= min(late) and max(late) <= 500
    with pytest.raises(ValueError):
        sds.timestep_window(-1)


_Coin = FixedCoin


class _CountingCoin(_Coin):
    def __init__(self, value):
        super().__init__(value)
        self.draws = 0

    def random(self):
        self.draws += 1
        return self.value


def test_nearest_view_conditioning():
    # STAG4D's case: the input frame (candidate 0, azimuth 0, elevation 0) and the six
    # Zero123++ views at 30 + 60 i degrees (candidates 1..6).
    az = torch.tensor([0.0, 30.0, 90.0, 150.0, 210.0, 270.0, 330.0])
    elev = torch.tensor([0.0, 20.0, -10.0, 20.0, -10.0, 20.0, -10.0])
    # Within +-30 degrees of the input: always the input frame, without drawing the coin.
    coin = _CountingCoin(0.0)
    c = sds.nearest_view(25.0, 5.0, az, elev, 0, coin)
    assert (c.view, c.delta_azimuth_deg, c.delta_elevation_deg) == (0, 25.0, 5.0) and coin.draws == 0
    # Farther away, a coin above 0.4 (p = 0.6, STAG4D main.py:332) picks the input frame ...
    assert sds.nearest_view(100.0, 0.0, az, elev, 0, _Coin(0.9)).view == 0
    # ... otherwise the nearest view: 100 deg -> the view at 90 deg (elev -10).
    c = sds.nearest_view(100.0, 0.0, az, elev, 0, _Coin(0.1))
    assert (c.view, c.delta_azimuth_deg, c.delta_elevation_deg) == (2, 10.0, 10.0)
    c = sds.nearest_view(-100.0, 15.0, az, elev, 0, _Coin(0.1))  # 260 deg -> the view at 270 deg (elev 20)
    assert (c.view, c.delta_azimuth_deg, c.delta_elevation_deg) == (5, -10.0, -5.0)
    c = sds.nearest_view(359.0, 0.0, az, elev, 0, _Coin(0.1))  # -1 deg: the input again
    assert c.view == 0 and c.delta_azimuth_deg == pytest.approx(-1.0)
    # The reference need not be candidate 0: relative to a reference at 90 deg, 100 deg is
    # inside its window.
    assert sds.nearest_view(100.0, 0.0, az, elev, 2, _Coin(0.1)).view == 2
    with pytest.raises(IndexError):
        sds.nearest_view(0.0, 0.0, az, elev, 7)


@pytest.fixture(scope="module")
def guidance(tmp_path_factory):
    from tests.helpers.tiny_models import load_tiny_through_registry, save_tiny_zero123_guidance

    g = load_tiny_through_registry("sds_guidance", save_tiny_zero123_guidance, tmp_path_factory.mktemp("models"))
    assert isinstance(g, Zero123Guidance)
    return g


def test_sds_gradient_reaches_the_gaussians(guidance):
    g = torch.Generator().manual_seed(0)
    n = 300
    means = (torch.rand(n, 3, generator=g) - 0.5).requires_grad_(True)
    colors = torch.rand(n, 3, generator=g).requires_grad_(True)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    scales = torch.full((n, 3), 0.06)
    c2w = torch.from_numpy(look_at_c2w([2.5, 0.0, 0.5])).float()
    viewmat = c2w_blender_to_viewmat(c2w[None])
    K = intrinsics_from_fov(0.7, 32, 32)[None].float()
    img, _, _ = rasterize(means[None], quats[None], scales[None], torch.full((1, n), 0.8), colors[None],
                          viewmat, K, 32, 32, torch.ones(1, 3))
    latents = guidance.encode_images(img)
    clip, cond = guidance.encode_condition(torch.rand(1, 32, 32, 3, generator=g))
    pose = pose_features(torch.tensor([0.0]), torch.tensor([90.0]), torch.tensor([0.0]))
    loss = sds.sds_loss(latents, guidance.eps_fn(clip, cond, pose), sds.sample_timestep(0, 1000, g),
                        guidance.alphas_cumprod, generator=g)
    loss.backward()
    for p in (means, colors):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    # The guidance networks stay frozen.
    assert all(q.grad is None for q in guidance.unet.parameters())


def test_sds_term_in_reconstruction(guidance, tmp_path):
    """SDS as an optional loss term of a fit: it runs on every k-th step on novel cameras,
    changes the fitted Gaussians, and is refused without a guidance model."""
    from backend.errors import JobError
    from backend.pipeline.context import JobContext
    from backend.pipeline.ingest import load_footage
    from backend.pipeline.reconstruct import reconstruct
    from protocol.presets import reconstruct_config
    from tests.helpers.footage import make_tiny_footage

    footage = load_footage(make_tiny_footage(tmp_path / "f", n_cams=4, n_times=3, size=32), "train")
    results = {}
    for weight in (0.0, 1.0):
        cfg = reconstruct_config("tiny", {"sds_weight": weight, "sds_every": 2, "iterations": 10})
        model, stats = reconstruct(footage, cfg, JobContext(), guidance=guidance)
        results[weight] = (model, stats)
    assert results[0.0][1]["sds_steps"] == 0 and results[1.0][1]["sds_steps"] == 5
    m0, m1 = results[0.0][0], results[1.0][0]
    assert m0.num_gaussians == m1.num_gaussians
    assert not torch.allclose(m0.params["sh0"], m1.params["sh0"])  # SDS moved the colours
    assert all(torch.isfinite(p).all() for p in m1.params.values())
    with pytest.raises(JobError, match="sds_guidance"):
        reconstruct(footage, reconstruct_config("tiny", {"sds_weight": 1.0}), JobContext())
