"""This Blender session's work with the backend: one connection, the job it follows, the job list.

Main thread only. The pieces, each in its own module:

- ``connection.py``: the background thread talking to the backend; requests return
  futures (``futures.py``) whose callbacks run here, on the main thread, when
  :func:`update` drains :data:`DISPATCH` (called by the timer, ``timer.py``).
- ``panel_state.py``: what the panel shows, changed by the callbacks below.
- ``job_list.py``: the persistent job list (:data:`JOBS`).

The flow of one job: an operator submits through the connection and hands the future to
:func:`follow_submission`; once the backend accepted it, the job is recorded and its
events (the server subscribed the submitter, so no ``watch`` is sent) move the panel
through queued / running / progress / previews; ``completed`` starts the download
(``Connection.fetch``) into :func:`job_dir`, and the panel offers Import when it is done.
After a restart, :func:`reattach` sends ``watch`` and the backend replays the job's state.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import bpy

from . import local_backend, panel_state, timer
from .connection import TERMINAL_EVENTS, Connection, is_loopback
from .futures import Future, MainThreadQueue
from .job_list import JobList

__all__ = ["DISPATCH", "JOBS", "connection", "connect", "disconnect", "connect_when_ready", "follow_submission",
           "reattach", "cancel_job", "job_dir", "update", "shutdown"]


def _report(message: str) -> None:
    panel_state.STATE.error(message)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


#: The main-thread queue every future callback goes through (drained by :func:`update`).
DISPATCH = MainThreadQueue(on_error=lambda exc: _report(_describe(exc)))
#: The persistent job list (``job_list.JobList`` in the extension's user folder).
JOBS = JobList(on_warning=_report)

_connection: Connection | None = None
_config: tuple | None = None
_autoconnect: tuple[str, Path] | None = None
#: job id -> the future whose events the panel follows for it (a later reattach replaces it).
_following: dict[str, Future] = {}


def connection() -> Connection | None:
    """The current connection (alive or not), or None."""
    return _connection


def connect(address: str, key: bytes, timeout_s: float = 5.0, user: str | None = None,
            curve: tuple[bytes, bytes, bytes] | None = None) -> Connection:
    """The running connection to (address, key), (re)starting it if needed, and the timer.

    ``timeout_s`` bounds every request the connection makes (seconds). ``user`` and
    ``curve`` come from a credentials file (a studio backend; see
    :class:`protocol.client.BackendClient`).

    Raises:
        PermissionError: ``address`` is not loopback and Blender's online access is off.
        ImportError: the protocol package or pyzmq is unavailable.
    """
    global _connection, _config
    if not is_loopback(address) and not bpy.app.online_access:
        raise PermissionError(f"{address} is not on this machine and Blender's online access is "
                              "disabled (Preferences > System > Network)")
    config = (address, key, user, curve)
    if _connection is not None and _connection.alive and _config == config:
        return _connection
    disconnect()
    from ._vendor import get_protocol
    _connection = Connection(address, key, get_protocol(), DISPATCH, timeout_s=timeout_s,
                             on_reachability=_reachability, on_error=_report, user=user, curve=curve).start()
    _config = config
    timer.start(update)
    return _connection


def _reachability(ok: bool, rtt_s: float | None, message: str) -> None:
    panel_state.STATE.reachability(ok, rtt_s, message)


def disconnect() -> None:
    """Stop the connection's thread (closing its socket and context), if any."""
    global _connection, _config
    if _connection is not None:
        _connection.stop()
    _connection, _config = None, None
    _following.clear()


def connect_when_ready(address: str, key_path: Path) -> None:
    """Connect to the local backend (``local_backend.py``) once it prints its ready line;
    each timer tick checks, so Blender never waits for it."""
    global _autoconnect
    _autoconnect = (address, Path(key_path))
    timer.start(update)


def _check_local_backend() -> None:
    global _autoconnect
    if _autoconnect is None:
        return
    status = local_backend.poll()
    if status == "exited":
        _autoconnect = None
        panel_state.STATE.reachability(False, None, "the local backend exited (see its log)")
    elif status == "ready":
        address, key_path = _autoconnect
        _autoconnect = None
        try:
            from ._vendor import get_protocol
            connect(address, get_protocol().load_key(key_path))
        except Exception as exc:
            _report(f"could not connect to the local backend: {exc}")


def update() -> bool:
    """One timer tick's work: check a starting local backend, run queued callbacks.

    Returns:
        True if any callback ran (the panel may have changed).
    """
    try:
        _check_local_backend()
    except Exception as exc:
        _report(_describe(exc))
    return DISPATCH.drain(max_items=200) > 0


def job_dir(job_id: str) -> Path:
    """Where a job's result is downloaded: ``//gen4d_cache/jobs/<id>`` or a temp folder."""
    if bpy.data.filepath:
        return Path(bpy.path.abspath(f"//gen4d_cache/jobs/{job_id}"))
    return Path(tempfile.gettempdir()) / "gen4d_jobs" / job_id


# -- one job ---------------------------------------------------------------------------


