"""The backend server: a ZeroMQ ROUTER loop in front of the job store and the worker.

Only the loop thread touches the socket. The worker hands events over through a
``queue.Queue`` that the loop drains between short polls. Sessions are keyed by the
peer's routing id; a job's events go to the identity that submitted it and to every
identity that sent ``watch`` for it. Bad input (malformed, wrongly signed, unknown type,
invalid fields) is answered with an ``error`` and logged; the loop keeps serving.

Who may do what (docs/design.md "Authentication"):

- every request is signed (:mod:`protocol.framing`) with the backend's own key or a
  user's (:mod:`backend.users`), and accepted once, while recent
  (:class:`backend.replay.ReplayGuard`);
- a routing id belongs to the user whose key first signed a request from it (its
  session); a request from that id signed by another user is refused, and the socket
  refuses a second connection that claims a connected routing id (``ROUTER_HANDOVER``
  off), so a peer without the key cannot take over another client's events; heartbeats
  drop dead connections within :data:`HEARTBEAT_TIMEOUT_MS`;
- jobs belong to their submitter: a user sees, watches, fetches and cancels only their
  own, an admin (the backend's own key, or a user added with ``--admin``) all of them;
  another user's job is ``unknown_job``, as if it did not exist;
- off loopback, CurveZMQ is required (:func:`serve`): only users' registered CURVE keys
  connect, the traffic is encrypted, and a request's HMAC user must be the user of the
  CURVE key it came through.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Optional

import zmq

from backend.errors import JobError
from backend.jobs import JobStore, JobStoreError
from backend.replay import DEFAULT_WINDOW_S, ReplayGuard
from backend.users import UserError, Users, server_curve_keys
from backend.executors import make_executor
from protocol import (PROTOCOL_VERSION, TERMINAL_EVENTS, ProtocolError, encode_message, is_loopback,
                      load_or_create_key, make_header)
from protocol.errors import InvalidOptionError
from protocol.framing import decode_signed, split_signature
from protocol.formats.job_states import TERMINAL_STATES
from protocol.job_spec import validate_job_spec
from protocol.limits import MESSAGE_PART_BYTES

log = logging.getLogger("gen4d.server")

DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
#: How long one poll of the socket waits (s); bounds event latency and stop reaction time.
POLL_S = 0.05
#: Sessions silent for longer than this are forgotten, with their subscriptions.
SESSION_IDLE_S = 3600.0
#: ZMTP heartbeats: a peer that answers none for this long is disconnected, which frees
#: its routing id for the same client's reconnection (``ROUTER_HANDOVER`` is off).
HEARTBEAT_IVL_MS = 2000
HEARTBEAT_TIMEOUT_MS = 10000


class ServeRefused(RuntimeError):
    """The server will not start with this configuration (the message says how to fix it)."""


def default_data_dir() -> Path:
    """Return ``$GEN4D_DATA_DIR``, else ``$XDG_DATA_HOME/gen4d``, else ``~/.local/share/gen4d``."""
    if os.environ.get("GEN4D_DATA_DIR"):
        return Path(os.environ["GEN4D_DATA_DIR"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "gen4d"


class Server:
    """State of one running backend: socket, sessions, subscriptions, store and worker.

    Args:
        data_dir: data folder (jobs live in ``<data_dir>/jobs``, users in
            ``<data_dir>/users``).
        key: the backend's own HMAC key (the admin key).
        max_message_part_bytes: the socket's ``zmq.MAXMSGSIZE`` (default
            :data:`protocol.limits.MESSAGE_PART_BYTES`): a peer sending a larger part is
            disconnected by libzmq before the part is buffered.
        curve_keys: the server's CURVE key pair ``(public, secret)`` (z85 bytes) to require
            CurveZMQ on the socket, or None for plain TCP (loopback only; :func:`serve`).
        replay_window_s: accepted clock difference for a request's ``sent_at`` (s).
        executor: what runs the jobs (:mod:`backend.executors`): ``"local"`` or ``"ray"``.
        executor_options: the executor's options (``ray``: ``address``).
    """

    def __init__(self, data_dir: Path, key: bytes, max_message_part_bytes: Optional[int] = None,
                 curve_keys: Optional[tuple[bytes, bytes]] = None, replay_window_s: float = DEFAULT_WINDOW_S,
                 executor: str = "local", executor_options: Optional[dict] = None):
        self.key = key
        self.users = Users(data_dir, own_key=key)
        self.curve_keys = curve_keys
        self.replay = ReplayGuard(window_s=replay_window_s)
        self.max_message_part_bytes = int(max_message_part_bytes or MESSAGE_PART_BYTES)
        self.store = JobStore(data_dir)
        for job in self.store.list():  # a submit accepted before a restart stays refused when replayed
            if job.get("request_digest") and job.get("created_at"):
                self.replay.remember(job["request_digest"].encode("ascii", "replace"), float(job["created_at"]))
        self.outbox: "queue.Queue[tuple[dict, list]]" = queue.Queue()
        self.worker = make_executor(executor, self.store, lambda h, b: self.outbox.put((h, b)),
                                    **(executor_options or {}))
        self.subscribers: dict[str, set[bytes]] = defaultdict(set)
        self.sessions: dict[bytes, dict] = {}
        self.sock = None
        self._authenticator = None

    # -- sending --------------------------------------------------------------------

    def _reply_key(self, rid: bytes, claimed_user: Optional[str] = None) -> bytes:
        """The key that signs what goes to ``rid``: its session user's, else the user its
        request claimed, else the backend's own."""
        session = self.sessions.get(rid)
        for user in ((session or {}).get("user"), claimed_user):
            if user is not None:
                key = self.users.key(user)
                if key:
                    return key
        return self.key

    def _send(self, rid: bytes, header: dict, buffers=(), claimed_user: Optional[str] = None) -> None:
        try:
            frames = encode_message(header, list(buffers), self._reply_key(rid, claimed_user), "to_client")
            self.sock.send_multipart([rid, *frames], flags=zmq.NOBLOCK)
        except zmq.Again:
            log.warning("dropping %s for %s: peer not reading", header.get("type"), rid.hex()[:16])
        except (zmq.ZMQError, ProtocolError) as e:
            log.error("cannot send %s to %s: %s", header.get("type"), rid.hex()[:16], e)
            if isinstance(e, ProtocolError) and header.get("type") != "error":
                # the peer still gets an answer (a reply that cannot be encoded is a server bug)
                in_reply_to = header.get("in_reply_to")
                self._send(rid, make_header("error", code="internal_error",
                                            message=f"the server could not encode its {header.get('type')!r} "
                                                    f"reply; see the server log",
                                            in_reply_to=in_reply_to if isinstance(in_reply_to, str) else None))

    def _reply(self, rid: bytes, request: dict, mtype: str, buffers=(), **fields) -> None:
        self._send(rid, make_header(mtype, in_reply_to=request["msg_id"], **fields), buffers)

    def _error(self, rid: bytes, code: str, message: str, request: Optional[dict] = None,
               claimed_user: Optional[str] = None) -> None:
        msg_id = request.get("msg_id") if isinstance(request, dict) else None
        self._send(rid, make_header("error", code=code, message=message,
                                    in_reply_to=msg_id if isinstance(msg_id, str) else None),
                   claimed_user=claimed_user)

    def drain_outbox(self) -> None:
        """Send every event the worker queued to the job's subscribers."""
        while True:
            try:
                header, buffers = self.outbox.get_nowait()
            except queue.Empty:
                return
            job_id = header["job_id"]
            for rid in list(self.subscribers.get(job_id, ())):
                self._send(rid, header, buffers)
            if header["type"] in TERMINAL_EVENTS:
                self.subscribers.pop(job_id, None)

    # -- receiving ------------------------------------------------------------------

    def handle(self, frames: list) -> None:
        """Handle one multipart message ``[routing_id, signature, header, *buffers]``; never raises.

        ``frames`` may be ``bytes`` or ``zmq.Frame`` (whose ``User-Id`` property names the
        CURVE user). Every failure becomes an ``error`` reply: the protocol's own errors
        with their message; anything else as ``malformed`` (while decoding) or
        ``internal_error`` (while handling) with a reference into the server log, never the
        exception's text, which may hold server paths."""
        if not frames:
            return
        rid, rest = _frame_bytes(frames[0]), frames[1:]
        claimed = None
        try:
            if rest:
                try:
                    claimed, _ = split_signature(_frame_bytes(rest[0]))
                except ProtocolError:
                    claimed = None
            user, header, buffers = decode_signed(rest, self.users.key, "to_server")
            self.replay.check(_frame_bytes(rest[0]), header["sent_at"], header)
            self._check_identity(rid, user, rest, header)
        except ProtocolError as e:
            log.warning("rejected message from %s: %s", rid.hex()[:16], e)
            self._error(rid, e.code, e.message, e.header if isinstance(e.header, dict) else None, claimed)
            return
        except Exception:  # noqa: BLE001 - nothing a client sends may stop the server
            ref = uuid.uuid4().hex[:12]
            log.exception("undecodable message from %s (ref %s)", rid.hex()[:16], ref)
            self._error(rid, "malformed", f"the message could not be decoded (server log ref {ref})",
                        claimed_user=claimed)
            return
        session = self.sessions.setdefault(rid, {"since": time.time(), "user": user})
        session["last_seen"] = time.time()
        session["request_digest"] = _frame_bytes(rest[0]).decode("ascii", "replace")  # of the request being handled
        try:
            getattr(self, "_on_" + header["type"])(rid, header, buffers)
        except (JobStoreError, ProtocolError, InvalidOptionError, JobError) as e:
            log.info("%s from %s refused: %s", header["type"], rid.hex()[:16], e)
            self._error(rid, e.code, e.message, header)
        except Exception as e:  # noqa: BLE001 - a bug in a handler must not stop the server
            ref = uuid.uuid4().hex[:12]
            log.exception("error handling %s (ref %s)", header["type"], ref)
            self._error(rid, "internal_error", f"{header['type']} failed on the server ({type(e).__name__}; "
                                               f"server log ref {ref})", header)

    def _check_identity(self, rid: bytes, user: str, frames: list, header: dict) -> None:
        """Refuse a request whose signing user does not own the connection it came on.

        Raises:
            ProtocolError: ``forbidden`` when the routing id's session belongs to another
                user, or (with CURVE) the HMAC user is not the CURVE key's user (the
                backend's own key is accepted from any authenticated CURVE peer).
        """
        session = self.sessions.get(rid)
        if session is not None and session.get("user") != user:
            raise ProtocolError("forbidden", "this connection belongs to another user; open a new connection",
                                header)
        if self.curve_keys is not None and user != "":
            curve_user = _curve_user(frames)
            if curve_user != user:
                raise ProtocolError("forbidden", "the message's user is not the user of the CURVE key it "
                                                 "came through; use one credentials file for both", header)

    def _user(self, rid: bytes) -> str:
        return self.sessions[rid]["user"]

    def _visible_job(self, rid: bytes, job_id) -> dict:
        """The job, if the session's user may see it (its owner, or an admin).

        Raises:
            JobStoreError: ``unknown_job`` for a missing job and for another user's job alike.
        """
        job = self.store.get(job_id)
        user = self._user(rid)
        if not self.users.is_admin(user) and job.get("owner") != user:
            raise JobStoreError("unknown_job", f"no job with id {job_id!r}")
        return job

    def _on_hello(self, rid, req, _bufs) -> None:
        self.sessions[rid]["client"] = req.get("client")
        log.info("hello from %s (%s)", rid.hex()[:16], req.get("client"))
        self._reply(rid, req, "welcome", version=PROTOCOL_VERSION, server="gen4d-backend")

    def _on_ping(self, rid, req, _bufs) -> None:
        self._reply(rid, req, "pong", time=time.time())

    def _on_submit(self, rid, req, bufs) -> None:
        validate_job_spec(req["spec"])  # an unknown or ill-typed option is refused before anything is stored
        from backend.models.registry import check_wire_models
        check_wire_models(req["spec"].get("models"))  # roles and hub ids only, never a server path
        user = self._user(rid)
        job = self.store.create(req["spec"], [(f["name"], b) for f, b in zip(req["files"], bufs)],
                                owner=user or None, request_digest=self.sessions[rid].get("request_digest"))
        job_id = job["job_id"]
        self.subscribers[job_id].add(rid)
        self.worker.enqueue(job_id)
        self._reply(rid, req, "queued", job_id=job_id, position=self.worker.queue_position(job_id))

    def _on_cancel(self, rid, req, _bufs) -> None:
        self._visible_job(rid, req["job_id"])  # unknown_job check
        self.worker.cancel(req["job_id"])
        self._reply(rid, req, "ack", job_id=req["job_id"])

    def _on_list_jobs(self, rid, req, _bufs) -> None:
        user = self._user(rid)
        jobs = self.store.list()
        if not self.users.is_admin(user):
            jobs = [j for j in jobs if j.get("owner") == user]
        self._reply(rid, req, "jobs", jobs=[{k: v for k, v in j.items() if k != "request_digest"} for j in jobs])

    def _on_watch(self, rid, req, _bufs) -> None:
        job = self._visible_job(rid, req["job_id"])
        if job["state"] not in TERMINAL_STATES:
            self.subscribers[job["job_id"]].add(rid)
        self._reply(rid, req, "ack", job_id=job["job_id"])
        for header in replay_events(job):
            self._send(rid, header)

    def _on_fetch_result(self, rid, req, _bufs) -> None:
        job = self._visible_job(rid, req["job_id"])
        if job["state"] != "completed":
            raise JobStoreError("not_completed", f"job {job['job_id']} is {job['state']}; "
                                                 f"only completed jobs have a result to fetch")
        files = job["files"] or []
        index = req["index"]
        if not 0 <= index < len(files):
            raise ProtocolError("invalid_field", f"index {index} out of range 0..{len(files) - 1}")
        data = (self.store.result_dir(job["job_id"]) / files[index]).read_bytes()
        self._reply(rid, req, "result_chunk", [data], job_id=job["job_id"], index=index,
                    count=len(files), name=files[index])

    def forget_idle_sessions(self) -> None:
        """Drop sessions silent for longer than :data:`SESSION_IDLE_S`, and their
        subscriptions: events are signed with the session user's key, so a subscriber
        without a session could not read them (the add-on pings every few seconds and
        watches again after a reconnect)."""
        cutoff = time.time() - SESSION_IDLE_S
        for rid in [r for r, s in self.sessions.items() if s["last_seen"] < cutoff]:
            del self.sessions[rid]
            for subscribers in self.subscribers.values():
                subscribers.discard(rid)

    # -- loop -----------------------------------------------------------------------

    def run(self, address: str, stop_event: threading.Event, context: Optional[zmq.Context] = None) -> None:
        """Bind, start the worker, and serve until ``stop_event`` is set.

        Raises:
            OSError: the address cannot be bound.
        """
        ctx = context or zmq.Context()
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        # a second connection claiming a connected routing id is not attached: no takeover
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 0)
        self.sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        self.sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        if self.curve_keys is not None:
            self._authenticator = _start_authenticator(ctx, self.users)
            public, secret = self.curve_keys
            self.sock.curve_secretkey = secret
            self.sock.curve_publickey = public
            self.sock.curve_server = True
        # a part larger than this drops the sender's connection before it is buffered
        self.sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_part_bytes)
        try:
            self.sock.bind(address)
        except zmq.ZMQError as e:
            self.sock.close(0)
            if self._authenticator is not None:
                self._authenticator.stop()
            if context is None:
                ctx.term()
            raise OSError(f"cannot listen on {address}: {e}") from None
        endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.worker.start(self.store.pending)
        print(f"gen4d backend listening on {endpoint} (data dir {self.store.root.parent})", flush=True)
        log.info("listening on %s", endpoint)
        last_gc = time.monotonic()
        try:
            while not stop_event.is_set():
                if self.sock.poll(int(POLL_S * 1000), zmq.POLLIN):
                    for _ in range(100):
                        try:
                            frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=self.curve_keys is None)
                        except zmq.Again:
                            break
                        try:
                            self.handle(frames)
                        except Exception:  # noqa: BLE001 - handle() never raises; this is the last guard
                            log.exception("unexpected error handling a message")
                self.drain_outbox()
                if time.monotonic() - last_gc > 60:
                    self.forget_idle_sessions()
                    last_gc = time.monotonic()
        finally:
            log.info("stopping")
            self.worker.stop()
            self.drain_outbox()
            self.sock.close(0)
            if self._authenticator is not None:
                self._authenticator.stop()
            if context is None:
                ctx.term()


