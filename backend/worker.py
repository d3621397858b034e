"""The single worker thread: runs jobs one at a time, in submission order.

It calls :func:`backend.pipeline.runner.run_job` with a
:class:`~backend.pipeline.context.JobContext` whose callbacks turn into protocol events.
Events are handed to the server loop through ``emit`` (which must be thread-safe, e.g.
``queue.Queue.put``); the worker never touches a socket.

Outcome mapping: return -> ``completed``; ``JobCancelled`` -> ``cancelled`` (when the backend
is shutting down: back to ``queued`` if the job has a fit checkpoint, so it resumes on the
next start, else ``failed`` with code ``interrupted``); ``JobError`` -> ``failed``
with its code; ``torch.cuda.OutOfMemoryError`` / ``MemoryError`` -> ``failed``
``out_of_memory``; anything else -> ``failed`` ``internal_error`` with a log reference
(the exception's text and traceback only in the server log: they may hold server paths). Partial results of a failed job stay in ``result/``.

Checkpoints: the worker hands the fit ``<job_dir>/checkpoint`` through
:attr:`JobContext.checkpoint_dir` and deletes that folder when the job ends (completed,
failed or cancelled); it keeps it only when a shutdown interrupts the job.
"""

from __future__ import annotations

import logging
import math
import queue
import shutil
import socket
import sys
import threading
import uuid
from typing import Callable, Iterable, Optional

from backend.errors import JobCancelled, JobError
from backend.jobs import JobStore
from backend.pipeline.context import JobContext, ProgressEvent
from protocol import make_header

log = logging.getLogger("gen4d.worker")

Emit = Callable[[dict, list], None]
#: where the local executor runs jobs: this machine's host name (the ``started`` event's ``node``).
NODE_NAME = socket.gethostname()


def _finite_or_none(x) -> Optional[float]:
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def progress_fields(ev: ProgressEvent) -> dict:
    """Turn a :class:`ProgressEvent` into the ``progress`` message fields (non-finite floats -> None)."""
    return {"stage": str(ev.stage), "step": int(ev.step), "total": int(ev.total),
            "loss": _finite_or_none(ev.loss), "eta_s": _finite_or_none(ev.eta_s),
            "message": None if ev.message is None else str(ev.message)}


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, MemoryError):
        return True
    torch = sys.modules.get("torch")
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    return oom is not None and isinstance(e, oom)


def failure_outcome(e: BaseException, job_id: str, where: str = "on the backend",
                    log_place: str = "the backend's log") -> tuple[str, str]:
    """The ``(code, message)`` a job that raised ``e`` fails with, for every executor:
    :class:`JobError` -> its code and message; out of memory -> ``out_of_memory``; anything
    else -> ``internal_error`` naming the exception type and a reference into the log (the
    exception's text and traceback are logged here, never sent: they may hold server paths).

    Args:
        e: the exception (not :class:`JobCancelled`).
        job_id: for the log.
        where: where it ran, for the message (``"on <node>"``).
        log_place: the log that holds the details, for the message.
    """
    if isinstance(e, JobError):
        log.info("job %s failed [%s]: %s", job_id, e.code, e.message)
        return str(e.code), str(e.message)
    if _is_oom(e):
        log.warning("job %s ran out of memory: %s", job_id, e)
        return "out_of_memory", (f"ran out of memory ({type(e).__name__}); try a smaller preset, "
                                 f"fewer frames or a lower resolution")
    ref = uuid.uuid4().hex[:12]
    log.error("job %s failed with an unexpected error (ref %s)", job_id, ref, exc_info=e)
    return "internal_error", (f"the job failed {where} ({type(e).__name__}); {log_place} has the details "
                              f"under ref {ref}")


