"""Non-blocking backend transport for the add-on.

A :class:`BackendWorker` thread owns the :class:`protocol.BackendClient` and its ZeroMQ
context: sockets are touched only from that thread. The UI puts commands on
``worker.commands`` (a :class:`queue.Queue`), the thread puts event dicts on
``worker.events``; a ``bpy.app.timers`` callback (see ``state.py``) drains them on the
main thread. The thread makes no bpy calls. Every socket wait is bounded (the client's
``timeout_s``), sockets use ``LINGER 0``, and :meth:`BackendWorker.stop` closes the
context, so a dead backend never hangs Blender.

Events the thread emits, besides the backend's job events (``queued``, ``started``,
``progress``, ``preview``, ``completed``, ``failed``, ``cancelled``)::

    {"type": "reachable", "ok": bool, "rtt_s": float | None, "message": str}
    {"type": "submitted", "job_id": str}
    {"type": "fetch_progress", "job_id", "index", "count"}
    {"type": "fetched", "job_id", "path": str}
    {"type": "error", "command": str, "message": str, "job_id": str | None}
"""

from __future__ import annotations

import ipaddress
import queue
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

_STOP = object()


def is_loopback(address: str) -> bool:
    """True for ``ipc://``/``inproc://`` endpoints and TCP endpoints on localhost/127.x/::1."""
    if address.startswith(("ipc://", "inproc://")):
        return True
    host = urlsplit(address).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BackendWorker:
    """Background thread that owns one backend connection.

    Args:
        address: ZeroMQ endpoint, e.g. ``tcp://127.0.0.1:5555``.
        key: shared HMAC key bytes.
        timeout_s: bound on every request (a dead backend costs at most this, in the thread).
        heartbeat_s: ping interval; results arrive as ``reachable`` events.
        protocol: the ``protocol`` module (see ``_vendor.get_protocol``).
    """

    def __init__(self, address: str, key: bytes, protocol, timeout_s: float = 5.0,
                 heartbeat_s: float = 3.0):
        self.address, self.key, self.timeout_s, self.heartbeat_s = address, key, timeout_s, heartbeat_s
        self.protocol = protocol
        self.commands: queue.Queue = queue.Queue()
        self.events: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="gen4d-backend", daemon=True)

    # -- main-thread API ----------------------------------------------------------------

    def start(self) -> "BackendWorker":
        """Start the thread (returns self)."""
        self._thread.start()
        return self

    def send(self, command: str, **kwargs) -> None:
        """Queue a command: ``submit_footage(folder, spec)``, ``submit(spec, files)``,
        ``submit_file(path, spec, field)`` (uploads one file and sets ``spec[field]`` to its
        name: ``field="image"`` or ``"video"``),
        ``cancel(job_id)``, ``watch(job_id)``, ``fetch(job_id, dest)``, ``ping()``."""
        self.commands.put((command, kwargs))

    def stop(self, join_timeout_s: float = 2.0) -> None:
        """Ask the thread to close the client and context, and wait a little for it.

        A thread stuck in a request ends by itself within ``timeout_s`` (daemon thread)."""
        self.commands.put((_STOP, {}))
        if self._thread.is_alive():
            self._thread.join(join_timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- thread side --------------------------------------------------------------------

    def _emit(self, **event) -> None:
        self.events.put(event)

    def _run(self) -> None:
        import zmq
        ctx = zmq.Context()
        ctx.setsockopt(zmq.LINGER, 0)
        client = None
        try:
            client = self.protocol.BackendClient(self.address, self.key, self.timeout_s, context=ctx)
            self._heartbeat(client, hello=True)
            next_ping = time.monotonic() + self.heartbeat_s
            while True:
                try:
                    command, kwargs = self.commands.get(timeout=0.05)
                except queue.Empty:
                    command = None
                if command is _STOP:
                    break
                if command is not None:
                    self._execute(client, command, kwargs)
                self._drain_events(client)
                if time.monotonic() >= next_ping:
                    self._heartbeat(client)
                    next_ping = time.monotonic() + self.heartbeat_s
        except Exception as exc:  # never let the thread die silently
            self._emit(type="error", command="connect", message=f"{type(exc).__name__}: {exc}", job_id=None)
        finally:
            if client is not None:
                client.close()
            ctx.destroy(linger=0)

    def _heartbeat(self, client, hello=False) -> None:
        try:
            if hello:
                client.hello()
            rtt = client.ping()
            self._emit(type="reachable", ok=True, rtt_s=rtt, message="")
        except Exception as exc:
            self._emit(type="reachable", ok=False, rtt_s=None, message=str(exc))

    def _drain_events(self, client) -> None:
        for _ in range(50):
            try:
                event = client.poll_event(0.0)
            except Exception as exc:
                self._emit(type="error", command="poll", message=str(exc), job_id=None)
                return
            if event is None:
                return
            self._emit(**event)

    def _execute(self, client, command: str, kwargs: dict) -> None:
        job_id = kwargs.get("job_id")
        try:
            if command == "submit_footage":
                self._emit(type="submitted", job_id=client.submit_footage(kwargs["folder"], kwargs["spec"]))
            elif command == "submit":
                self._emit(type="submitted", job_id=client.submit(kwargs["spec"], kwargs["files"]))
            elif command == "submit_file":  # an image or video: read here, not on Blender's main thread
                path = Path(kwargs["path"])
                spec = {**kwargs["spec"], kwargs["field"]: path.name}
                self._emit(type="submitted", job_id=client.submit(spec, {path.name: path.read_bytes()}))
            elif command == "cancel":
                client.cancel(job_id)
            elif command == "watch":
                client.watch(job_id)
            elif command == "ping":
                self._heartbeat(client)
            elif command == "fetch":
                path = client.fetch_result(job_id, kwargs["dest"], on_chunk=lambda i, n: self._emit(
                    type="fetch_progress", job_id=job_id, index=i, count=n))
                self._emit(type="fetched", job_id=job_id, path=str(path))
            else:
                raise ValueError(f"unknown command {command!r}")
        except Exception as exc:
            self._emit(type="error", command=command, message=f"{type(exc).__name__}: {exc}", job_id=job_id)
