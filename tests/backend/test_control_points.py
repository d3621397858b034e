"""Sparse-control-point deformation (backend/gaussians/control_points.py, after SC-GS)."""

import math

import torch

from backend.gaussians.control_points import (ControlPointGaussians4D, farthest_point_sample, positional_encoding,
                                              quat_multiply, quat_to_rotmat)
from backend.gaussians.model_io import build_gaussians4d, load_gaussians4d
from backend.optim.optimizer import ModelOptimizer
from protocol.config import ControlPointConfig, ModelConfig, OptimizationConfig

SMALL = ControlPointConfig(n_control=6, k_neighbors=3, mlp_width=16, mlp_depth=3, pos_freqs=2, time_freqs=2)


def make_model(n=40, seed=0, config=SMALL):
    g = torch.Generator().manual_seed(seed)
    return ControlPointGaussians4D(torch.randn(n, 3, generator=g), torch.nn.functional.normalize(
        torch.randn(n, 4, generator=g), dim=-1), torch.randn(n, 3, generator=g) - 3, torch.randn(n, generator=g),
        torch.randn(n, 1, 3, generator=g), config)


def randomize_output(model, seed=1, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.mlp.out.weight.copy_(torch.randn(model.mlp.out.weight.shape, generator=g) * scale)
        model.mlp.out.bias.copy_(torch.randn(model.mlp.out.bias.shape, generator=g) * scale)


def test_identity_at_init():
    model = make_model()
    g = model.at(torch.tensor([0.0, 0.3, 1.0]))
    for b in range(3):
        torch.testing.assert_close(g.means[b], model.params["means"], atol=1e-5, rtol=0)
        torch.testing.assert_close(g.quats[b], model.params["quats"], atol=1e-6, rtol=0)


def test_blend_matches_a_per_gaussian_reference():
    """Every Gaussian against a loop over its K control points:
    x(t) = Σ_k w_k (R_k (x − p_k) + p_k + T_k), q(t) = normalize(Σ_k w_k q_k) ⊗ q."""
    model = make_model()
    randomize_output(model)
    t = torch.tensor([0.2, 0.9])
    with torch.no_grad():
        g = model.at(t)
        trans, rot = model.control_transforms(t)
        ctrl, radius = model.control_points, torch.exp(model.control_log_radius)
        for i in range(model.num_gaussians):
            x, q = model.params["means"][i], model.params["quats"][i]
            d2 = ((ctrl - x) ** 2).sum(-1)
            knn = torch.argsort(d2)[:SMALL.k_neighbors]
            w = torch.exp(-d2[knn] / (2 * radius[knn] ** 2)) + 1e-7
            w = w / w.sum()
            for b in range(2):
                R = quat_to_rotmat(rot[b, knn])
                pos = sum(w[j] * (R[j] @ (x - ctrl[knn[j]]) + ctrl[knn[j]] + trans[b, knn[j]]) for j in range(len(knn)))
                qb = torch.nn.functional.normalize(sum(w[j] * rot[b, knn[j]] for j in range(len(knn))), dim=-1)
                torch.testing.assert_close(g.means[b, i], pos, atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(g.quats[b, i], quat_multiply(qb, q), atol=1e-5, rtol=1e-5)


def test_rotation_helpers():
    q = torch.nn.functional.normalize(torch.tensor([[0.3, -0.2, 0.9, 0.1], [1.0, 0.0, 0.0, 0.0]]), dim=-1)
    R = quat_to_rotmat(q)
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3).expand(2, 3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(2), atol=1e-6, rtol=0)
    # the product of quaternions is the product of rotations
    torch.testing.assert_close(quat_to_rotmat(quat_multiply(q[0], q[0])), R[0] @ R[0], atol=1e-6, rtol=0)
    enc = positional_encoding(torch.tensor([[0.25]]), 2)
    torch.testing.assert_close(enc, torch.tensor([[0.25, math.sin(0.25), math.sin(0.5), math.cos(0.25),
                                                   math.cos(0.5)]]))


def test_farthest_point_sample_spreads():
    pts = torch.cat([torch.zeros(50, 3), torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]])])
    idx = farthest_point_sample(pts, 4)
    assert set(idx.tolist()[1:]) == {50, 51, 52}
    assert len(farthest_point_sample(pts, 100)) == len(pts)


