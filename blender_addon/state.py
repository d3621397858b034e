"""Main-thread job state and the ``bpy.app.timers`` callback that applies worker events.

Only the main thread touches :data:`STATE` and bpy. The worker is created lazily by
:func:`ensure_worker` and torn down by :func:`shutdown` (called from ``unregister``).
"""

from __future__ import annotations

import queue
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import bpy

from . import client as _client
from . import job_store

TIMER_INTERVAL_S = 0.2
TERMINAL = ("completed", "failed", "cancelled")


@dataclass
class JobState:
    """What the panel shows. Times in seconds; ``progress`` in [0, 1]."""
    reachable: bool | None = None
    rtt_s: float | None = None
    job_id: str = ""
    status: str = "idle"  # idle submitting queued running completed fetching ready failed cancelled
    stage: str = ""
    progress: float = 0.0
    eta_s: float | None = None
    loss: float | None = None
    message: str = ""
    last_error: str = ""
    result_dir: str = ""
    preview_path: str = ""
    updated: float = 0.0
    last_ok: float | None = None  # time.monotonic() of the last answered heartbeat
    unreachable_reason: str = ""
    pending: dict | None = None  # job_type / name / address of the job being submitted


STATE = JobState()
_worker: _client.BackendWorker | None = None
_worker_config: tuple | None = None
_jobs: list[dict] | None = None
_jobs_path: Path | None = None


def jobs() -> list[dict]:
    """The persistent job list (:mod:`job_store`), loaded on first use; newest first.

    An unreadable file is moved aside and reported in ``STATE.last_error``."""
    global _jobs, _jobs_path
    if _jobs is None:
        try:
            _jobs_path = job_store.store_path()
            _jobs, warning = job_store.load(_jobs_path)
        except OSError as exc:
            _jobs, warning = [], f"gen4d job list unavailable: {exc}"
        if warning:
            STATE.last_error = warning
    return _jobs


def record_job(job_id: str, **fields) -> None:
    """Update (or add) ``job_id`` in the job list and save it; never raises."""
    global _jobs
    try:
        _jobs = job_store.upsert(jobs(), job_id, **fields)
        if _jobs_path is not None:
            job_store.save(_jobs_path, _jobs)
    except (OSError, ValueError) as exc:
        STATE.last_error = f"gen4d job list not saved: {exc}"


def forget_job(job_id: str) -> None:
    """Remove ``job_id`` from the job list and save it; never raises."""
    global _jobs
    _jobs = job_store.forget(jobs(), job_id)
    try:
        if _jobs_path is not None:
            job_store.save(_jobs_path, _jobs)
    except OSError as exc:
        STATE.last_error = f"gen4d job list not saved: {exc}"


def reload_jobs() -> list[dict]:
    """Drop the in-memory list and read the file again (after register, or in tests)."""
    global _jobs
    _jobs = None
    return jobs()


def reattach(job_id: str) -> None:
    """Make ``job_id`` the panel's job and ask the backend to replay its state.

    The backend answers ``watch`` with the job's current events: progress for a running
    job, or ``completed`` (which starts the download), ``failed`` or ``cancelled``.

    Raises:
        RuntimeError: no backend connection (call :func:`ensure_worker` first).
    """
    if _worker is None:
        raise RuntimeError("not connected to a backend")
    s = STATE
    s.job_id, s.status, s.stage, s.progress, s.eta_s, s.last_error = job_id, "queued", "", 0.0, None, ""
    s.result_dir, s.preview_path, s.message = "", "", "reattaching"
    _worker.send("watch", job_id=job_id)


_autoconnect: tuple[str, Path] | None = None


def connect_when_ready(address: str, key_path: Path) -> None:
    """Connect to the local backend (:mod:`local_backend`) once it prints its ready line;
    the timer checks every tick, so Blender never waits for it."""
    global _autoconnect
    _autoconnect = (address, Path(key_path))
    if not bpy.app.timers.is_registered(_tick):
        bpy.app.timers.register(_tick, first_interval=TIMER_INTERVAL_S, persistent=True)


def _check_local_backend() -> None:
    global _autoconnect
    from . import local_backend

    if _autoconnect is None:
        return
    status = local_backend.poll()
    if status == "exited":
        _autoconnect = None
        STATE.reachable, STATE.unreachable_reason = False, "the local backend exited (see its log)"
    elif status == "ready":
        address, key_path = _autoconnect
        _autoconnect = None
        try:
            from ._vendor import get_protocol
            ensure_worker(address, get_protocol().load_key(key_path))
        except Exception as exc:
            STATE.last_error = f"could not connect to the local backend: {exc}"


def ensure_worker(address: str, key: bytes, timeout_s: float = 5.0) -> _client.BackendWorker:
    """The running worker for (address, key), (re)starting it if needed.

    ``timeout_s`` bounds every request the worker makes (seconds).

    Raises:
        PermissionError: ``address`` is not loopback and Blender's online access is off.
        ImportError: the protocol package or pyzmq is unavailable.
    """
    global _worker, _worker_config
    if not _client.is_loopback(address) and not bpy.app.online_access:
        raise PermissionError(f"{address} is not on this machine and Blender's online access is "
                              "disabled (Preferences > System > Network)")
    if _worker is not None and _worker.alive and _worker_config == (address, key):
        return _worker
    stop_worker()
    from ._vendor import get_protocol
    _worker = _client.BackendWorker(address, key, get_protocol(), timeout_s=timeout_s).start()
    _worker_config = (address, key)
    if not bpy.app.timers.is_registered(_tick):
        bpy.app.timers.register(_tick, first_interval=TIMER_INTERVAL_S, persistent=True)
    return _worker


