"""Per-Gaussian trajectory 4D model (docs/design.md "4D representation", option 1)."""

import math

import pytest
import torch

from backend.gaussians.trajectories import TrajectoryConfig, TrajectoryGaussians4D, time_basis


def make_model(n=5, config=None, sh_degree=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    config = config or TrajectoryConfig(sh_degree=sh_degree)
    k = (config.sh_degree + 1) ** 2
    return TrajectoryGaussians4D(torch.randn(n, 3, generator=g), torch.randn(n, 4, generator=g),
                                 torch.randn(n, 3, generator=g) - 3, torch.randn(n, generator=g),
                                 torch.randn(n, k, 3, generator=g), config)


def test_time_basis_values_and_zero_at_half():
    t = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    b = time_basis(t, 3, 2)
    assert b.shape == (5, 3 + 4)
    assert torch.allclose(b[2], torch.zeros(7, dtype=torch.float64), atol=1e-12)
    # Hand values at t = 0.75 (τ = 0.5): τ, τ², τ³, sin(1.5π)−sin(π), cos(1.5π)−cos(π),
    # sin(3π)−sin(2π), cos(3π)−cos(2π).
    expected = torch.tensor([0.5, 0.25, 0.125, -1.0, 1.0, 0.0, -2.0], dtype=torch.float64)
    torch.testing.assert_close(b[3], expected, atol=1e-12, rtol=0)
    expected0 = torch.tensor([-1.0, 1.0, -1.0, 0.0, 2.0, 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(b[0], expected0, atol=1e-12, rtol=0)
    assert time_basis(t, 0, 0).shape == (5, 0)
    assert time_basis(t, 1, 0).shape == (5, 1)


def test_at_shapes_and_static_parts():
    model = make_model(n=6, sh_degree=1)
    t = torch.tensor([0.0, 0.3, 1.0])
    g = model.at(t)
    assert g.means.shape == (3, 6, 3) and g.quats.shape == (3, 6, 4)
    assert g.log_scales.shape == (3, 6, 3) and g.opacity_logits.shape == (3, 6)
    assert g.sh.shape == (3, 6, 4, 3)
    assert g.sh_degree == 1
    p = model.params
    for b in range(3):
        assert torch.equal(g.log_scales[b], p["scales"]) and torch.equal(g.opacity_logits[b], p["opacities"])
        assert torch.equal(g.sh[b, :, :1], p["sh0"]) and torch.equal(g.sh[b, :, 1:], p["shN"])
    # Freshly built: motion coefficients are zero, so positions equal the canonical means.
    assert torch.equal(g.means[1], p["means"])
    assert set(p.keys()) == {"means", "quats", "scales", "opacities", "sh0", "shN", "motion", "rot_motion"}
    assert p["motion"].shape == (6, 3 + 4, 3) and p["rot_motion"].shape == (6, 1, 4)
    for v in p.values():
        assert v.shape[0] == 6 and v.requires_grad


def test_motion_coefficients_give_hand_computed_positions():
    cfg = TrajectoryConfig(poly_degree=2, n_fourier=1, rot_degree=1)
    model = make_model(n=2, config=cfg)
    with torch.no_grad():
        model.params["means"].copy_(torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]))
        # Gaussian 0 moves along x with τ, along y with τ², along z with the sin and cos terms.
        model.params["motion"].zero_()
        model.params["motion"][0, 0, 0] = 0.4   # τ -> x
        model.params["motion"][0, 1, 1] = -0.2  # τ² -> y
        model.params["motion"][0, 2, 2] = 0.1   # sin(2πt) − sin(π) -> z
        model.params["motion"][0, 3, 2] = 0.3   # cos(2πt) − cos(π) -> z
        model.params["quats"].copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]))
        model.params["rot_motion"].zero_()
        model.params["rot_motion"][0, 0] = torch.tensor([0.0, 0.0, 0.0, 0.5])
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    g = model.at(t)
    for b, tv in enumerate(t.tolist()):
        tau = 2 * tv - 1
        z = 3.0 + 0.1 * (math.sin(2 * math.pi * tv) - math.sin(math.pi)) + 0.3 * (math.cos(2 * math.pi * tv) + 1)
        torch.testing.assert_close(g.means[b, 0], torch.tensor([1.0 + 0.4 * tau, 2.0 - 0.2 * tau ** 2, z]),
                                   atol=1e-6, rtol=0)
        torch.testing.assert_close(g.means[b, 1], torch.zeros(3))
        torch.testing.assert_close(g.quats[b, 0], torch.tensor([1.0, 0.0, 0.0, 0.5 * tau]), atol=1e-6, rtol=0)
        torch.testing.assert_close(g.quats[b, 1], torch.tensor([0.0, 1.0, 0.0, 0.0]))
    # Concretely at t = 0: (0.6, 1.8, 3.6); at t = 0.5 the canonical position.
    torch.testing.assert_close(g.means[0, 0], torch.tensor([0.6, 1.8, 3.6]), atol=1e-6, rtol=0)
    torch.testing.assert_close(g.means[2, 0], torch.tensor([1.0, 2.0, 3.0]), atol=1e-6, rtol=0)


