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
    assert set(stats) == {"iterations", "planned_iterations", "seconds", "it_per_s", "n_gaussians", "final_loss",
                          "loss_curve", "sds_steps"}
    assert stats["iterations"] == stats["planned_iterations"] == 12
    assert [s for s, _ in stats["loss_curve"]] == [0, 10, 11] and stats["sds_steps"] == 0
    assert stats["n_gaussians"] == model.num_gaussians and stats["final_loss"] == stats["loss_curve"][-1][1]
    assert events[-1].step == 12 and events[-1].loss == pytest.approx(stats["final_loss"])


def test_time_limit_stops_the_fit_at_a_step_boundary(footage, monkeypatch):
    """``optimization.time_limit_s`` bounds the whole stage (initialization included): with
    steps slowed to about 50 ms and a 0.6 s limit, the fit stops after a few of its 1000
    steps, within the limit plus about one step, and says so in its progress."""
    import time

    slow = Trainer.step

    def step(self, i, progress=None):
        time.sleep(0.05)
        return slow(self, i, progress)

    monkeypatch.setattr(Trainer, "step", step)
    events = []
    t0 = time.monotonic()
    model, stats = reconstruct(footage, reconstruct_config("tiny", {"iterations": 1000, "time_limit_s": 0.6}),
                               JobContext(on_progress=events.append, min_interval_s=0.0))
    elapsed = time.monotonic() - t0
    assert 1 <= stats["iterations"] < 20 and stats["planned_iterations"] == 1000
    assert elapsed < 0.6 + 0.3
    assert "time limit" in events[-1].message and events[-1].step == stats["iterations"]


def test_fit_schedule_counts_steps_or_the_larger_of_steps_and_time():
    from backend.pipeline.reconstruct.schedule import FitSchedule

    now = [0.0]
    by_steps = FitSchedule(100, clock=lambda: now[0])
    budget = FitSchedule(100, time_budget_s=10.0, clock=lambda: now[0])
    now[0] = 4.0
    assert by_steps.progress(25) == 0.25 and not by_steps.finished(99, 0.99) and by_steps.finished(100, 1.0)
    assert budget.progress(25) == 0.4 and budget.progress(60) == 0.6  # time ahead, then steps ahead
    now[0] = 12.0
    assert budget.progress(30) == 1.0 and budget.finished(30, 1.0) and not budget.finished(0, 1.0)
    with pytest.raises(ValueError):
        FitSchedule(0)


def test_progress_places_every_phase_of_a_time_budgeted_step(footage):
    """On a time budget the run's progress, not the step, switches coarse-to-fine, ends the
    warm-up and densification, and sets the decaying rates to start · final ** p."""
    trainer, _ = _trainer(footage, {"representation": "control_points", "iterations": 1000, "lr_final_factor": 0.01,
                                    "model.control_points.static_fraction": 0.2, "low_res_fraction": 0.5,
                                    "low_res_factor": 2, "densification.enabled": True,
                                    "densification.stop_fraction": 0.7, "densification.start": 0,
                                    "densification.every": 1})
    opts = trainer.optimizer.per_gaussian
    start = opts["means"].param_groups[0]["lr"]
    field_start = [g["lr"] for g in trainer.optimizer.field.param_groups]
    widths = []
    real_batch = trainer.data.batch
    trainer.data.batch = lambda *a: widths.append(real_batch(*a).width) or real_batch(*a)
    calls = []
    real_post = trainer.densifier.strategy.step_post_backward
    trainer.densifier.strategy.step_post_backward = lambda *a, **k: calls.append(a[3]) or real_post(*a, **k)
    phases = []
    for step, p in enumerate([0.1, 0.3, 0.6, 0.8]):  # step 0..3: far ahead of 3/1000 in time
        trainer.step(step, p)
        phases.append(trainer.model.use_deformation)
        assert opts["means"].param_groups[0]["lr"] == pytest.approx(start * 0.01 ** p)
        assert [g["lr"] for g in trainer.optimizer.field.param_groups] == pytest.approx(
            [f * 0.01 ** p for f in field_start])
    assert phases == [False, True, True, True]
    assert widths[0] == widths[1] < widths[2] == widths[3]
    assert calls == [0, 1, 2]  # refinement ends at progress 0.7, step 3 is not refined


def test_time_budget_ends_the_fit_with_its_schedule_complete(footage, monkeypatch):
    """A budget of 0.6 s with 50 ms steps: the fit ends near the budget, far before its
    10000 steps, with the position rates decayed to (about) their final factor."""
    import time

    slow = Trainer.step
    seen = {}

    def step(self, i, progress=None):
        time.sleep(0.05)
        seen["optimizer"] = self.optimizer
        seen.setdefault("progress", []).append(progress)
        return slow(self, i, progress)

    monkeypatch.setattr(Trainer, "step", step)
    events = []
    t0 = time.monotonic()
    model, stats = reconstruct(footage, reconstruct_config("tiny", {"iterations": 10000, "time_budget_s": 0.6,
                                                                   "lr_final_factor": 0.01}),
                               JobContext(on_progress=events.append, min_interval_s=0.0))
    assert time.monotonic() - t0 < 0.6 + 0.3
    assert 1 <= stats["iterations"] < 20 and stats["planned_iterations"] == 10000
    ps = seen["progress"]
    assert ps == sorted(ps) and ps[-1] > 0.75
    assert "time budget" in events[-1].message and events[-1].step == events[-1].total == 10000
