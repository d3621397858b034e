"""Densification through gsplat's DefaultStrategy on the trajectory model: which Gaussians
are cloned, split and pruned, and that every per-Gaussian tensor (motion included) and the
optimizer state follow."""

import math

import pytest
import torch

from backend.cameras import c2w_blender_to_viewmat, look_at_c2w
from backend.gaussians.trajectories import TrajectoryConfig, TrajectoryGaussians4D
from backend.optim.densify import Densifier, make_default_strategy
from backend.render.rasterize import rasterize

N = 10
SMALL, LARGE = 0.005, 0.05          # vs grow_scale3d (0.01) * scene_scale (1.0)
HIGH = [1, 3, 6, 8]                 # Gaussians with large 2D gradients
PRUNED = 9                          # opacity below prune_opa


def make_model():
    cfg = TrajectoryConfig(poly_degree=2, n_fourier=1, rot_degree=1)
    means = torch.arange(N, dtype=torch.float32)[:, None].repeat(1, 3) * 0.1
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(N, 1)
    scales = torch.full((N, 3), math.log(SMALL))
    scales[5:] = math.log(LARGE)
    opac = torch.full((N,), 2.0)
    opac[PRUNED] = torch.logit(torch.tensor(0.001))
    sh = torch.zeros(N, 1, 3)
    model = TrajectoryGaussians4D(means, quats, scales, opac, sh, cfg)
    with torch.no_grad():
        # Tag every Gaussian: motion[i] == i everywhere, sh0[i] == i.
        model.params["motion"].copy_(torch.arange(N, dtype=torch.float32)[:, None, None].expand(N, 4, 3))
        model.params["sh0"].copy_(torch.arange(N, dtype=torch.float32)[:, None, None].expand(N, 1, 3))
    return model


def make_optimizers(model):
    return {k: torch.optim.Adam([p], lr=1e-3) for k, p in model.params.items()}


def warm_up_adam(model, opts):
    """One optimizer step so every Adam has exp_avg/exp_avg_sq state of shape [N, ...]."""
    g = model.at(torch.tensor([0.3]))
    loss = g.means.square().sum() + g.quats.sum() + g.log_scales.sum() + g.opacity_logits.sum() + g.sh.sum()
    loss.backward()
    for opt in opts.values():
        opt.step()
        opt.zero_grad()
    with torch.no_grad():  # restore the tags Adam moved
        model.params["motion"].copy_(torch.arange(N, dtype=torch.float32)[:, None, None].expand(N, 4, 3))
        model.params["sh0"].copy_(torch.arange(N, dtype=torch.float32)[:, None, None].expand(N, 1, 3))


def fake_info(n=N, B=2, high=HIGH, grad=1e-3, width=64, height=48):
    means2d = torch.zeros(B, n, 2, requires_grad=True)
    g = torch.zeros(B, n, 2)
    g[:, high] = grad
    means2d.grad = g
    radii = torch.full((B, n, 2), 3, dtype=torch.int32)
    return {"means2d": means2d, "radii": radii, "width": width, "height": height, "n_cameras": B,
            "gaussian_ids": None}


def setup():
    model = make_model()
    opts = make_optimizers(model)
    warm_up_adam(model, opts)
    strategy = make_default_strategy(refine_start=0, refine_stop=1000, refine_every=10)
    dens = Densifier(strategy, scene_scale=1.0)
    dens.check(model.params, opts)
    return model, opts, dens


def tags(model):
    return model.params["motion"][:, 0, 0].round().long().tolist()


def test_strategy_thresholds_as_documented():
    s = make_default_strategy(refine_start=100, refine_stop=900, refine_every=50, grow_grad2d=3e-4, prune_opa=0.02)
    assert (s.refine_start_iter, s.refine_stop_iter, s.refine_every) == (100, 900, 50)
    assert s.grow_grad2d == 3e-4 and s.prune_opa == 0.02
    assert s.reset_every >= 10 ** 9  # opacity reset disabled


