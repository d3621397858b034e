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


STATE = JobState()
_worker: _client.BackendWorker | None = None
_worker_config: tuple | None = None


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
    """Stop the worker and the timer (for ``unregister``)."""
    stop_worker()
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
        if not event["ok"]:
            STATE.message = f"backend unreachable: {event.get('message', '')}"
        return
    if kind == "error":
        STATE.last_error = event.get("message", "")
        if event.get("command") in ("submit_footage", "submit"):
            STATE.status = "failed"
        elif event.get("command") == "fetch":
            STATE.status = "completed"
        return
    if job and STATE.job_id and job != STATE.job_id:
        return  # an older job
    if kind == "submitted":
        STATE.job_id, STATE.status, STATE.message = job, "queued", "queued"
        if _worker is not None:
            _worker.send("watch", job_id=job)
    elif kind == "queued":
        STATE.status = "queued" if STATE.status in ("idle", "submitting", "queued") else STATE.status
    elif kind == "started":
        STATE.status = "running"
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
            if _worker is not None:
                _worker.send("fetch", job_id=job, dest=str(job_dir(job)))
    elif kind == "fetch_progress":
        STATE.message = f"downloading {event['index'] + 1}/{event['count']}"
    elif kind == "fetched":
        STATE.status, STATE.result_dir, STATE.message = "ready", event["path"], "result ready"
    elif kind == "failed":
        STATE.status = "failed"
        STATE.last_error = f"{event.get('code', 'error')}: {event.get('message', '')}"
    elif kind == "cancelled":
        STATE.status, STATE.message = "cancelled", "cancelled"


def _tick():
    """Timer callback: drain worker events, redraw 3D views. Never raises."""
    worker = _worker
    changed = False
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