def _frame_bytes(frame) -> bytes:
    return frame.bytes if hasattr(frame, "bytes") else bytes(frame)


def _curve_user(frames: list) -> Optional[str]:
    """The ``User-Id`` libzmq attached to a message received over CURVE (set by the ZAP
    handler, :func:`_start_authenticator`), or None."""
    for frame in frames:
        get = getattr(frame, "get", None)
        if get is not None:
            try:
                value = get("User-Id")
            except zmq.ZMQError:
                return None
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return None


def _start_authenticator(ctx: zmq.Context, users: Users):
    """Start pyzmq's ZAP handler (:class:`zmq.auth.thread.ThreadAuthenticator`) allowing the
    users' registered CURVE public keys, with each key's user name as the ``User-Id``."""
    from zmq.auth.thread import ThreadAuthenticator

    class _Provider:
        def callback(self, domain, key):  # noqa: D401 - pyzmq's credentials-provider interface
            return users.user_for_curve_key(key) is not None

    class _Authenticator(ThreadAuthenticator):
        def curve_user_id(self, client_public_key: bytes) -> str:
            from zmq.utils import z85
            return users.user_for_curve_key(z85.encode(client_public_key)) or ""

    auth = _Authenticator(ctx, log=logging.getLogger("gen4d.zap"))
    auth.start()
    auth.configure_curve_callback("*", credentials_provider=_Provider())
    return auth