def test_clone_split_prune_exactly_the_selected_gaussians():
    model, opts, dens = setup()
    before = {k: v.detach().clone() for k, v in model.params.items()}
    dens.post_backward(model.params, opts, step=10, info=fake_info())
    # 2 clones (1, 3: small) + 2 net from splits (6, 8: large, each -> 2) - 1 pruned (9).
    assert model.num_gaussians == N + 2 + 2 - 1
    for k, v in model.params.items():
        assert v.shape[0] == model.num_gaussians, k
        assert v.shape[1:] == before[k].shape[1:], k
    # gsplat order: originals minus split and pruned, then clones, then the split halves.
    assert tags(model) == [0, 1, 2, 3, 4, 5, 7, 1, 3, 6, 8, 6, 8]
    # Every per-Gaussian tensor moved together (sh0 and motion carry the same tag).
    assert model.params["sh0"][:, 0, 0].round().long().tolist() == tags(model)
    assert (model.params["motion"] == model.params["motion"][:, :1, :1]).all()
    # Clones are exact copies.
    for new, old in ((7, 1), (8, 3)):
        for k in model.params:
            assert torch.equal(model.params[k][new], before[k][old]), k
    # Split halves: scale / 1.6, same opacity and motion, positions moved off the original.
    for new, old in ((9, 6), (10, 8), (11, 6), (12, 8)):
        torch.testing.assert_close(model.params["scales"][new], before["scales"][old] - math.log(1.6))
        assert torch.equal(model.params["opacities"][new], before["opacities"][old])
        assert torch.equal(model.params["rot_motion"][new], before["rot_motion"][old])
        assert (model.params["means"][new] - before["means"][old]).norm() > 0
        assert (model.params["means"][new] - before["means"][old]).abs().max() < 6 * LARGE
    # Untouched ones are unchanged; the pruned one is gone.
    for new, old in enumerate([0, 1, 2, 3, 4, 5, 7]):
        assert torch.equal(model.params["means"][new], before["means"][old])
    assert (torch.sigmoid(model.params["opacities"]) >= 0.005).all()


def test_optimizer_state_follows_and_training_continues():
    model, opts, dens = setup()
    dens.post_backward(model.params, opts, step=10, info=fake_info())
    n = model.num_gaussians
    for k, opt in opts.items():
        (p,) = opt.param_groups[0]["params"]
        assert p is model.params[k], k
        st = opt.state[p]
        assert st["exp_avg"].shape == p.shape and st["exp_avg_sq"].shape == p.shape, k
        # New Gaussians start with zero moments; kept ones keep theirs.
        assert (st["exp_avg"][7:] == 0).all(), k
    dens.check(model.params, opts)
    g = model.at(torch.tensor([0.0, 1.0]))
    assert g.means.shape == (2, n, 3)
    g.means.sum().backward()
    for opt in opts.values():
        opt.step()
    assert model.params["motion"].grad.shape[0] == n


def test_no_refinement_outside_refine_steps():
    model, opts, dens = setup()
    dens.post_backward(model.params, opts, step=5, info=fake_info())   # not a multiple of 10
    assert model.num_gaussians == N
    assert dens.state["count"].tolist() == [2.0] * N
    # Accumulated: mean over cameras of |grad| scaled to NDC (x by W/2·C, y by H/2·C).
    expected = math.hypot(1e-3 * 32 * 2, 1e-3 * 24 * 2) * 2
    assert dens.state["grad2d"][HIGH].tolist() == pytest.approx([expected] * len(HIGH), rel=1e-5)
    assert dens.state["grad2d"][0].item() == 0.0
    # The next refine step uses the accumulated average, then resets it.
    dens.post_backward(model.params, opts, step=10, info=fake_info(high=[]))
    assert model.num_gaussians == N + 2 + 2 - 1
    assert (dens.state["grad2d"] == 0).all() and (dens.state["count"] == 0).all()


