"""STAG4D adaptive densification: exactly the top ⌊0.025·N⌋ Gaussians by average 2D
gradient are grown (cloned if small, split if large), transparent / too large / too small
ones are pruned, every per-Gaussian tensor and the Adam state follow, nothing happens
outside the schedule, opacities are never reset; and the scale-ratio cap."""

import math

import torch

from backend.cameras import c2w_blender_to_viewmat, look_at_c2w
from backend.gaussians.trajectories import TrajectoryConfig, TrajectoryGaussians4D
from backend.optim.densify import Densifier
from backend.optim.stag4d_densify import STAG4DStrategy, cap_scale_ratio
from backend.render.rasterize import rasterize

N = 400
K = 10                                   # ⌊0.025 · 400⌋
SMALL, MID, LARGE = 0.005, 0.02, 0.05    # vs grow_scale3d (0.01) · scene_scale (1.0)
gen = torch.Generator().manual_seed(0)
PERM = torch.randperm(N, generator=gen)
GRAD = torch.empty(N)
GRAD[PERM] = torch.arange(1, N + 1, dtype=torch.float32) * 1e-6   # distinct per-Gaussian gradients
TOP = PERM[-K:].sort().values                                     # the K largest
TOP_SMALL, TOP_LARGE = TOP[:5], TOP[5:]
LOW = PERM[:40]                                                   # small gradients: prune candidates
TRANSPARENT, TOO_BIG, TOO_SMALL = LOW[:4], LOW[4:7], LOW[7:9]


def make_model():
    cfg = TrajectoryConfig(poly_degree=2, n_fourier=1, rot_degree=1)
    means = torch.randn(N, 3, generator=gen) * 0.3
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(N, 1)
    scales = torch.full((N, 3), math.log(MID))
    scales[TOP_SMALL] = math.log(SMALL)
    scales[TOP_LARGE] = math.log(LARGE)
    scales[TOO_BIG, 1] = math.log(0.2)      # max axis decides: 0.2 > 0.1
    scales[TOO_SMALL] = math.log(0.0005)    # < 0.001
    opac = torch.zeros(N)
    opac[TRANSPARENT] = torch.logit(torch.tensor(0.005))
    model = TrajectoryGaussians4D(means, quats, scales, opac, torch.zeros(N, 1, 3), cfg)
    tag(model)
    return model


def tag(model):
    n = model.num_gaussians
    with torch.no_grad():
        ids = torch.arange(n, dtype=torch.float32)
        model.params["motion"].copy_(ids[:, None, None].expand_as(model.params["motion"]))
        model.params["rot_motion"].copy_(ids[:, None, None].expand_as(model.params["rot_motion"]))
        model.params["sh0"].copy_(ids[:, None, None].expand_as(model.params["sh0"]))


def tags(model, key="motion"):
    return model.params[key].reshape(model.num_gaussians, -1)[:, 0].round().long()


def setup(**kw):
    model = make_model()
    opts = {k: torch.optim.Adam([p], lr=1e-3) for k, p in model.params.items()}
    g = model.at(torch.tensor([0.2, 0.9]))
    (g.means.square().sum() + g.quats.sum() + g.log_scales.sum() + g.opacity_logits.sum()
     + g.sh.sum()).backward()
    for opt in opts.values():   # one step so every Adam has [N, ...] moments
        opt.step()
        opt.zero_grad()
    tag(model)
    kw = {"refine_start": 100, "refine_stop": 300, "refine_every": 100} | kw
    strategy = STAG4DStrategy(**kw)
    dens = Densifier(strategy, scene_scale=1.0)
    dens.check(model.params, opts)
    return model, opts, dens


def fake_info(grad=GRAD, B=2, width=64, height=48, visible=None):
    """Render info as the rasterizer returns it: means2d [B, N, 2] with a gradient whose
    per-Gaussian norm, after gsplat's NDC scaling, is proportional to ``grad``."""
    n = len(grad)
    means2d = torch.zeros(B, n, 2, requires_grad=True)
    means2d.grad = grad[None, :, None].expand(B, n, 2).clone()
    radii = torch.full((B, n, 2), 3, dtype=torch.int32)
    if visible is not None:
        radii[:, ~visible] = 0
    return {"means2d": means2d, "radii": radii, "width": width, "height": height, "n_cameras": B}