def stop_worker() -> None:
    """Stop the worker thread (closing its socket and context), if any."""
    global _worker, _worker_config
    if _worker is not None:
        _worker.stop()
    _worker, _worker_config = None, None


def shutdown() -> None:
    """Stop the worker, the timer and a local backend started from the add-on (``unregister``)."""
    global _autoconnect, _jobs
    from . import local_backend

    _autoconnect, _jobs = None, None
    stop_worker()
    local_backend.forget()
    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)


def job_dir(job_id: str) -> Path:
    """Where a job's result is downloaded: ``//gen4d_cache/jobs/<id>`` or a temp folder."""
    if bpy.data.filepath:
        return Path(bpy.path.abspath(f"//gen4d_cache/jobs/{job_id}"))
    return Path(tempfile.gettempdir()) / "gen4d_jobs" / job_id


def apply_event(event: dict) -> None:
    """Update :data:`STATE` from one worker event (main thread)."""
    kind = event.get("type")
    job = event.get("job_id")
    if kind == "reachable":
        STATE.reachable, STATE.rtt_s = event["ok"], event.get("rtt_s")
        if event["ok"]:
            STATE.last_ok, STATE.unreachable_reason = time.monotonic(), ""
        else:
            STATE.unreachable_reason = event.get("message", "") or "no answer"
        return
    if kind == "error":
        STATE.last_error = event.get("message", "")
        if event.get("command") in ("submit_footage", "submit", "submit_file"):
            STATE.status = "failed"
        elif event.get("command") == "fetch":
            STATE.status = "completed"
        elif event.get("command") == "watch" and job and job == STATE.job_id:
            STATE.status = "failed"
            record_job(job, status="unknown", message=STATE.last_error[:200])
        return
    if job and STATE.job_id and job != STATE.job_id:
        if kind in TERMINAL:
            record_job(job, status=kind)
        return  # an older job
    if kind == "submitted":
        STATE.job_id, STATE.status, STATE.message = job, "queued", "queued"
        pending = STATE.pending or {}
        record_job(job, status="queued", job_type=pending.get("job_type", ""), name=pending.get("name", ""),
                   address=pending.get("address", ""))
        STATE.pending = None
        if _worker is not None:
            _worker.send("watch", job_id=job)
    elif kind == "queued":
        STATE.status = "queued" if STATE.status in ("idle", "submitting", "queued") else STATE.status
    elif kind == "started":
        STATE.status = "running"
        record_job(job, status="running")
    elif kind == "progress":
        STATE.status = "running"
        total = event.get("total") or 0
        STATE.stage = event.get("stage", "")
        STATE.progress = min(1.0, max(0.0, event.get("step", 0) / total)) if total else 0.0
        STATE.eta_s, STATE.loss = event.get("eta_s"), event.get("loss")
        STATE.message = event.get("message", "") or ""
    elif kind == "preview":
        path = Path(tempfile.gettempdir()) / f"gen4d_preview_{job}.png"
        path.write_bytes(event["png"])
        STATE.preview_path = str(path)
    elif kind == "completed":
        if STATE.status not in ("fetching", "ready"):
            STATE.status, STATE.progress, STATE.message = "fetching", 1.0, "downloading result"
            record_job(job, status="completed")
            if _worker is not None:
                _worker.send("fetch", job_id=job, dest=str(job_dir(job)))
    elif kind == "fetch_progress":
        STATE.message = f"downloading {event['index'] + 1}/{event['count']}"
    elif kind == "fetched":
        STATE.status, STATE.result_dir, STATE.message = "ready", event["path"], "result ready"
        record_job(job, status="ready", result_dir=event["path"])
    elif kind == "failed":
        STATE.status = "failed"
        STATE.last_error = f"{event.get('code', 'error')}: {event.get('message', '')}"
        record_job(job, status="failed", message=STATE.last_error[:200])
    elif kind == "cancelled":
        STATE.status, STATE.message = "cancelled", "cancelled"
        record_job(job, status="cancelled")


def _tick():
    """Timer callback: drain worker events, redraw 3D views. Never raises."""
    changed = False
    try:
        _check_local_backend()
    except Exception as exc:  # never let the timer die
        STATE.last_error = f"{type(exc).__name__}: {exc}"
    worker = _worker
    if worker is not None:
        for _ in range(200):
            try:
                event = worker.events.get_nowait()
            except queue.Empty:
                break
            try:
                apply_event(event)
            except Exception as exc:  # a bad event must not kill the timer
                STATE.last_error = f"{type(exc).__name__}: {exc}"
            changed = True
    if changed:
        STATE.updated = time.time()
        wm = getattr(bpy.context, "window_manager", None)
        for window in (wm.windows if wm else ()):
            for area in window.screen.areas:
                if area.type == "VIEW_3D":
                    area.tag_redraw()
    return TIMER_INTERVAL_S
