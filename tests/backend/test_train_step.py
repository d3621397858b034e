"""The reconstruct stage's training step (backend.pipeline.reconstruct.train.Trainer): its
random draws, determinism, the model's schedule, the optimizers and the stage's stats."""

import inspect

import pytest
import torch

from backend.optim.optimizer import ModelOptimizer
from backend.pipeline.context import JobContext
from backend.pipeline.ingest import load_footage
from backend.pipeline.reconstruct import init_model, make_loss_terms, reconstruct, scene_bounds
from backend.pipeline.reconstruct.train import Trainer, make_densifier
from backend.pipeline.reconstruct.training_data import TrainingData
from protocol.presets import reconstruct_config
from tests.helpers.footage import make_tiny_footage


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    return load_footage(make_tiny_footage(tmp_path_factory.mktemp("f"), n_cams=4, n_times=3, size=32), "train")


def _trainer(footage, options):
    cfg = reconstruct_config("tiny", options)
    gen = torch.Generator().manual_seed(cfg.optimization.seed)
    torch.manual_seed(cfg.optimization.seed)
    model = init_model(footage, cfg.model, gen)
    _, radius = scene_bounds(footage)
    data = TrainingData(footage, cfg.data, cfg.optimization.iterations, "cpu")
    trainer = Trainer(model, data, make_loss_terms(cfg, gen), ModelOptimizer(model, cfg.optimization, radius),
                      make_densifier(cfg.densification, cfg.optimization.iterations, radius), gen,
                      cfg.optimization.iterations, cfg.optimization.batch_size)
    return trainer, gen


def test_step_draws_batch_then_backgrounds_and_is_deterministic(footage):
    trainer, gen = _trainer(footage, {})
    state = gen.get_state()
    loss = trainer.step(0)
    assert loss > 0 and torch.isfinite(torch.tensor(loss))
    replay = torch.Generator()
    replay.set_state(state)
    torch.randint(0, len(footage), (2,), generator=replay)
    torch.rand(2, 3, generator=replay)
    assert torch.equal(gen.get_state(), replay.get_state())
    other, _ = _trainer(footage, {})
    assert other.step(0) == loss
    before = trainer.model.params["means"].detach().clone()
    trainer.step(1)
    assert not torch.equal(before, trainer.model.params["means"])  # the optimizers stepped


def test_hexplane_coarse_phase_runs_through_the_model_hook(footage):
    trainer, _ = _trainer(footage, {"representation": "hexplane", "iterations": 10,
                                    "model.hexplane.coarse_fraction": 0.3})
    seen = []
    for step in range(5):
        trainer.step(step)
        seen.append(trainer.model.use_deformation)
    assert seen == [False, False, False, True, True]


def test_position_rates_decay_to_the_final_factor(footage):
    trainer, _ = _trainer(footage, {"iterations": 4, "lr_final_factor": 0.0625})
    opts = trainer.optimizer.per_gaussian
    start = {k: o.param_groups[0]["lr"] for k, o in opts.items()}
    for step in range(4):
        trainer.step(step)
    assert opts["means"].param_groups[0]["lr"] == pytest.approx(start["means"] * 0.0625)
    assert opts["motion"].param_groups[0]["lr"] == pytest.approx(start["motion"] * 0.0625)
    assert opts["scales"].param_groups[0]["lr"] == start["scales"]


def test_step_function_fits_on_one_screen_and_never_names_a_representation():
    source = inspect.getsource(Trainer.step)
    assert len(source.splitlines()) <= 40
    for word in ("hexplane", "HexPlane", "Trajectory", "is_static", "use_deformation"):
        assert word not in source


def test_reconstruct_reports_the_same_stats(footage):
    events = []
    model, stats = reconstruct(footage, reconstruct_config("tiny", {"iterations": 12}),
                               JobContext(on_progress=events.append, min_interval_s=0.0))
    assert set(stats) == {"iterations", "seconds", "it_per_s", "n_gaussians", "final_loss", "loss_curve", "sds_steps"}
    assert [s for s, _ in stats["loss_curve"]] == [0, 10, 11] and stats["sds_steps"] == 0
    assert stats["n_gaussians"] == model.num_gaussians and stats["final_loss"] == stats["loss_curve"][-1][1]
    assert events[-1].step == 12 and events[-1].loss == pytest.approx(stats["final_loss"])