def follow_submission(future: Future, job_type: str, name: str, address: str) -> None:
    """Show a just-submitted job in the panel and record it once the backend accepts it.

    Args:
        future: from ``Connection.submit`` / ``submit_footage`` / ``submit_file``.
        job_type, name, address: what the job list records for it.
    """
    panel_state.STATE.submitting()

    def accepted(f: Future) -> None:
        if f.cancelled():
            return
        exc = f.exception()
        if exc is not None:
            panel_state.STATE.submit_failed(_describe(exc))
            return
        job_id = f.result()
        _following[job_id] = f
        panel_state.STATE.accepted(job_id)
        JOBS.record(job_id, status="queued", job_type=job_type, name=name, address=address)

    future.add_done_callback(accepted)
    future.add_event_callback(lambda event: _job_event(future, event))


def reattach(job_id: str) -> Future:
    """Make ``job_id`` the panel's job and ask the backend to replay its state (``watch``).

    The backend answers with the job's current events: progress for a running job, or
    ``completed`` (which starts the download), ``failed`` or ``cancelled``. An id the backend
    does not know fails the panel with the backend's ``unknown_job`` message and marks the
    job list record ``unknown``. A job missing from the job list is added to it.

    Returns:
        the ``watch`` future.

    Raises:
        RuntimeError: no backend connection (call :func:`connect` first).
    """
    if _connection is None:
        raise RuntimeError("not connected to a backend")
    panel_state.STATE.reattaching(job_id)
    future = _connection.watch(job_id)
    _following[job_id] = future  # now: the replayed events follow the acknowledgement

    def acknowledged(f: Future) -> None:
        if f.cancelled() or f.exception() is None:
            return
        message = _describe(f.exception())
        if panel_state.STATE.job_id == job_id:
            panel_state.STATE.reattach_failed(message)
            JOBS.record(job_id, status="unknown", message=message[:200])
        else:
            _report(message)

    future.add_done_callback(acknowledged)
    future.add_event_callback(lambda event: _job_event(future, event))
    if JOBS.find(job_id) is None:
        JOBS.record(job_id, status="queued", name="reattached by id")
    return future


def cancel_job() -> Future | None:
    """Ask the backend to cancel the panel's job; the ``cancelled`` event follows.

    Returns:
        the ``cancel`` future, or None when there is no job or no connection.
    """
    job_id = panel_state.STATE.job_id
    if not job_id or _connection is None:
        return None
    future = _connection.cancel(job_id)
    future.add_done_callback(lambda f: None if f.cancelled() or f.exception() is None
                             else _report(_describe(f.exception())))
    return future


def _job_event(future: Future, event: dict) -> None:
    """Apply one backend event of a followed job to the panel and the job list."""
    job_id, kind = event.get("job_id", ""), event.get("type")
    if _following.get(job_id) is not future:
        return  # followed again through a newer future (reattach)
    if kind in TERMINAL_EVENTS:
        _following.pop(job_id, None)  # the backend sends nothing more for it
    state = panel_state.STATE
    if job_id != state.job_id:  # an older job: only its outcome matters
        if kind in TERMINAL_EVENTS:
            JOBS.record(job_id, status=kind)
        return
    if kind == "queued":
        state.queued(event.get("position"))
    elif kind == "started":
        state.started(event.get("node"))
        JOBS.record(job_id, status="running")
    elif kind == "progress":
        state.progressed(event.get("stage", ""), event.get("step", 0), event.get("total") or 0,
                         event.get("eta_s"), event.get("loss"), event.get("message", ""))
    elif kind == "preview":
        path = Path(tempfile.gettempdir()) / f"gen4d_preview_{job_id}.png"
        path.write_bytes(event["png"])
        state.previewed(str(path))
    elif kind == "completed":
        if state.completed():
            JOBS.record(job_id, status="completed")
            _download(job_id)
    elif kind == "failed":
        state.failed(event.get("code", "error"), event.get("message", ""))
        JOBS.record(job_id, status="failed", message=state.last_error[:200])
    elif kind == "cancelled":
        state.cancelled()
        JOBS.record(job_id, status="cancelled")


def _download(job_id: str) -> None:
    """Fetch ``job_id``'s result into :func:`job_dir`; the panel shows the progress."""
    if _connection is None:
        return
    future = _connection.fetch(job_id, str(job_dir(job_id)))

    def chunk(event: dict) -> None:
        if panel_state.STATE.job_id == job_id:
            panel_state.STATE.fetch_progress(event["index"], event["count"])

    def done(f: Future) -> None:
        if f.cancelled():
            return
        if f.exception() is not None:
            panel_state.STATE.fetch_failed(_describe(f.exception()))
        elif panel_state.STATE.job_id == job_id:
            panel_state.STATE.fetched(f.result())
            JOBS.record(job_id, status="ready", result_dir=f.result())

    future.add_event_callback(chunk)
    future.add_done_callback(done)


def shutdown() -> None:
    """Stop the connection, the timer and a local backend started from the add-on
    (``unregister``); drop the in-memory job list and queued callbacks."""
    global _autoconnect
    _autoconnect = None
    JOBS.unload()
    disconnect()
    local_backend.forget()
    timer.stop()
    DISPATCH.clear()
