"""HexPlane deformation 4D model (docs/design.md "4D representation", option 2)."""

import math
import time

import pytest
import torch

from backend.gaussians.hexplane import (PLANES, SPATIAL_PLANES, TIME_PLANES, HexPlaneConfig, HexPlaneField,
                                        HexPlaneGaussians4D, bound_from_points)
from backend.gaussians.model_io import load_gaussians4d
from backend.gaussians.trajectories import TrajectoryConfig, TrajectoryGaussians4D

SMALL = dict(resolution=[6, 6, 6, 5], multires=[1, 2], feature_dim=4, mlp_width=16)


def make_model(n=20, seed=0, static=False, **cfg):
    g = torch.Generator().manual_seed(seed)
    config = HexPlaneConfig(**{**SMALL, **cfg})
    k = (config.sh_degree + 1) ** 2
    return HexPlaneGaussians4D(torch.randn(n, 3, generator=g), torch.randn(n, 4, generator=g),
                               torch.randn(n, 3, generator=g) - 3, torch.randn(n, generator=g),
                               torch.randn(n, k, 3, generator=g), config, static=static)


def randomize_heads(model, seed=1, scale=0.3):
    """Give the zero-initialized last layers random weights so the field has an effect."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for head in (model.mlp.pos_head, model.mlp.scale_head, model.mlp.rot_head):
            head[-1].weight.copy_(torch.randn(head[-1].weight.shape, generator=g) * scale)
            head[-1].bias.copy_(torch.randn(head[-1].bias.shape, generator=g) * scale)


def perturb_time_planes(model, seed=2, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for level in model.field.grids:
            for i in TIME_PLANES:
                level[i].add_(torch.randn(level[i].shape, generator=g) * scale)


def test_init_is_canonical_at_every_time():
    model = make_model(sh_degree=1)
    t = torch.tensor([0.0, 0.13, 0.5, 1.0, 1.7])
    g = model.at(t)
    p = model.params
    assert g.means.shape == (5, 20, 3) and g.quats.shape == (5, 20, 4) and g.sh.shape == (5, 20, 4, 3)
    for b in range(5):
        assert torch.equal(g.means[b], p["means"])
        assert torch.equal(g.quats[b], p["quats"])
        assert torch.equal(g.log_scales[b], p["scales"])
        assert torch.equal(g.opacity_logits[b], p["opacities"])
    assert set(p.keys()) == {"means", "quats", "scales", "opacities", "sh0", "shN"}
    assert all(v.shape[0] == 20 for v in p.values())
    assert not model.is_static
    # Field parameters are not per-Gaussian and not in params.
    ids = {id(v) for v in p.values()}
    assert not ids & {id(v) for v in model.field_parameters()}
    assert len(model.plane_parameters()) == 6 * 2


def test_static_mode_ignores_deformation_and_dynamic_mode_moves():
    model = make_model()
    randomize_heads(model)
    perturb_time_planes(model)
    t = torch.tensor([0.0, 0.5, 1.0])
    moving = model.at(t)
    assert not torch.allclose(moving.means[0], moving.means[2])  # depends on t
    assert not torch.allclose(moving.log_scales[0], model.params["scales"])
    model.use_deformation = False
    assert model.is_static
    still = model.at(t)
    for b in range(3):
        assert torch.equal(still.means[b], model.params["means"])
        assert torch.equal(still.quats[b], model.params["quats"])
    assert make_model(static=True).is_static


def test_field_interpolates_normalized_coordinates():
    """A plane holding its own coordinate returns it: bilinear, align_corners=True, border clamp."""
    cfg = HexPlaneConfig(resolution=[5, 4, 3, 6], multires=[1], feature_dim=1)
    field = HexPlaneField(cfg, centre=[1.0, 2.0, 3.0], half_extent=[2.0, 1.0, 0.5])
    with torch.no_grad():
        for plane in field.grids[0]:
            plane.fill_(1.0)
        xy = field.grids[0][PLANES.index((0, 1))]  # [1,1,Ry,Rx]: width is x
        xy.copy_(torch.linspace(-1, 1, xy.shape[-1]).expand_as(xy))
        zt = field.grids[0][PLANES.index((2, 3))]  # [1,1,Rt,Rz]: height is t
        zt.copy_(torch.linspace(0, 1, zt.shape[-2])[:, None].expand_as(zt[0, 0]))
    pts = torch.tensor([[0.0, 2.0, 3.0], [2.0, 1.5, 3.2], [9.0, 2.0, 3.0]])
    t = torch.tensor([0.3, 0.0, 1.0])
    f = field(pts, t)[:, 0]
    x_hat = torch.tensor([-0.5, 0.5, 1.0])  # last point is outside the bound: clamped
    torch.testing.assert_close(f, x_hat * t, atol=1e-6, rtol=0)  # zt holds t (= (t̂+1)/2)


def test_field_is_time_independent_at_init_only():
    model = make_model()
    pts = model.params["means"].detach()
    n = len(pts)
    f0 = model.field(pts, torch.zeros(n))
    f1 = model.field(pts, torch.ones(n))
    assert torch.equal(f0, f1)
    assert f0.shape == (n, 4 * 2)
    perturb_time_planes(model)
    assert not torch.allclose(model.field(pts, torch.zeros(n)), model.field(pts, torch.ones(n)))


def test_gradients_reach_planes_mlp_and_canonical():
    model = make_model()
    t = torch.tensor([0.1, 0.6, 0.9])
    # At init (zero last layers) only the heads' last layers and the canonical params get
    # gradient through the deformation.
    g = model.at(t)
    (g.means.square().sum() + g.log_scales.sum() + g.quats.square().sum()).backward()
    assert model.mlp.pos_head[-1].weight.grad.abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.plane_parameters())
    model.zero_grad(set_to_none=True)
    randomize_heads(model)
    g = model.at(t)
    (g.means.square().sum() + g.log_scales.square().sum() + g.quats.square().sum()).backward()
    for p in model.plane_parameters() + model.mlp_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    for k in ("means", "quats", "scales"):
        assert model.params[k].grad.abs().sum() > 0


def test_batched_at_equals_per_time_calls():
    model = make_model(n=30)
    randomize_heads(model)
    perturb_time_planes(model)
    t = torch.tensor([0.0, 0.37, 0.81, 1.0])
    batched = model.at(t)
    for b in range(4):
        single = model.at(t[b:b + 1])
        torch.testing.assert_close(batched.means[b], single.means[0], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(batched.quats[b], single.quats[0], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(batched.log_scales[b], single.log_scales[0], atol=1e-6, rtol=1e-6)


def test_state_round_trip_and_model_io(tmp_path):
    model = make_model(sh_degree=1)
    randomize_heads(model)
    perturb_time_planes(model)
    torch.save(model.state(), tmp_path / "m.pt")
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    assert state["kind"] == "hexplane"
    t = torch.tensor([0.0, 0.4, 1.0])
    for loaded in (HexPlaneGaussians4D.from_state(state), load_gaussians4d(state)):
        assert isinstance(loaded, HexPlaneGaussians4D)
        assert loaded.config == model.config and loaded.config.sh_degree == 1
        a, b = model.at(t), loaded.at(t)
        for x, y in ((a.means, b.means), (a.quats, b.quats), (a.log_scales, b.log_scales), (a.sh, b.sh)):
            assert torch.equal(x, y)
        torch.testing.assert_close(loaded.field.half_extent, model.field.half_extent)
    model.use_deformation = False
    assert load_gaussians4d(model.state()).is_static
    with pytest.raises(ValueError):
        HexPlaneGaussians4D.from_state({**state, "kind": "trajectory"})
    with pytest.raises(ValueError):
        load_gaussians4d({**state, "kind": "mesh"})
    with pytest.raises(ValueError):
        load_gaussians4d({})
    n = 4
    traj = TrajectoryGaussians4D(torch.randn(n, 3), torch.randn(n, 4), torch.randn(n, 3), torch.randn(n),
                                 torch.randn(n, 1, 3), TrajectoryConfig())
    assert isinstance(load_gaussians4d(traj.state()), TrajectoryGaussians4D)


def _flat_field():
    """A field with constant-per-channel spatial planes and time planes at 1."""
    model = make_model()
    with torch.no_grad():
        for level in model.field.grids:
            for i in SPATIAL_PLANES:
                level[i].copy_(torch.rand(1, level[i].shape[1], 1, 1).expand_as(level[i]))
    return model


def test_regularizers_zero_for_static_constant_field():
    model = _flat_field()
    assert model.plane_tv_loss().item() == 0.0
    assert model.time_smoothness_loss().item() == 0.0
    assert model.l1_time_loss().item() == 0.0
    assert model.regularization_loss().item() == 0.0
    # The default (random spatial) init is already TV > 0 but time-static.
    fresh = make_model()
    assert fresh.plane_tv_loss() > 0 and fresh.time_smoothness_loss() == 0 and fresh.l1_time_loss() == 0


def test_plane_tv_grows_with_checkerboard_only_on_spatial_planes():
    model = _flat_field()
    a = 0.1
    xy = model.field.grids[1][PLANES.index((0, 1))]
    h, w = xy.shape[-2:]
    checker = a * (-1.0) ** (torch.arange(h)[:, None] + torch.arange(w)[None, :])
    with torch.no_grad():
        xy.add_(checker)
    # Every neighbour difference is ±2a: 2·(4a² + 4a²) = 16a².
    torch.testing.assert_close(model.plane_tv_loss(), torch.tensor(16 * a * a), rtol=1e-5, atol=0)
    # A smooth ramp of the same amplitude costs far less.
    ramp_model = _flat_field()
    with torch.no_grad():
        ramp_model.field.grids[1][0].add_(torch.linspace(-a, a, w).expand(h, w))
    assert ramp_model.plane_tv_loss() < 0.05 * model.plane_tv_loss()
    # Time planes are not part of TV.
    before = model.plane_tv_loss()
    perturb_time_planes(model)
    assert torch.equal(model.plane_tv_loss(), before)
    model.plane_tv_loss().backward()
    assert xy.grad.abs().sum() > 0


def test_time_smoothness_penalizes_zigzag_not_ramp_in_t():
    a = 0.1
    model = _flat_field()
    xt = model.field.grids[0][PLANES.index((0, 3))]  # [1,C,Rt,Rx]
    rt = xt.shape[-2]
    k = torch.arange(rt, dtype=torch.float32)[:, None]
    with torch.no_grad():
        xt.add_(a * k)  # linear in t
    assert model.time_smoothness_loss().item() < 1e-10
    assert model.l1_time_loss() > 0  # but no longer static
    with torch.no_grad():
        xt.add_(a * (-1.0) ** k)  # zig-zag in t: second difference ±4a
    torch.testing.assert_close(model.time_smoothness_loss(), torch.tensor(16 * a * a), rtol=1e-5, atol=0)
    # A zig-zag along x (constant in t) is not penalized by the time term.
    other = _flat_field()
    yt = other.field.grids[0][PLANES.index((1, 3))]
    with torch.no_grad():
        yt.add_(a * (-1.0) ** torch.arange(yt.shape[-1]))
    assert other.time_smoothness_loss().item() < 1e-10


def test_l1_time_measures_distance_from_static():
    model = _flat_field()
    d = 0.25
    with torch.no_grad():
        model.field.grids[0][PLANES.index((2, 3))].add_(d)
    torch.testing.assert_close(model.l1_time_loss(), torch.tensor(d), rtol=1e-6, atol=0)
    with torch.no_grad():
        model.field.grids[0][PLANES.index((0, 1))].add_(1.0)  # spatial: not counted
    torch.testing.assert_close(model.l1_time_loss(), torch.tensor(d), rtol=1e-6, atol=0)
    c = model.config
    expected = c.plane_tv_weight * model.plane_tv_loss() + c.time_smoothness_weight * model.time_smoothness_loss() \
        + c.l1_time_weight * d
    torch.testing.assert_close(model.regularization_loss(), expected)


def test_paper_config_and_bounds():
    cfg = HexPlaneConfig.paper(30)
    assert cfg.resolution == [64, 64, 64, 15] and cfg.multires == [1, 2, 4, 8] and cfg.feature_dim == 32
    assert (cfg.plane_tv_weight, cfg.time_smoothness_weight, cfg.l1_time_weight) == (0.05, 5.0, 0.05)
    line = torch.stack([torch.linspace(-2, 4, 10), torch.zeros(10), torch.zeros(10)], -1)
    centre, half = bound_from_points(line)
    torch.testing.assert_close(centre, torch.tensor([1.0, 0.0, 0.0]))
    assert half[0] == pytest.approx(3.3) and half[1] > 0 and half[2] > 0
    with pytest.raises(ValueError):
        HexPlaneField(HexPlaneConfig(), [0, 0, 0], [1.0, 0.0, 1.0])


def test_gsplat_strategy_ops_keep_field_working():
    """Densification edits only ``params`` rows; the field follows the canonical means."""
    from gsplat.strategy.ops import duplicate, remove

    model = make_model(n=10)
    randomize_heads(model)
    opts = {k: torch.optim.Adam([v], lr=1e-3) for k, v in model.params.items()}
    mask = torch.zeros(10, dtype=torch.bool)
    mask[[2, 5]] = True
    before = model.at(torch.tensor([0.3])).means[0].detach()
    duplicate(model.params, opts, {}, mask)
    assert model.num_gaussians == 12
    after = model.at(torch.tensor([0.3])).means[0].detach()
    torch.testing.assert_close(after[:10], before)
    torch.testing.assert_close(after[10:], before[[2, 5]])
    remove(model.params, opts, {}, torch.arange(12) < 3)
    assert model.num_gaussians == 9 and model.at(torch.tensor([0.0, 1.0])).means.shape == (2, 9, 3)


# ---------------------------------------------------------------------------- fitting


def _ribbon(n=300):
    x = torch.linspace(-1, 1, n // 2)
    return torch.cat([torch.stack([x, torch.zeros_like(x), torch.full_like(x, z)], -1) for z in (-0.08, 0.08)])


def _bend_twist(p, t):
    """Non-rigid motion ``[B,N,3]``: bend y += 0.5 sin(2πt)·x², then twist about x by 1.5 t²·x."""
    b = 0.5 * torch.sin(2 * math.pi * t)[:, None]
    phi = 1.5 * (t ** 2)[:, None] * p[None, :, 0]
    x = p[None, :, 0].expand_as(phi)
    y = p[None, :, 1] + b * x ** 2
    z = p[None, :, 2].expand_as(phi)
    c, s = torch.cos(phi), torch.sin(phi)
    return torch.stack([x, c * y - s * z, s * y + c * z], -1)


def _fit(model, groups, times, target, steps):
    opt = torch.optim.Adam(groups)
    for _ in range(steps):
        loss = (model.at(times).means - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return (model.at(times).means - target).square().sum(-1).mean().sqrt().item()


def _rmse(model, p0, times):
    with torch.no_grad():
        return (model.at(times).means - _bend_twist(p0, times)).square().sum(-1).mean().sqrt().item()


def test_fit_nonrigid_point_motion_hexplane_vs_trajectory():
    """Fit a bending + twisting ribbon (300 points, 8 times) by position MSE, 300 Adam steps.

    Learning rates are each model's best of a small sweep (trajectory 3e-3/1e-2/3e-2 →
    3e-2; HexPlane means/planes/MLP 1e-2/1e-2/3e-3). No regularizers: STAG4D's weights
    are scaled for image losses and swamp a position MSE in m² (see the report).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        p0 = _ribbon()
        n = len(p0)
        times = torch.arange(8) / 7
        mid = (torch.arange(7) + 0.5) / 7  # held-out times between the frames
        target = _bend_twist(p0, times)
        base = (p0[None] - target).square().sum(-1).mean().sqrt().item()
        q = torch.zeros(n, 4)
        q[:, 0] = 1
        args = (p0, q, torch.full((n, 3), -3.0), torch.zeros(n), torch.zeros(n, 1, 3))

        hex_cfg = HexPlaneConfig(resolution=[8, 8, 8, 8], multires=[1, 2], feature_dim=4, mlp_width=32)
        hexm = HexPlaneGaussians4D(*args, hex_cfg)
        traj = TrajectoryGaussians4D(*args, TrajectoryConfig())
        hex_motion = sum(p.numel() for p in hexm.field_parameters())
        traj_motion = sum(traj.params[k].numel() for k in ("motion", "rot_motion"))
        canonical = sum(v.numel() for v in hexm.params.values())

        t0 = time.perf_counter()
        hex_rmse = _fit(hexm, [{"params": [hexm.params["means"]], "lr": 1e-2},
                               {"params": hexm.plane_parameters(), "lr": 1e-2},
                               {"params": hexm.mlp_parameters(), "lr": 3e-3}], times, target, 300)
        t1 = time.perf_counter()
        traj_rmse = _fit(traj, [{"params": [traj.params["means"], traj.params["motion"]], "lr": 3e-2}],
                         times, target, 300)
        t2 = time.perf_counter()
        hex_mid, traj_mid = _rmse(hexm, p0, mid), _rmse(traj, p0, mid)
    finally:
        torch.set_num_threads(threads)
    print(f"\nmotion RMSE before fitting {base * 1e3:.1f} mm; canonical params {canonical} each")
    print(f"hexplane:   motion params {hex_motion:6d}, train RMSE {hex_rmse * 1e3:.2f} mm, "
          f"between-frames RMSE {hex_mid * 1e3:.2f} mm, {t1 - t0:.1f} s")
    print(f"trajectory: motion params {traj_motion:6d}, train RMSE {traj_rmse * 1e3:.2f} mm, "
          f"between-frames RMSE {traj_mid * 1e3:.2f} mm, {t2 - t1:.1f} s")
    print(f"better at the training times: {'hexplane' if hex_rmse < traj_rmse else 'trajectory'}; "
          f"between frames: {'hexplane' if hex_mid < traj_mid else 'trajectory'}")
    assert base > 0.1
    assert hex_rmse < 0.01  # < 7% of the motion, in 300 steps
    assert hex_mid < 0.25 * base  # and it interpolates between frames
    assert traj_rmse < 0.01
