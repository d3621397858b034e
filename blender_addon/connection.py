"""The add-on's link to one backend: a background thread that owns the protocol client.

:class:`Connection` runs a thread that owns the ``protocol.BackendClient`` and its ZeroMQ
context; sockets are touched only from that thread, which makes no ``bpy`` calls. Each
request method (:meth:`Connection.submit`, :meth:`Connection.watch`,
:meth:`Connection.cancel`, :meth:`Connection.fetch`, ...) queues the request and returns a
:class:`~.futures.Future` at once; the thread completes it, and every callback runs on the
main thread when it drains the :class:`~.futures.MainThreadQueue` (the add-on's timer, see
``timer.py``). So the UI never blocks: every socket wait is bounded (the client's
``timeout_s``), sockets use ``LINGER 0``, and :meth:`Connection.stop` closes the context.

Job events. The backend sends a job's events (``queued``, ``started``, ``progress``,
``preview``, ``completed``, ``failed``, ``cancelled``; see ``protocol/messages.py``) to
the client that submitted it and to every client that sent ``watch`` for it. The
future of a :meth:`~Connection.submit` or :meth:`~Connection.watch` is done once the
backend answered (result: the job id) and then keeps receiving that job's events through
its event callbacks until a terminal one. A submitter is subscribed by the server with the
submit itself, so no ``watch`` follows a submit; ``watch`` is for reattaching to a job
(e.g. after a Blender restart), and the backend answers it by replaying the job's state.

Reachability. The thread says ``hello`` and pings every ``heartbeat_s``; each answer (or
its absence) is reported to ``on_reachability(ok, rtt_s, message)`` on the main thread.

Plain Python (no ``bpy``): tested without Blender in ``tests/addon/test_addon_connection.py``.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Callable

from ._vendor import get_protocol
from .futures import Future, MainThreadQueue

__all__ = ["Connection", "is_loopback", "TERMINAL_EVENTS"]

#: Job events after which the backend sends no more for that job (``protocol.formats.job_states``).
TERMINAL_EVENTS = get_protocol().TERMINAL_EVENTS

_STOP = object()


#: True for loopback endpoints (:func:`protocol.addresses.is_loopback`, shared with the backend).
is_loopback = get_protocol().is_loopback


class Connection:
    """Background thread that owns one backend connection.

    Args:
        address: ZeroMQ endpoint, e.g. ``tcp://127.0.0.1:5555``.
        key: shared HMAC key bytes.
        protocol: the ``protocol`` module (see ``_vendor.get_protocol``).
        dispatcher: where every callback is queued for the main thread.
        timeout_s: bound on every request in seconds (a dead backend costs at most this,
            in the thread).
        heartbeat_s: seconds between pings.
        on_reachability: ``fn(ok: bool, rtt_s: float | None, message: str)``, called on
            the main thread after each hello/ping (``message`` says why when not ok).
        on_error: ``fn(message: str)``, called on the main thread for errors that belong
            to no request (the thread could not start, an unreadable event).
        user: the user whose key ``key`` is (a studio backend's credentials file); None for
            the backend's own key.
        curve: ``(client_public, client_secret, server_public)`` z85 keys for CurveZMQ, or None.

    Raises:
        ValueError: ``timeout_s`` or ``heartbeat_s`` is not positive.
    """

    def __init__(self, address: str, key: bytes, protocol, dispatcher: MainThreadQueue, timeout_s: float = 5.0,
                 heartbeat_s: float = 3.0, on_reachability: Callable[[bool, float | None, str], None] | None = None,
                 on_error: Callable[[str], None] | None = None, user: str | None = None,
                 curve: tuple[bytes, bytes, bytes] | None = None):
        if timeout_s <= 0 or heartbeat_s <= 0:
            raise ValueError(f"timeout_s and heartbeat_s must be > 0, got {timeout_s}, {heartbeat_s}")
        self.address, self.key, self.timeout_s, self.heartbeat_s = address, key, timeout_s, heartbeat_s
        self.user, self.curve = user, curve
        self.protocol = protocol
        self.dispatcher = dispatcher
        self.on_reachability, self.on_error = on_reachability, on_error
        self._requests: queue.Queue = queue.Queue()
        self._followers: dict[str, list[Future]] = {}  # job id -> futures receiving its events (thread only)
        self._thread = threading.Thread(target=self._run, name="gen4d-backend", daemon=True)

    # -- main-thread API ----------------------------------------------------------------

    def start(self) -> "Connection":
        """Start the thread (returns self)."""
        self._thread.start()
        return self

    def stop(self, join_timeout_s: float = 2.0) -> None:
        """Ask the thread to close the client and context, and wait a little for it.

        Requests still queued are cancelled. A thread stuck in a request ends by itself
        within ``timeout_s`` (daemon thread)."""
        self._requests.put((_STOP, {}, None))
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(join_timeout_s)

    @property
    def alive(self) -> bool:
        """Whether the thread runs."""
        return self._thread.is_alive()

    def ping(self) -> Future:
        """Check the backend now. Result: the round trip in seconds (float); the answer is
        also reported to ``on_reachability``. Errors: ``protocol.BackendUnavailable``."""
        return self._queue("ping")

    def submit(self, spec: dict, files: dict[str, bytes]) -> Future:
        """Submit a job with its input files (``{relative POSIX name: bytes}``).

        Result: the job id (str); then the job's events go to the future's event callbacks
        (the server subscribed the submitter; no ``watch`` is sent). Errors: as
        ``protocol.BackendClient.submit`` (``RemoteError``, ``ProtocolError``,
        ``BackendUnavailable``)."""
        return self._queue("submit", spec=spec, files=files)

    def submit_footage(self, folder: str, spec: dict) -> Future:
        """Upload a transforms-format footage folder (read on the thread) and submit it; as
        :meth:`submit`. Errors also: ``FileNotFoundError``/``ValueError`` for a bad folder."""
        return self._queue("submit_footage", folder=folder, spec=spec)

    def submit_file(self, path: str, spec: dict, field: str) -> Future:
        """Upload one file (an image or video, read on the thread, not on Blender's main
        thread) and submit ``spec`` with ``spec[field]`` set to its name (``field="image"``
        or ``"video"``); as :meth:`submit`. Errors also: ``OSError`` for an unreadable file."""
        return self._queue("submit_file", path=path, spec=spec, field=field)

    def watch(self, job_id: str) -> Future:
        """Follow a job again (reattach). Result: the job id once the backend acknowledged;
        the event callbacks get the replayed state (``queued``; ``started`` + the last
        ``progress``; or the terminal event) and every later event. Errors:
        ``RemoteError`` (``unknown_job``), ``BackendUnavailable``."""
        return self._queue("watch", job_id=job_id)

    def cancel(self, job_id: str) -> Future:
        """Ask the backend to cancel a job. Result: None once acknowledged (the job's
        ``cancelled`` event follows on its submit/watch future). Errors: ``RemoteError``
        (``unknown_job``), ``BackendUnavailable``."""
        return self._queue("cancel", job_id=job_id)

    def fetch(self, job_id: str, dest: str) -> Future:
        """Download a completed job's result into ``dest`` (created). Result: ``dest`` as a
        str; events ``{"type": "fetch_progress", "job_id", "index", "count"}`` after each
        file (``index`` counts from 0). Errors: ``RemoteError`` (``not_completed``,
        ``unknown_job``), ``ProtocolError``, ``BackendUnavailable``, ``OSError``."""
        return self._queue("fetch", job_id=job_id, dest=dest)

    def _queue(self, command: str, **kwargs) -> Future:
        future = Future(self.dispatcher, command)
        self._requests.put((command, kwargs, future))
        return future

    # -- thread side --------------------------------------------------------------------

    def _post(self, fn, *args) -> None:
        if fn is not None:
            self.dispatcher.post(fn, *args)

    def _run(self) -> None:
        import zmq
        ctx = zmq.Context()
        ctx.setsockopt(zmq.LINGER, 0)
        client = None
        try:
            client = self.protocol.BackendClient(self.address, self.key, self.timeout_s, context=ctx,
                                                 user=self.user, curve=self.curve)
            self._heartbeat(client, hello=True)
            next_ping = time.monotonic() + self.heartbeat_s
            while True:
                try:
                    command, kwargs, future = self._requests.get(timeout=0.05)
                except queue.Empty:
                    command = None
                if command is _STOP:
                    break
                if command is not None and not future.cancelled():
                    self._execute(client, command, kwargs, future)
                self._drain_events(client)
                if time.monotonic() >= next_ping:
                    self._heartbeat(client)
                    next_ping = time.monotonic() + self.heartbeat_s
        except Exception as exc:  # never let the thread die silently
            self._post(self.on_error, f"{type(exc).__name__}: {exc}")
        finally:
            if client is not None:
                client.close()
            ctx.destroy(linger=0)
            while True:  # nothing will serve what is still queued
                try:
                    _, _, future = self._requests.get_nowait()
                except queue.Empty:
                    break
                if future is not None:
                    future.cancel()

    def _heartbeat(self, client, hello=False, future: Future | None = None) -> None:
        """Ping (after ``hello`` if asked), report reachability, complete ``future``."""
        try:
            if hello:
                client.hello()
            rtt = client.ping()
        except Exception as exc:
            self._post(self.on_reachability, False, None, str(exc))
            if future is not None:
                future.set_exception(exc)
            return
        self._post(self.on_reachability, True, rtt, "")
        if future is not None:
            future.set_result(rtt)

    def _drain_events(self, client) -> None:
        for _ in range(50):
            try:
                event = client.poll_event(0.0)
            except Exception as exc:
                self._post(self.on_error, str(exc))
                return
            if event is None:
                return
            job_id = event.get("job_id")
            followers = [f for f in self._followers.get(job_id, ()) if not f.cancelled()]
            for future in followers:
                future.post_event(event)
            if event.get("type") in TERMINAL_EVENTS or not followers:
                self._followers.pop(job_id, None)
            else:
                self._followers[job_id] = followers

    def _follow(self, job_id: str, future: Future) -> None:
        self._followers.setdefault(job_id, []).append(future)

    def _execute(self, client, command: str, kwargs: dict, future: Future) -> None:
        job_id = kwargs.get("job_id")
        try:
            if command == "ping":
                self._heartbeat(client, future=future)
                return
            if command == "submit":
                result = client.submit(kwargs["spec"], kwargs["files"])
            elif command == "submit_footage":
                result = client.submit_footage(kwargs["folder"], kwargs["spec"])
            elif command == "submit_file":  # an image or video: read here, not on Blender's main thread
                path = Path(kwargs["path"])
                spec = {**kwargs["spec"], kwargs["field"]: path.name}
                result = client.submit(spec, {path.name: path.read_bytes()})
            elif command == "watch":
                client.watch(job_id)
                result = job_id
            elif command == "cancel":
                result = client.cancel(job_id)
            elif command == "fetch":
                path = client.fetch_result(job_id, kwargs["dest"], on_chunk=lambda i, n: future.post_event(
                    {"type": "fetch_progress", "job_id": job_id, "index": i, "count": n}))
                result = str(path)
            else:
                raise ValueError(f"unknown request {command!r}")
        except Exception as exc:
            future.set_exception(exc)
            return
        if command in ("submit", "submit_footage", "submit_file", "watch"):
            self._follow(result, future)  # before any of the job's events is drained
        future.set_result(result)