class Worker:
    """The ``local`` executor (:class:`backend.executors.Executor`): runs queued jobs on
    one background thread of the server's process, one at a time, in submission order.

    Args:
        store: the job store.
        emit: thread-safe callable ``emit(header, buffers)`` that delivers an event header
            (made with :func:`protocol.make_header`) to the job's subscribers.
    """

    def __init__(self, store: JobStore, emit: Emit):
        self.store = store
        self.emit = emit
        self._queue: "queue.Queue[Optional[str]]" = queue.Queue()
        self._lock = threading.Lock()
        self._cancel_events: dict[str, threading.Event] = {}
        self._shutting_down = False
        self._thread = threading.Thread(target=self._run, name="gen4d-worker", daemon=True)

    def start(self, pending: Iterable[str] = ()) -> None:
        """Queue ``pending`` job ids (e.g. re-queued after a restart) and start the thread."""
        for job_id in pending:
            self.enqueue(job_id)
        self._thread.start()

    def enqueue(self, job_id: str) -> None:
        """Append a ``queued`` job to the run queue."""
        self._queue.put(job_id)

    def queue_position(self, job_id: str) -> int:
        """How many jobs run before this queued one (the running one included)."""
        return self.store.queue_position(job_id)

    def cancel(self, job_id: str) -> str:
        """Cancel a job.

        A queued job is cancelled at once (its ``cancelled`` event is emitted here); a
        running job gets its cancel flag set and ends at its next check.

        Args:
            job_id: the job.

        Returns:
            ``"cancelled"`` (was queued), ``"requested"`` (running) or ``"finished"``
            (already over; nothing done).

        Raises:
            JobStoreError: ``unknown_job``.
        """
        with self._lock:
            ev = self._cancel_events.get(job_id)
            if ev is not None:
                ev.set()
        if self.store.transition(job_id, {"queued"}, "cancelled"):
            shutil.rmtree(self.store.checkpoint_dir(job_id), ignore_errors=True)  # a re-queued job has one
            log.info("job %s cancelled while queued", job_id)
            self.emit(make_header("cancelled", job_id=job_id), [])
            return "cancelled"
        if self.store.get(job_id)["state"] == "running":
            log.info("job %s: cancel requested", job_id)
            return "requested"
        return "finished"

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the running job to stop and join the thread. A fit saves a checkpoint when
        it stops, and the job goes back to ``queued`` to resume on the next start; a job
        stopped before its fit has no checkpoint and is marked ``failed`` (``interrupted``)."""
        self._shutting_down = True
        with self._lock:
            for ev in self._cancel_events.values():
                ev.set()
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("worker did not stop within %.0f s; the running job will be marked "
                            "interrupted on the next start", timeout_s)

    # -- thread body ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None or self._shutting_down:
                return
            try:
                self._run_one(job_id)
            except Exception:  # the store itself failed (disk full, ...): keep serving
                log.exception("job %s: worker error", job_id)

    def _finish(self, job_id: str, state: str, **fields) -> None:
        updates = {}
        if state == "failed":
            updates = {"error_code": fields["code"], "error_message": fields["message"]}
        elif state == "completed":
            updates = {"frame_count": fields["frame_count"], "files": fields["files"]}
        self.store.transition(job_id, {"running"}, state, **updates)
        shutil.rmtree(self.store.checkpoint_dir(job_id), ignore_errors=True)  # the job is over
        self.emit(make_header(state, job_id=job_id, **fields), [])

    def _run_one(self, job_id: str) -> None:
        ev = threading.Event()
        with self._lock:
            self._cancel_events[job_id] = ev
        try:
            if not self.store.transition(job_id, {"queued"}, "running", node=NODE_NAME):
                return  # cancelled while queued
            log.info("job %s started", job_id)
            self.emit(make_header("started", job_id=job_id, node=NODE_NAME), [])
            stage = {"name": "queued"}

            def on_progress(pe: ProgressEvent) -> None:
                fields = progress_fields(pe)
                stage["name"] = fields["stage"]
                self.store.set_progress(job_id, fields)
                self.emit(make_header("progress", job_id=job_id, **fields), [])

            def on_preview(png: bytes) -> None:
                self.emit(make_header("preview", job_id=job_id, stage=stage["name"]), [bytes(png)])

            ctx = JobContext(on_progress=on_progress, on_preview=on_preview, cancel_event=ev,
                             checkpoint_dir=self.store.checkpoint_dir(job_id))
            self._execute(job_id, ctx)
        finally:
            with self._lock:
                self._cancel_events.pop(job_id, None)

    def _execute(self, job_id: str, ctx: JobContext) -> None:
        out_dir = self.store.result_dir(job_id)
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            ctx.check_cancelled()
            from backend.pipeline import runner  # imported late: the server starts fast
            manifest = runner.run_job(self.store.spec(job_id), self.store.input_dir(job_id), out_dir, ctx)
        except JobCancelled:
            if self._shutting_down and self.store.has_checkpoint(job_id) \
                    and self.store.transition(job_id, {"running"}, "queued"):
                log.info("job %s interrupted by shutdown: queued again, it resumes from its checkpoint on the "
                         "next start", job_id)
            elif self._shutting_down:
                log.info("job %s interrupted by shutdown", job_id)
                self._finish(job_id, "failed", code="interrupted",
                             message="the backend stopped while this job was running; resubmit it")
            else:
                log.info("job %s cancelled", job_id)
                self._finish(job_id, "cancelled")
            return
        except Exception as e:  # noqa: BLE001 - every failure must end the job, never the server
            code, message = failure_outcome(e, job_id)
            self._finish(job_id, "failed", code=code, message=message)
            return
        files = self.store.result_files(job_id)
        frame_count = int(manifest["frame_count"])
        log.info("job %s completed: %d frame(s), %d file(s)", job_id, frame_count, len(files))
        self._finish(job_id, "completed", frame_count=frame_count, files=files)
