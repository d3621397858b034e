"""kNN local rigidity: zero for rigid motion, grows with a non-rigid stretch, reaches the
motion coefficients of a trajectory model, and follows densification (N changes)."""

import math

import pytest
import torch

from backend.gaussians.trajectories import TrajectoryConfig, TrajectoryGaussians4D
from backend.optim.rigidity import LocalRigidity, knn

gen = torch.Generator().manual_seed(0)
PTS = torch.rand(300, 3, generator=gen) * 0.4


def rotation(angle: float, axis=(0.3, -0.5, 0.8)) -> torch.Tensor:
    a = torch.tensor(axis)
    a = a / a.norm()
    Kx = torch.tensor([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return torch.eye(3) + math.sin(angle) * Kx + (1 - math.cos(angle)) * Kx @ Kx


def test_knn_matches_brute_force():
    idx, dist = knn(PTS, k=8, chunk=64)
    d = torch.cdist(PTS, PTS)
    d.fill_diagonal_(float("inf"))
    ref = d.topk(8, largest=False)
    assert torch.equal(idx, ref.indices)
    torch.testing.assert_close(dist, ref.values)


@pytest.mark.parametrize("reference", ["canonical", "times"])
def test_zero_for_rigid_motion_positive_for_stretch(reference):
    rigid = LocalRigidity(reference=reference)
    moved = torch.stack([PTS @ rotation(a).T + torch.tensor([0.1 * a, -0.2, a]) for a in (0.0, 0.4, 1.3)])
    assert rigid(PTS, moved).item() == pytest.approx(0.0, abs=1e-6)
    losses = []
    for s in (1.05, 1.2, 1.5):
        stretched = PTS * torch.tensor([s, 1.0, 1.0])       # non-rigid: stretch along x
        losses.append(rigid(PTS, torch.stack([PTS, stretched])).item())
    assert losses[0] > 1e-4 and losses[0] < losses[1] < losses[2]
    # A local tear (one region pushed away) is also penalized.
    torn = PTS.clone()
    torn[PTS[:, 0] > 0.3] += torch.tensor([0.05, 0.0, 0.0])
    assert rigid(PTS, torch.stack([PTS, torn])).item() > 1e-4


def test_weights_favour_close_neighbours():
    rigid = LocalRigidity(lam=None)
    idx, w = rigid.neighbours(PTS)
    _, dist = knn(PTS)
    lam = 1.0 / dist.square().mean()
    torch.testing.assert_close(w, torch.exp(-lam * dist.square()))
    assert (w[:, :-1] >= w[:, 1:]).all()                  # sorted by distance
    torch.testing.assert_close(LocalRigidity(lam=2000.0).neighbours(PTS)[1], torch.exp(-2000.0 * dist.square()))


def test_gradient_reaches_motion_params_and_rigid_motion_is_free():
    cfg = TrajectoryConfig(poly_degree=2, n_fourier=1, rot_degree=1)
    model = TrajectoryGaussians4D(PTS, torch.tensor([[1.0, 0, 0, 0]]).repeat(300, 1), torch.full((300, 3), -4.0),
                                  torch.zeros(300), torch.zeros(300, 1, 3), cfg)
    rigid = LocalRigidity()
    times = torch.tensor([0.0, 0.3, 1.0])
    with torch.no_grad():   # the same translation for every Gaussian: rigid, zero loss
        model.params["motion"][:] = torch.randn(1, 4, 3, generator=gen)
    loss = rigid(model.params["means"], model.at(times).means)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():   # independent per-Gaussian motion: non-rigid
        model.params["motion"].normal_(0.0, 0.05, generator=gen)
    loss = rigid(model.params["means"], model.at(times).means)
    assert loss.item() > 1e-3
    loss.backward()
    g = model.params["motion"].grad
    assert g is not None and g.abs().sum() > 0 and torch.isfinite(g).all()
    # A few descent steps on the motion alone reduce the loss.
    opt = torch.optim.Adam([model.params["motion"]], lr=2e-3)
    for _ in range(20):
        opt.zero_grad()
        rigid(model.params["means"], model.at(times).means).backward()
        opt.step()
    assert rigid(model.params["means"], model.at(times).means).item() < 0.7 * loss.item()


def test_neighbours_recomputed_when_n_changes():
    rigid = LocalRigidity()
    rigid(PTS, PTS[None].repeat(2, 1, 1))
    rigid(PTS, PTS[None].repeat(2, 1, 1))
    assert rigid.rebuilds == 1                           # cached
    more = torch.cat([PTS, PTS[:10]])                    # clones (distance 0 to their source)
    loss = rigid(more, torch.stack([more, more * 1.1]))
    assert rigid.rebuilds == 2 and rigid.neighbours(more)[0].shape == (310, 8)
    assert torch.isfinite(loss) and loss > 0
    # Same N but rows reordered (e.g. a clone and a prune in one refinement): rebuilt too.
    perm = torch.randperm(300, generator=gen)
    rigid(PTS, PTS[None].repeat(2, 1, 1))
    rigid(PTS[perm], PTS[perm][None].repeat(2, 1, 1))
    assert rigid.rebuilds == 4
    with pytest.raises(ValueError):
        LocalRigidity(reference="times")(PTS, PTS[None])
    with pytest.raises(ValueError):
        rigid(PTS, PTS[None, :10])
