"""Checkpoints of a running fit, so a job survives a crash of the backend.

While :func:`backend.pipeline.reconstruct.stage.reconstruct` runs with a checkpoint folder
(:attr:`backend.pipeline.context.JobContext.checkpoint_dir`, set by the server's worker to
``<job_dir>/checkpoint/``; None for the CLI), it saves everything the next steps depend on
every ``optimization.checkpoint_every_s`` seconds, when cancelled between steps (the worker
keeps that checkpoint on a shutdown and deletes it on a user's cancel), and once more when
the fit ends (``finished``), so a crash in a later stage does not redo the fit:

- the model (:meth:`Gaussians4D.state`) and its run-time caches (:meth:`Gaussians4D.fit_state`);
- every optimizer's ``state_dict`` (per-Gaussian Adams, the field Adam) and the steps taken;
- the densifier's running state (gradient accumulators, gsplat's or STAG4D's);
- the fit's ``torch.Generator``, the global torch RNG (and CUDA's), the SDS term's RNGs and
  call count, the rigidity term's neighbour cache;
- the loop: step, loss EMA and curve, seconds spent in the stage (for ``time_budget_s`` /
  ``time_limit_s``) and in steps.

One file per named stage, ``<dir>/<stage>.pt``, written with :func:`torch.save` to
``<stage>.pt.tmp``, flushed and fsynced, then moved over the old one with
:func:`os.replace`: after ``kill -9`` (or a power cut) the file is the previous or the new
checkpoint, never a mix. It is read with ``torch.load(weights_only=True)``.

A checkpoint records a fingerprint of its stage name, the fit's settings (all but
``checkpoint_every_s``) and the footage (images, cameras, times). A checkpoint whose
fingerprint differs from the resumed fit's (e.g. generated footage that came out different
on a re-run) or that cannot be read is ignored with a warning and the fit starts over.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Callable

import torch

log = logging.getLogger("gen4d.checkpoint")

FORMAT = 1


def fit_fingerprint(footage, cfg, stage: str) -> str:
    """SHA-256 hex digest of ``stage``, the settings ``cfg`` (a dataclass; its
    ``optimization.checkpoint_every_s`` left out) and the footage's images, cameras and times.

    Args:
        footage: a :class:`backend.pipeline.ingest.Footage`.
        cfg: a :class:`protocol.config.ReconstructConfig`.
        stage: the stage name.
    """
    settings = dataclasses.asdict(cfg)
    settings.get("optimization", {}).pop("checkpoint_every_s", None)
    h = hashlib.sha256()
    h.update(stage.encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for name in ("images", "Ks", "viewmats", "times"):
        t = getattr(footage, name, None)
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().contiguous()
            h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _to_cpu(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, dict):
        return {k: _to_cpu(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_cpu(v) for v in x)
    return x


def _to_device(x, device):
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, dict):
        return {k: _to_device(v, device) for k, v in x.items()}
    return x


class FitCheckpoint:
    """The checkpoint file of one stage's fit.

    Args:
        directory: the checkpoint folder (created on the first save).
        stage: the stage name; the file is ``<directory>/<stage>.pt``.
        every_s: seconds between periodic saves (:meth:`due`); 0 = only on cancel and at
            the end.
        fingerprint: :func:`fit_fingerprint` of the fit.
        clock: monotonic seconds (injectable for tests).

    Attributes:
        saves: checkpoints written by this object. save_seconds: their total write time.
        last_bytes: size of the last one.
    """

    def __init__(self, directory, stage: str, every_s: float, fingerprint: str,
                 clock: Callable[[], float] = time.monotonic):
        self.directory, self.stage, self.every_s = Path(directory), str(stage), float(every_s)
        self.fingerprint, self.clock = fingerprint, clock
        self.last_save = clock()
        self.saves, self.save_seconds, self.last_bytes = 0, 0.0, 0

    @property
    def path(self) -> Path:
        """``<directory>/<stage>.pt``."""
        return self.directory / f"{self.stage}.pt"

    def due(self) -> bool:
        """Whether ``every_s`` (> 0) seconds passed since the last save (or since creation)."""
        return self.every_s > 0 and self.clock() - self.last_save >= self.every_s

    def save(self, state: dict) -> None:
        """Write ``state`` (tensors moved to CPU) atomically: tmp file, fsync, ``os.replace``.

        Raises:
            OSError: the folder cannot be written (disk full, ...); the previous checkpoint
                is left as it was.
        """
        t0 = time.monotonic()
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        payload = {"format": FORMAT, "stage": self.stage, "fingerprint": self.fingerprint, **_to_cpu(state)}
        try:
            with open(tmp, "wb") as f:
                torch.save(payload, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        try:  # make the rename itself durable
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass
        self.last_save = self.clock()
        self.saves += 1
        self.save_seconds += time.monotonic() - t0
        self.last_bytes = self.path.stat().st_size
        log.info("checkpoint of %s at step %s: %.1f KiB in %.3f s", self.stage, state.get("loop", {}).get("step"),
                 self.last_bytes / 1024, time.monotonic() - t0)

    def load(self) -> dict | None:
        """The saved state (CPU tensors), or None when there is no checkpoint, it cannot be
        read, or it belongs to another fit (format, stage or fingerprint differ; warned)."""
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise ValueError("not a dict")
        except Exception as e:  # noqa: BLE001 - a bad checkpoint means starting over, never a failed job
            log.warning("ignoring unreadable checkpoint %s: %s", self.path, e)
            return None
        if (state.get("format"), state.get("stage"), state.get("fingerprint")) != (FORMAT, self.stage,
                                                                                  self.fingerprint):
            log.warning("ignoring checkpoint %s: it belongs to another fit (settings or footage differ)", self.path)
            return None
        return state


def capture_fit(trainer, sds, loop: dict) -> dict:
    """Everything a fit's next steps depend on (see the module docstring).

    Args:
        trainer: the :class:`backend.pipeline.reconstruct.train.Trainer`.
        sds: the :class:`backend.optim.sds_term.SDSTerm` or None.
        loop: the loop's own variables (step, EMA, curve, seconds, ...).
    """
    model, optimizer, densifier = trainer.model, trainer.optimizer, trainer.densifier
    state = {
        "model": model.state(), "model_fit_state": model.fit_state(),
        "optim": {"per_gaussian": {k: o.state_dict() for k, o in optimizer.per_gaussian.items()},
                  "field": None if optimizer.field is None else optimizer.field.state_dict(),
                  "steps_taken": optimizer.steps_taken},
        "densifier": None if densifier is None else dict(densifier.state),
        "generator": trainer.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized()
        else None,
        "sds": None if sds is None else {"rng": sds.rng.getstate(), "gen": sds.gen.get_state(), "calls": sds.calls},
        "rigidity": [t.rigidity.cache_state() for t in trainer.terms if hasattr(t, "rigidity")],
        "loop": dict(loop),
    }
    return state


def restore_fit(state: dict, trainer, sds, device) -> dict:
    """Put a fit back where :func:`capture_fit` saw it. The trainer must have been built
    around a model made from ``state["model"]`` (same Gaussian count, same key order).

    Returns:
        The saved loop variables.

    Raises:
        ValueError, KeyError, RuntimeError: the state does not fit this trainer.
    """
    model, optimizer, densifier = trainer.model, trainer.optimizer, trainer.densifier
    model.load_fit_state(state.get("model_fit_state") or {})
    saved = state["optim"]
    if list(saved["per_gaussian"]) != list(optimizer.per_gaussian):
        raise ValueError("the checkpoint's optimizers do not match the model's parameters")
    for k, o in optimizer.per_gaussian.items():
        o.load_state_dict(saved["per_gaussian"][k])
    if (saved["field"] is None) != (optimizer.field is None):
        raise ValueError("the checkpoint's field optimizer does not match the model")
    if optimizer.field is not None:
        optimizer.field.load_state_dict(saved["field"])
    optimizer.steps_taken = int(saved["steps_taken"])
    if densifier is not None and state["densifier"] is not None:
        densifier.state = _to_device(state["densifier"], device)
    trainer.generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    if sds is not None and state.get("sds") is not None:
        sds.rng.setstate(_as_random_state(state["sds"]["rng"]))
        sds.gen.set_state(state["sds"]["gen"])
        sds.calls = int(state["sds"]["calls"])
    rigid = [t for t in trainer.terms if hasattr(t, "rigidity")]
    for term, cache in zip(rigid, state.get("rigidity") or []):
        term.rigidity.load_cache_state(cache, device)
    return dict(state["loop"])


def _as_random_state(s):
    """``random.Random.getstate()`` after a save/load round trip (lists back to tuples)."""
    return tuple(tuple(x) if isinstance(x, list) else x for x in s)