def replay_events(job: dict) -> list[dict]:
    """Return the event headers that describe a job's current state (for ``watch``).

    Args:
        job: a job state dict from :meth:`JobStore.get`.

    Returns:
        ``[queued]``; ``[started, progress?]``; or ``[completed|failed|cancelled]``.
    """
    job_id, state = job["job_id"], job["state"]
    if state == "queued":
        return [make_header("queued", job_id=job_id)]
    if state == "running":
        out = [make_header("started", job_id=job_id, node=job.get("node"))]
        if job.get("progress"):
            out.append(make_header("progress", job_id=job_id, **job["progress"]))
        return out
    if state == "completed":
        return [make_header("completed", job_id=job_id, frame_count=job["frame_count"] or 0,
                            files=job["files"] or [])]
    if state == "failed":
        return [make_header("failed", job_id=job_id, code=job["error_code"] or "internal_error",
                            message=job["error_message"] or "")]
    return [make_header("cancelled", job_id=job_id)]


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def curve_keys_for(address: str, data_dir: Path, curve: Optional[bool] = None) -> Optional[tuple[bytes, bytes]]:
    """Decide whether the server speaks CURVE and return its key pair (or None).

    Args:
        address: the address to bind.
        data_dir: the data folder (``curve/``, ``users/``).
        curve: True = require CURVE; False = plain TCP (refused off loopback); None = CURVE
            exactly when ``address`` is not loopback (:func:`is_loopback`).

    Raises:
        ServeRefused: CURVE is needed but the server has no key pair or no user has a
            CURVE key (the message names ``python -m backend users add``); or ``curve`` is
            False off loopback.
    """
    need = (not is_loopback(address)) if curve is None else curve
    if not need:
        if not is_loopback(address):
            raise ServeRefused(f"refusing to listen on {address} without CurveZMQ: anyone on the network could "
                               f"read the traffic; drop --no-curve")
        return None
    try:
        keys = server_curve_keys(data_dir)
    except UserError as e:
        raise ServeRefused(str(e)) from None
    users = Users(data_dir, own_key=b"-")
    if keys is None or not users.names():
        why = "listening off loopback needs" if not is_loopback(address) else "--curve needs"
        raise ServeRefused(f"{why} CurveZMQ keys and none are configured in {data_dir}: add a user with "
                           f"`python -m backend users add NAME --data-dir {data_dir}` (it makes the server's "
                           f"key pair and the user's credentials file for the add-on), then start again")
    return keys


