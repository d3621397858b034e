"""The channel between a running job and whoever runs it (server worker or CLI).

A stage calls :meth:`JobContext.progress` and :meth:`JobContext.preview` as it works and
:meth:`JobContext.check_cancelled` between steps. The server's worker forwards those to
clients as protocol events; ``python -m backend run`` prints them with tqdm.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable, Optional

from backend.errors import JobCancelled


@dataclass
class ProgressEvent:
    """One progress report.

    Attributes:
        stage: stage name, e.g. ``"ingest"``, ``"reconstruct"``, ``"export"``.
        step: steps done in this stage (0..total).
        total: steps in this stage.
        loss: latest training loss, if the stage optimizes.
        eta_s: estimated seconds left in this stage, or None.
        message: optional short human text.
    """

    stage: str
    step: int
    total: int
    loss: Optional[float] = None
    eta_s: Optional[float] = None
    message: Optional[str] = None


@dataclass
class JobContext:
    """Callbacks and cancel flag handed to every stage.

    Args:
        on_progress: called with a :class:`ProgressEvent`; must be cheap and thread-safe.
        on_preview: called with PNG bytes of a preview image.
        cancel_event: set by another thread to ask the job to stop.
        min_interval_s: progress events closer together than this are dropped, except
            the first and last step of a stage.
        checkpoint_dir: where the fit saves and looks for its checkpoints
            (:mod:`backend.pipeline.reconstruct.checkpoint`): the server's worker sets
            ``<job_dir>/checkpoint``; None (the CLI) = no checkpoints. Data flows one way:
            the worker owns the folder (deletes it when the job ends), the fit only reads
            and writes files in it.
    """

    on_progress: Callable[[ProgressEvent], None] = lambda e: None
    on_preview: Callable[[bytes], None] = lambda png: None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    min_interval_s: float = 0.5
    checkpoint_dir: Optional[Path] = None
    _last_emit: float = 0.0
    _stage_start: dict = field(default_factory=dict)

    def progress(self, stage: str, step: int, total: int, loss: Optional[float] = None,
                 message: Optional[str] = None) -> None:
        """Report progress; computes the ETA from the stage's elapsed time and the steps
        taken since its first report (a fit resumed from a checkpoint starts at a later
        step). Rate-limited."""
        now = time.monotonic()
        start, first_step = self._stage_start.setdefault(stage, (now, step))
        if step not in (0, total) and now - self._last_emit < self.min_interval_s:
            return
        self._last_emit = now
        eta = None
        if first_step < step < total:  # a stage resumed at a later step counts from there
            eta = (now - start) / (step - first_step) * (total - step)
        self.on_progress(ProgressEvent(stage, int(step), int(total), None if loss is None else float(loss),
                                       eta, message))

    def preview(self, png: bytes) -> None:
        """Send a preview image (PNG bytes)."""
        self.on_preview(png)

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` if a cancel was requested.

        Raises:
            JobCancelled: when ``cancel_event`` is set.
        """
        if self.cancel_event.is_set():
            raise JobCancelled()