def test_static_config_has_no_motion():
    cfg = TrajectoryConfig(poly_degree=0, n_fourier=0, rot_degree=0)
    model = make_model(n=4, config=cfg)
    assert model.is_static
    assert "motion" not in model.params and "rot_motion" not in model.params
    g = model.at(torch.tensor([0.0, 0.37, 1.0]))
    for b in range(3):
        assert torch.equal(g.means[b], model.params["means"])
        assert torch.equal(g.quats[b], model.params["quats"])
    assert not make_model().is_static


def test_state_round_trip_gives_identical_at(tmp_path):
    cfg = TrajectoryConfig(poly_degree=3, n_fourier=2, rot_degree=2, sh_degree=1)
    model = make_model(n=7, config=cfg)
    with torch.no_grad():
        model.params["motion"].normal_()
        model.params["rot_motion"].normal_()
    state = model.state()
    torch.save(state, tmp_path / "m.pt")
    loaded = TrajectoryGaussians4D.from_state(torch.load(tmp_path / "m.pt", weights_only=True))
    assert loaded.config == cfg
    t = torch.linspace(0, 1, 5)
    a, b = model.at(t), loaded.at(t)
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert set(loaded.params) == set(model.params)
    with pytest.raises(ValueError):
        TrajectoryGaussians4D.from_state({**state, "kind": "hexplane"})


def test_batched_evaluation_equals_per_time():
    model = make_model(n=9, config=TrajectoryConfig(poly_degree=3, n_fourier=2, rot_degree=1))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.params["motion"].normal_(generator=g)
        model.params["rot_motion"].normal_(generator=g)
    t = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0, 1.3])
    batch = model.at(t)
    for b in range(len(t)):
        one = model.at(t[b:b + 1])
        # The batched einsum may round differently from the single-time one: about 1 ulp
        # of float32 on coordinates up to ~20 m (was flaky with an absolute 1e-6 alone).
        torch.testing.assert_close(batch.means[b], one.means[0], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(batch.quats[b], one.quats[0], atol=1e-6, rtol=1e-6)
    # Motion really moves something.
    assert (batch.means[0] - batch.means[4]).abs().max() > 0.1


def test_gradients_reach_motion_params():
    model = make_model(n=3)
    g = model.at(torch.tensor([0.2, 0.9]))
    (g.means.sum() + g.quats.sum()).backward()
    assert model.params["motion"].grad.abs().sum() > 0
    assert model.params["rot_motion"].grad.abs().sum() > 0
    # d(sum means)/d motion[n, m, c] = Σ_t basis_m(t).
    expected = time_basis(torch.tensor([0.2, 0.9]), 3, 2).sum(0)
    torch.testing.assert_close(model.params["motion"].grad[0, :, 0], expected)