def test_low_gradients_only_prune():
    model, opts, dens = setup()
    # Average NDC gradient (1e-6 * 64 ≈ 6e-5) below grow_grad2d = 2e-4: nothing grows.
    dens.post_backward(model.params, opts, step=10, info=fake_info(high=list(range(N)), grad=1e-6))
    assert model.num_gaussians == N - 1
    assert tags(model) == list(range(9))


def test_invisible_gaussians_do_not_grow():
    model, opts, dens = setup()
    info = fake_info()
    info["radii"][:, 1] = 0   # Gaussian 1 has a gradient but is culled everywhere
    dens.post_backward(model.params, opts, step=10, info=info)
    assert model.num_gaussians == N + 1 + 2 - 1
    assert tags(model) == [0, 1, 2, 3, 4, 5, 7, 3, 6, 8, 6, 8]


def test_with_real_render_info():
    """End to end with the CPU rasterizer: a batch of (time, camera) images, real means2d
    gradients, flattened by the Densifier."""
    torch.manual_seed(0)
    n = 30
    cfg = TrajectoryConfig(poly_degree=1, n_fourier=0, rot_degree=0)
    model = TrajectoryGaussians4D(torch.randn(n, 3) * 0.3, torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                                  torch.full((n, 3), math.log(0.05)), torch.zeros(n), torch.zeros(n, 1, 3), cfg)
    opts = make_optimizers(model)
    dens = Densifier(make_default_strategy(refine_start=0, refine_stop=100, refine_every=1, grow_grad2d=1e-9),
                     scene_scale=1.0)
    dens.check(model.params, opts)
    vm = torch.stack([c2w_blender_to_viewmat(look_at_c2w([0.0, -3.0, 0.0], [0.0, 0.0, 0.0])),
                      c2w_blender_to_viewmat(look_at_c2w([3.0, 0.0, 0.5], [0.0, 0.0, 0.0]))])
    K = torch.tensor([[30.0, 0, 16], [0, 30.0, 16], [0, 0, 1]]).expand(2, 3, 3)
    g = model.at(torch.tensor([0.2, 0.7])).rasterization_inputs()
    colors, alphas, info = rasterize(g["means"], g["quats"], g["scales"], g["opacities"], g["colors"], vm, K, 32, 32)
    dens.pre_backward(model.params, opts, 1, info)
    ((colors - 0.3) ** 2).mean().backward()
    assert info["means2d"].grad.shape == (2, n, 2)
    visible = (info["radii"] > 0).all(-1).any(0)
    graded = (info["means2d"].grad.norm(dim=-1) > 0).any(0) & visible
    n_grow = int(graded.sum())
    assert n_grow > 10
    dens.post_backward(model.params, opts, 1, info)
    # All scales 0.05 > 0.01: every visible Gaussian with a gradient is split (N + n_grow).
    assert model.num_gaussians == n + n_grow
    for k, v in model.params.items():
        assert v.shape[0] == n + n_grow, k


def test_growth_is_capped_at_max_gaussians_largest_gradients_first():
    """A budget of 2 over N lets only the two largest-gradient candidates grow (one clone,
    one split here), where uncapped all four would; pruning still runs."""
    model = make_model()
    opts = make_optimizers(model)
    warm_up_adam(model, opts)
    dens = Densifier(make_default_strategy(refine_start=0, refine_stop=1000, refine_every=10,
                                           max_gaussians=N + 2), scene_scale=1.0)
    info = fake_info()
    info["means2d"].grad[:, 3] = 3e-3  # small: cloned
    info["means2d"].grad[:, 8] = 2e-3  # large: split
    dens.post_backward(model.params, opts, step=10, info=info)
    # +1 clone (3) +1 net from the split (8) -1 pruned (9).
    assert model.num_gaussians == N + 1 + 1 - 1
    assert tags(model) == [0, 1, 2, 3, 4, 5, 6, 7, 3, 8, 8]
    # The prune freed one place: the next refinement grows exactly one, then none.
    for step in (20, 30):
        dens.post_backward(model.params, opts, step=step, info=fake_info(n=model.num_gaussians, high=[0, 1, 2]))
        assert model.num_gaussians == N + 2