def serve(address: str = DEFAULT_ADDRESS, data_dir: Optional[Path] = None, key: Optional[bytes] = None,
          stop_event: Optional[threading.Event] = None, curve: Optional[bool] = None, executor: str = "local",
          executor_options: Optional[dict] = None) -> None:
    """Run the backend server until ``stop_event`` is set (or SIGTERM/SIGINT in the main thread).

    Prints ``gen4d backend listening on <endpoint> (data dir <dir>)`` to stdout once bound.

    Args:
        address: ZeroMQ endpoint to bind; loopback by default. Port ``*`` picks a free one.
        data_dir: data folder; :func:`default_data_dir` if None.
        key: HMAC key; if None it is loaded from (or created at) ``<data_dir>/gen4d.key``.
        stop_event: set it from another thread to stop the server.
        curve: see :func:`curve_keys_for` (None: CurveZMQ exactly off loopback).
        executor, executor_options: what runs the jobs (:func:`backend.executors.make_executor`).

    Raises:
        OSError: the address cannot be bound or the data folder is not writable.
        ServeRefused: off loopback without CURVE keys (:func:`curve_keys_for`).
        ValueError, ImportError: an unknown executor, or ``ray`` without Ray installed.
    """
    _setup_logging()
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    curve_keys = curve_keys_for(address, data_dir, curve)
    if key is None:
        key = load_or_create_key(data_dir / "gen4d.key")
    stop_event = stop_event or threading.Event()
    restore = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            restore[sig] = signal.signal(sig, lambda *_: stop_event.set())
    try:
        Server(data_dir, key, curve_keys=curve_keys, executor=executor,
               executor_options=executor_options).run(address, stop_event)
    finally:
        for sig, handler in restore.items():
            signal.signal(sig, handler)