def test_warm_up_is_static_and_neighbours_follow_densification():
    from gsplat.strategy.ops import duplicate

    model = make_model(config=ControlPointConfig(**{**SMALL.__dict__, "static_fraction": 0.5}))
    randomize_output(model)
    model.on_step(10, 100)
    assert model.is_static
    torch.testing.assert_close(model.at(torch.tensor([0.7])).means[0], model.params["means"])
    model.on_step(50, 100)
    assert not model.is_static
    moved = model.at(torch.tensor([0.7])).means[0].detach()
    assert (moved - model.params["means"]).norm(dim=-1).mean() > 1e-3
    opts = {k: torch.optim.Adam([v], lr=1e-3) for k, v in model.params.items()}
    mask = torch.zeros(model.num_gaussians, dtype=torch.bool)
    mask[[1, 4]] = True
    duplicate(model.params, opts, {}, mask)
    after = model.at(torch.tensor([0.7])).means[0].detach()
    assert after.shape[0] == 42
    torch.testing.assert_close(after[40:], moved[[1, 4]])


def test_state_round_trip_and_registry():
    model = make_model()
    randomize_output(model)
    with torch.no_grad():
        model.control_log_radius.add_(0.2)
    back = load_gaussians4d(model.state())
    assert isinstance(back, ControlPointGaussians4D)
    t = torch.tensor([0.1, 0.6])
    torch.testing.assert_close(back.at(t).means, model.at(t).means)
    built = build_gaussians4d(ModelConfig(representation="control_points", control_points=SMALL),
                              *(model.params[k].detach() for k in ("means", "quats", "scales", "opacities", "sh0")))
    assert isinstance(built, ControlPointGaussians4D) and built.control_points.shape == (6, 3)


def test_field_rates_decay_to_the_final_factor():
    model = make_model()
    opt = OptimizationConfig(iterations=10, lr_deform=1e-3, lr_final_factor=0.01)
    optimizer = ModelOptimizer(model, opt, scene_radius=1.0)
    for _ in range(10):
        model.at(torch.tensor([0.5])).means.sum().backward()
        optimizer.step()
    assert optimizer.field.param_groups[0]["lr"] == __import__("pytest").approx(1e-5, rel=1e-4)


def test_fits_a_moving_articulated_point_set():
    """Two rigid 'limbs' swing in opposite directions about the origin over time; the
    model fits the positions at 8 times to a few % of the motion and interpolates."""
    torch.manual_seed(0)
    n = 200
    x = torch.linspace(0.1, 1.0, n // 2)
    p0 = torch.cat([torch.stack([x, torch.zeros_like(x), torch.zeros_like(x)], -1),
                    torch.stack([-x, torch.zeros_like(x), torch.zeros_like(x)], -1)])

    def truth(t):
        ang = 0.8 * torch.sin(2 * math.pi * t)[:, None]
        sign = torch.where(p0[:, 0] > 0, 1.0, -1.0)[None]
        c, s = torch.cos(ang * sign), torch.sin(ang * sign)
        return torch.stack([c * p0[None, :, 0], s * p0[None, :, 0], p0[None, :, 2].expand_as(c)], -1)

    q = torch.zeros(n, 4)
    q[:, 0] = 1
    model = ControlPointGaussians4D(p0, q, torch.full((n, 3), -3.0), torch.zeros(n), torch.zeros(n, 1, 3),
                                    ControlPointConfig(n_control=16, mlp_width=64, mlp_depth=4, static_fraction=0,
                                                                       time_freqs=3, encode_pi=False))
    times, mid = torch.arange(8) / 7, (torch.arange(7) + 0.5) / 7
    base = (p0[None] - truth(times)).norm(dim=-1).mean().item()
    opt = torch.optim.Adam([{"params": model.mlp.parameters(), "lr": 3e-3}])
    for _ in range(400):
        loss = (model.at(times).means - truth(times)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        train_err = (model.at(times).means - truth(times)).norm(dim=-1).mean().item()
        mid_err = (model.at(mid).means - truth(mid)).norm(dim=-1).mean().item()
    assert base > 0.2
    assert train_err < 0.05 * base
    assert mid_err < 0.15 * base