def test_top_fraction_grown_and_pruned_exactly():
    model, opts, dens = setup()
    before = {k: v.detach().clone() for k, v in model.params.items()}
    dens.post_backward(model.params, opts, step=100, info=fake_info())
    pruned = torch.cat([TRANSPARENT, TOO_BIG, TOO_SMALL])
    assert model.num_gaussians == N + 5 + 5 - len(pruned)
    assert dens.state["last_refine"] == {"step": 100, "n_dupli": 5, "n_split": 5, "n_prune": 9,
                                         "n": model.num_gaussians}
    # gsplat order: kept originals (minus split, minus pruned), then clones, then split halves.
    keep = [i for i in range(N) if i not in set(TOP_LARGE.tolist()) | set(pruned.tolist())]
    expected = keep + TOP_SMALL.tolist() + TOP_LARGE.tolist() * 2
    assert tags(model).tolist() == expected
    for key in ("rot_motion", "sh0"):           # every per-Gaussian tensor moved together
        assert tags(model, key).tolist() == expected, key
    for k, v in model.params.items():
        assert v.shape == (model.num_gaussians,) + before[k].shape[1:], k
    n_keep = len(keep)
    # Clones are exact copies of the small top-gradient Gaussians.
    for row, old in zip(range(n_keep, n_keep + 5), TOP_SMALL.tolist()):
        for k in model.params:
            assert torch.equal(model.params[k][row], before[k][old]), k
    # Split halves: scales / 1.6, same motion, means moved off the original.
    halves = model.params["scales"][n_keep + 5:]
    torch.testing.assert_close(halves, before["scales"][TOP_LARGE].repeat(2, 1) - math.log(1.6))
    assert torch.equal(model.params["motion"][n_keep + 5:], before["motion"][TOP_LARGE].repeat(2, 1, 1))
    assert ((model.params["means"][n_keep + 5:] - before["means"][TOP_LARGE].repeat(2, 1)).norm(dim=-1) > 0).all()
    # Survivors satisfy the prune rules; accumulators follow N and were reset.
    world = model.params["scales"].exp().max(-1).values
    assert (torch.sigmoid(model.params["opacities"]) >= 0.01).all()
    assert ((world >= 0.001) & (world <= 0.1)).all()
    assert dens.state["grad2d"].shape == (model.num_gaussians,) and (dens.state["grad2d"] == 0).all()


def test_threshold_is_the_rank_value_of_the_average_gradient():
    model, opts, dens = setup()
    # Two accumulation steps. Second step: the Gaussian ranked K+1 gets a 100x gradient
    # (its average jumps into the top), and the largest one is invisible (its average,
    # sum / visible count, stays the largest but one; a plain sum would drop it).
    dens.post_backward(model.params, opts, step=50, info=fake_info())
    grad2 = GRAD.clone()
    grad2[PERM[-K - 1]] *= 100
    visible = torch.ones(N, dtype=torch.bool)
    visible[PERM[-1]] = False
    dens.post_backward(model.params, opts, step=60, info=fake_info(grad=grad2, visible=visible))
    assert model.num_gaussians == N
    mask = dens.strategy.grow_mask(model.params, dens.state)
    expected = torch.cat([PERM[-K - 1:-K], PERM[-K + 1:]]).sort().values   # PERM[-K] drops out
    assert mask.sum() == K and torch.equal(torch.where(mask)[0], expected)
    avg = dens.state["grad2d"] / dens.state["count"].clamp_min(1)
    assert avg[mask].min() >= avg[~mask].max()
    # Fewer than K Gaussians with any gradient: only those grow.
    dens2 = setup()[2]
    few = torch.zeros(N)
    few[TOP[:3]] = 1e-3
    dens2.post_backward(model.params, opts, step=50, info=fake_info(grad=few))
    assert torch.where(dens2.strategy.grow_mask(model.params, dens2.state))[0].tolist() == TOP[:3].tolist()


def test_nothing_happens_outside_the_schedule():
    model, opts, dens = setup()
    before = {k: v.detach().clone() for k, v in model.params.items()}
    for step in (0, 1, 99, 101, 150, 250, 301, 400, 500, 3000):   # not refine steps
        dens.post_backward(model.params, opts, step=step, info=fake_info())
    assert model.num_gaussians == N
    for k in model.params:
        assert torch.equal(model.params[k], before[k]), k
    assert dens.state["last_refine"] is None
    # Only steps in (refine_start - refine_every, refine_stop] accumulate: 1, 99, 101, 150, 250.
    assert dens.state["count"].max().item() == 5 * 2
    # With N = 39, ⌊0.025·39⌋ = 0: a refine step grows nothing (but still prunes).
    small, sopts, sdens = setup()
    keep = torch.zeros(N, dtype=torch.bool)
    keep[:39] = True
    from gsplat.strategy.ops import remove
    remove(small.params, sopts, {}, ~keep)
    sdens.post_backward(small.params, sopts, step=100, info=fake_info(grad=GRAD[:39]))
    assert sdens.state["last_refine"]["n_dupli"] + sdens.state["last_refine"]["n_split"] == 0


def test_no_opacity_reset_ever():
    # gsplat 1.5.3's reset condition as written: a chained comparison that is always False.
    for step in (3000, 6000, 9000):
        assert not (step % 3000 == 0 & step > 0)
    model, opts, dens = setup(refine_start=100, refine_stop=9000, refine_every=100)
    opa = dict(zip(tags(model).tolist(), model.params["opacities"].detach().clone()))
    for step in (100, 3000, 6000, 9000):
        dens.post_backward(model.params, opts, step=step, info=fake_info(grad=torch.rand(model.num_gaussians)))
    assert model.num_gaussians > N
    for tag_, value in zip(tags(model).tolist(), model.params["opacities"].detach()):
        assert value == opa[tag_]                  # every survivor keeps its opacity


