"""The loss as composable terms (backend.optim.loss_terms): weights, schedules, summation."""

import pytest
import torch

from backend.gaussians.hexplane import HexPlaneGaussians4D
from backend.gaussians.trajectories import TrajectoryGaussians4D, static_basis
from backend.optim.loss_terms import (AlphaLoss, ConfidenceWeightedImageLoss, ImageLoss, LossTerm, ModelRegularization,
                                      RenderedBatch, RigidityLoss, SDSLoss, TrainingBatch, total_loss)
from backend.optim.losses import alpha_loss, image_loss
from protocol.config import HexPlaneConfig, TrajectoryConfig


def _model(static=False, n=12):
    g = torch.Generator().manual_seed(0)
    cfg = static_basis(TrajectoryConfig()) if static else TrajectoryConfig()
    model = TrajectoryGaussians4D(torch.randn(n, 3, generator=g), torch.randn(n, 4, generator=g),
                                  torch.randn(n, 3, generator=g), torch.randn(n, generator=g),
                                  torch.randn(n, 1, 3, generator=g), cfg)
    if not static:
        with torch.no_grad():
            model.params["motion"].normal_(generator=g)
    return model


def _batch(step=0, B=2, H=16, W=16, confidence=False):
    g = torch.Generator().manual_seed(1)
    target = torch.rand(B, H, W, 4, generator=g)
    return TrainingBatch(step=step, times=torch.tensor([0.2, 0.8]), viewmats=torch.eye(4).expand(B, 4, 4),
                         Ks=torch.eye(3).expand(B, 3, 3), width=W, height=H, target=target,
                         background=torch.rand(B, 3, generator=g),
                         confidence=torch.rand(B, H, W, generator=g) if confidence else None)


def _rendered(model, batch):
    g = torch.Generator().manual_seed(2)
    colors = torch.rand(batch.target.shape[:3] + (3,), generator=g)
    alphas = torch.rand(batch.target.shape[:3] + (1,), generator=g)
    return RenderedBatch(model.at(batch.times), colors, alphas, {})


def test_batch_composites_the_target_over_its_background():
    b = _batch()
    a = b.target[..., 3:]
    torch.testing.assert_close(b.target_rgb, b.target[..., :3] * a + (1 - a) * b.background[:, None, None, :])


def test_total_is_the_weighted_sum_in_order():
    model = _model()
    batch = _batch()
    r = _rendered(model, batch)
    loss = total_loss([ImageLoss(), AlphaLoss(weight=0.5)], model, batch, r)
    expected = image_loss(r.colors, batch.target_rgb) + 0.5 * alpha_loss(r.alphas, batch.target[..., 3:])
    assert torch.equal(loss, expected)  # bit for bit: the old inline sum
    doubled = total_loss([ImageLoss(weight=2.0), AlphaLoss(weight=0.0)], model, batch, r)
    torch.testing.assert_close(doubled, 2 * image_loss(r.colors, batch.target_rgb))


def test_confidence_weighted_image_needs_confidence_and_uses_it():
    model = _model()
    with pytest.raises(ValueError, match="confidence"):
        ConfidenceWeightedImageLoss().value(model, _batch(), _rendered(model, _batch()))
    batch = _batch(confidence=True)
    r = _rendered(model, batch)
    full = ConfidenceWeightedImageLoss().value(model, batch, r)
    batch.confidence = batch.confidence * 0.5
    torch.testing.assert_close(ConfidenceWeightedImageLoss().value(model, batch, r), 0.5 * full)


def test_rigidity_only_while_the_model_moves_and_draws_its_times():
    moving, static = _model(), _model(static=True)
    gen = torch.Generator().manual_seed(3)
    term = RigidityLoss(weight=1.0, random_times=2, generator=gen)
    assert term.active(0, moving) and not term.active(0, static)
    batch = _batch()
    before = gen.get_state()
    value = term.value(moving, batch, _rendered(moving, batch))
    assert value > 0
    expected = torch.Generator().manual_seed(3)
    expected.set_state(before)
    torch.rand(2, generator=expected)
    assert torch.equal(gen.get_state(), expected.get_state())  # exactly two uniform draws
    # The static model contributes nothing through total_loss.
    only = total_loss([ImageLoss(), term], static, batch, _rendered(static, batch))
    torch.testing.assert_close(only, ImageLoss().value(static, batch, _rendered(static, batch)))


def test_model_regularization_follows_the_model():
    batch = _batch()
    traj = _model()
    assert ModelRegularization().value(traj, batch, _rendered(traj, batch)) is None
    n = 10
    hexm = HexPlaneGaussians4D(torch.randn(n, 3), torch.randn(n, 4), torch.randn(n, 3), torch.randn(n),
                               torch.randn(n, 1, 3), HexPlaneConfig(resolution=[4, 4, 4, 3], multires=[1]))
    hexm.use_deformation = False
    assert ModelRegularization().value(hexm, batch, _rendered(hexm, batch)) is None
    hexm.use_deformation = True
    with torch.no_grad():
        hexm.field.grids[0][3].add_(torch.randn_like(hexm.field.grids[0][3]))
    assert ModelRegularization().value(hexm, batch, _rendered(hexm, batch)) > 0


class _FakeSDS:
    def __init__(self):
        self.steps = []

    def loss(self, model, step, device):
        self.steps.append(step)
        return model.params["sh0"].square().sum()


def test_sds_every_k_steps():
    model = _model()
    fake = _FakeSDS()
    term = SDSLoss(sds=fake, weight=0.1, every=3)
    for step in range(7):
        batch = _batch(step=step)
        total_loss([ImageLoss(), term], model, batch, _rendered(model, batch))
    assert fake.steps == [0, 3, 6]


def test_no_contributing_term_is_an_error():
    class Never(LossTerm):
        def value(self, model, batch, rendered):
            return None

    model = _model()
    with pytest.raises(ValueError, match="no loss term"):
        total_loss([Never()], model, _batch(), _rendered(model, _batch()))
