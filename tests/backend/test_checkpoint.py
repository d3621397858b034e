"""Fit checkpoints (backend.pipeline.reconstruct.checkpoint): a fit interrupted at step k and
resumed from its checkpoint ends with exactly the parameters of the uninterrupted fit."""

import threading
import time

import pytest
import torch

from backend.errors import JobCancelled
from backend.pipeline.context import JobContext
from backend.pipeline.ingest import load_footage
from backend.pipeline.reconstruct import reconstruct
from backend.pipeline.reconstruct.checkpoint import FitCheckpoint
from protocol.presets import reconstruct_config
from tests.helpers.footage import make_tiny_footage

ITERATIONS = 30


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    torch.set_num_threads(2)
    return load_footage(make_tiny_footage(tmp_path_factory.mktemp("f"), n_cams=4, n_times=3, size=32), "train")


def _cfg(options):
    base = {"iterations": ITERATIONS, "densification.enabled": True, "densification.start": 6, "densification.every": 5,
            "densification.grow_grad2d": 1e-3, "checkpoint_every_s": 0}
    return reconstruct_config("tiny", {**base, **options})


def _fit_interrupted(footage, cfg, ckpt_dir, stop_at):
    """Cancel the fit once it reports ``stop_at`` steps done; the cancel saves the checkpoint."""
    ev = threading.Event()

    def on_progress(pe):
        if pe.step >= stop_at and pe.message is None:
            ev.set()

    ctx = JobContext(on_progress=on_progress, cancel_event=ev, min_interval_s=0.0, checkpoint_dir=ckpt_dir)
    with pytest.raises(JobCancelled):
        reconstruct(footage, cfg, ctx)


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("options", [
    {},
    {"densification.strategy": "stag4d", "densification.max_scale_ratio": 8.0, "rigidity_weight": 0.5},
    {"representation": "hexplane", "model.hexplane.coarse_fraction": 0.3},
    {"representation": "control_points", "model.control_points.n_control": 16,
     "model.control_points.knn_every": 7, "model.control_points.mlp_depth": 2},
], ids=["trajectory", "stag4d-rigidity", "hexplane", "control_points"])
def test_resumed_fit_equals_uninterrupted_fit(footage, tmp_path, options):
    cfg = _cfg(options)
    ref_model, ref_stats = reconstruct(footage, cfg, JobContext())
    ckpt = tmp_path / "checkpoint"
    _fit_interrupted(footage, cfg, ckpt, stop_at=13)
    assert (ckpt / "reconstruct.pt").is_file() and not (ckpt / "reconstruct.pt.tmp").exists()
    events = []
    model, stats = reconstruct(footage, cfg, JobContext(on_progress=events.append, min_interval_s=0.0,
                                                        checkpoint_dir=ckpt))
    assert stats["resumed_from_step"] == 13
    assert any(e.message == "resumed from the checkpoint at step 13" for e in events)
    assert stats["iterations"] == ref_stats["iterations"] == ITERATIONS
    ref, got = _params(ref_model), _params(model)
    assert ref.keys() == got.keys()
    for k in ref:
        assert ref[k].shape == got[k].shape, k
        assert torch.equal(ref[k], got[k]), f"{k}: max diff {(ref[k] - got[k]).abs().max()}"
    assert stats["final_loss"] == ref_stats["final_loss"]
    assert stats["loss_curve"] == ref_stats["loss_curve"]


def test_a_finished_fit_returns_from_its_checkpoint(footage, tmp_path):
    cfg = _cfg({"iterations": 8})
    model, stats = reconstruct(footage, cfg, JobContext(checkpoint_dir=tmp_path))
    assert stats["checkpoints"] == 1 and (tmp_path / "reconstruct.pt").is_file()
    events = []
    again, stats2 = reconstruct(footage, cfg, JobContext(on_progress=events.append, checkpoint_dir=tmp_path))
    assert any("already finished" in (e.message or "") for e in events)
    assert stats2["iterations"] == 8
    for k, v in _params(model).items():
        assert torch.equal(v, _params(again)[k])


def test_checkpoint_of_other_settings_or_corrupt_is_ignored(footage, tmp_path):
    cfg = _cfg({"iterations": 8})
    _fit_interrupted(footage, cfg, tmp_path, stop_at=3)
    other = _cfg({"iterations": 8, "seed": 1})
    _, stats = reconstruct(footage, other, JobContext(checkpoint_dir=tmp_path))
    assert stats["resumed_from_step"] is None  # another seed: not this fit's checkpoint
    (tmp_path / "reconstruct.pt").write_bytes(b"\x00garbage")
    _, stats = reconstruct(footage, cfg, JobContext(checkpoint_dir=tmp_path))
    assert stats["resumed_from_step"] is None and stats["iterations"] == 8


def test_periodic_save_is_atomic_and_timed(tmp_path):
    now = [0.0]
    ck = FitCheckpoint(tmp_path, "reconstruct", 5.0, "f", clock=lambda: now[0])
    assert not ck.due()
    now[0] = 5.0
    assert ck.due()
    ck.save({"loop": {"step": 3}, "x": torch.arange(4)})
    assert not ck.due() and ck.saves == 1 and ck.last_bytes > 0
    assert [p.name for p in tmp_path.iterdir()] == ["reconstruct.pt"]
    assert torch.equal(ck.load()["x"], torch.arange(4))
    assert FitCheckpoint(tmp_path, "reconstruct", 5.0, "other").load() is None
    assert FitCheckpoint(tmp_path, "refit", 5.0, "f").load() is None  # a checkpoint belongs to its stage


def test_time_budget_counts_the_time_spent_before_the_checkpoint(footage, tmp_path):
    cfg = _cfg({"iterations": 10_000, "time_budget_s": 4.0})
    _fit_interrupted(footage, cfg, tmp_path, stop_at=3)
    state = torch.load(tmp_path / "reconstruct.pt", weights_only=True)
    spent, saved_step = state["loop"]["elapsed_s"], state["loop"]["step"]
    assert spent > 0 and saved_step >= 1
    t0 = time.monotonic()
    _, stats = reconstruct(footage, cfg, JobContext(checkpoint_dir=tmp_path))
    took = time.monotonic() - t0
    assert stats["resumed_from_step"] == saved_step and stats["iterations"] < 10_000
    assert took < 4.0 - spent + 2.0  # the resumed run spends only what is left of the budget (+ setup)


def test_a_checkpoint_that_cannot_be_written_does_not_fail_the_fit(footage, tmp_path, caplog):
    blocker = tmp_path / "checkpoint"
    blocker.write_text("a file where the folder should be")
    with caplog.at_level("WARNING", logger="gen4d.reconstruct"):
        _, stats = reconstruct(footage, _cfg({"iterations": 5}), JobContext(checkpoint_dir=blocker))
    assert stats["iterations"] == 5
    assert any("could not write the checkpoint" in r.getMessage() for r in caplog.records)