def test_prune_scale_unit():
    model, _, dens = setup()
    s = dens.strategy
    base = s.prune_mask(model.params)
    assert torch.equal(torch.where(base)[0], torch.cat([TRANSPARENT, TOO_BIG, TOO_SMALL]).sort().values)
    # Scene 10x larger: 0.2 m is no longer too big, 0.005 and 0.0005 m are too small.
    big = STAG4DStrategy(scale_unit=10.0).prune_mask(model.params)
    world = model.params["scales"].exp().max(-1).values
    assert not big[TOO_BIG].any() and big[TOO_SMALL].all()
    assert torch.equal(big, (torch.sigmoid(model.params["opacities"]) < 0.01) | (world < 0.01) | (world > 1.0))


def test_optimizer_state_follows_and_training_continues():
    model, opts, dens = setup()
    dens.post_backward(model.params, opts, step=100, info=fake_info())
    n = model.num_gaussians
    for k, opt in opts.items():
        (p,) = opt.param_groups[0]["params"]
        assert p is model.params[k], k
        st = opt.state[p]
        assert st["exp_avg"].shape == p.shape and st["exp_avg_sq"].shape == p.shape, k
        assert (st["exp_avg"][n - 15:] == 0).all(), k       # 5 clones + 10 halves start at 0
    dens.check(model.params, opts)
    model.at(torch.tensor([0.0, 1.0])).means.sum().backward()
    for opt in opts.values():
        opt.step()
    assert model.params["motion"].grad.shape[0] == n


def test_with_real_render_info():
    torch.manual_seed(0)
    n = 120
    cfg = TrajectoryConfig(poly_degree=1, n_fourier=0, rot_degree=0)
    model = TrajectoryGaussians4D(torch.randn(n, 3) * 0.3, torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                                  torch.full((n, 3), math.log(0.05)), torch.zeros(n), torch.zeros(n, 1, 3), cfg)
    opts = {k: torch.optim.Adam([p], lr=1e-3) for k, p in model.params.items()}
    dens = Densifier(STAG4DStrategy(refine_start=1, refine_stop=1, refine_every=1), scene_scale=1.0)
    vm = torch.stack([c2w_blender_to_viewmat(look_at_c2w([0.0, -3.0, 0.0], [0.0, 0.0, 0.0])),
                      c2w_blender_to_viewmat(look_at_c2w([3.0, 0.0, 0.5], [0.0, 0.0, 0.0]))])
    Kmat = torch.tensor([[30.0, 0, 16], [0, 30.0, 16], [0, 0, 1]]).expand(2, 3, 3)
    g = model.at(torch.tensor([0.2, 0.7])).rasterization_inputs()
    colors, _, info = rasterize(g["means"], g["quats"], g["scales"], g["opacities"], g["colors"], vm, Kmat, 32, 32)
    dens.pre_backward(model.params, opts, 1, info)
    ((colors - 0.3) ** 2).mean().backward()
    dens.post_backward(model.params, opts, 1, info)
    # ⌊0.025·120⌋ = 3 Gaussians, all large (0.05 > 0.01): split, N + 3.
    assert dens.state["last_refine"]["n_split"] == 3 and model.num_gaussians == n + 3
    for k, v in model.params.items():
        assert v.shape[0] == n + 3, k


def test_cap_scale_ratio():
    log_s = torch.nn.Parameter(torch.randn(500, 3, generator=gen) * 2.0)
    before = log_s.detach().clone()
    out = cap_scale_ratio(log_s)
    assert out is log_s and log_s.requires_grad
    s = log_s.detach().exp()
    assert (s.max(-1).values / s.min(-1).values <= 7.5 * (1 + 1e-5)).all()
    assert torch.equal(log_s.detach().max(-1).values, before.max(-1).values)   # largest axis kept
    ok = (before.max(-1).values - before.min(-1).values) <= math.log(7.5)
    assert ok.any() and torch.equal(log_s.detach()[ok], before[ok])            # compliant rows untouched
    assert (log_s.detach() >= before).all()
    torch.testing.assert_close(cap_scale_ratio(torch.log(torch.tensor([[1.0, 0.01, 1.0]])), 2.0).exp(),
                               torch.tensor([[1.0, 0.5, 1.0]]))


def test_growth_is_capped_at_max_gaussians():
    """With a cap 3 above N, only the 3 largest of the top-2.5 % grow; pruning is unchanged."""
    model, opts, dens = setup(max_gaussians=N + 3)
    dens.post_backward(model.params, opts, step=100, info=fake_info())
    n_dupli, n_split = dens.state["last_refine"]["n_dupli"], dens.state["last_refine"]["n_split"]
    assert n_dupli + n_split == 3
    assert model.num_gaussians == N + 3 - 9
    n_keep = model.num_gaussians - n_dupli - 2 * n_split
    assert set(tags(model)[n_keep:].tolist()) == set(PERM[-3:].tolist())  # the 3 largest gradients
