"""``BackendClient``: the one client of the backend, used by the add-on and the CLI demo.

It owns one DEALER socket (``LINGER 0``) and must be used from one thread only (the
add-on's background thread). Every wait has a timeout: a dead backend gives
:class:`~protocol.errors.BackendUnavailable`, never a hang. Job events that arrive while
a request waits for its reply are buffered and returned later by :meth:`poll_event`.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Callable, Optional

import zmq

from .errors import BackendUnavailable, ProtocolError, RemoteError
from .formats.transforms import TRANSFORMS_TEST, TRANSFORMS_TRAIN, TransformsError, resolve_image_path
from .framing import decode_message, encode_message
from .keys import load_credentials
from .messages import EVENT_TYPES, PROTOCOL_VERSION, TERMINAL_EVENTS, check_relative_name, make_header, new_msg_id

log = logging.getLogger("gen4d.client")

#: Assumed upload speed used to stretch the submit timeout for big uploads (bytes/s).
_UPLOAD_BYTES_PER_S = 20e6


class BackendClient:
    """A request/reply + event client for the gen4d backend.

    Args:
        address: ZeroMQ endpoint, e.g. ``"tcp://127.0.0.1:5555"``.
        key: the HMAC key: the backend's own (``gen4d.key``) or the user's.
        timeout_s: how long any request waits for its reply.
        context: a ``zmq.Context`` to use; if None the client creates (and on
            :meth:`close` terminates) its own.
        user: the user whose key ``key`` is (None: the backend's own key).
        curve: ``(client_public, client_secret, server_public)`` z85 keys to connect over
            CurveZMQ (required by a backend listening off loopback), or None.

    :meth:`from_credentials` builds one from a user's credentials file. Each socket the
    client opens has a fresh random routing id (the backend refuses a second connection
    claiming a connected id); after a timeout reopens the socket, the jobs this client
    submitted or watched and has not seen end are watched again on the next request.

    Not thread-safe: use one instance from one thread.
    """

    def __init__(self, address: str, key: bytes, timeout_s: float = 10.0, context=None,
                 user: Optional[str] = None, curve: Optional[tuple[bytes, bytes, bytes]] = None):
        if not key:
            raise ValueError("a non-empty key is required (the backend's gen4d.key)")
        self.address = address
        self.key = bytes(key)
        self.user = user or None
        self.curve = tuple(curve) if curve else None
        self.timeout_s = float(timeout_s)
        self._own_context = context is None
        self._ctx = context if context is not None else zmq.Context()
        self._events: deque = deque()
        self._followed: set[str] = set()  # jobs submitted or watched whose end this client has not seen
        self._rewatch = False
        self._sock = None
        self._open_socket()

    @classmethod
    def from_credentials(cls, address: str, path, timeout_s: float = 10.0, context=None) -> "BackendClient":
        """A client that signs as the user of a credentials file and connects over CurveZMQ.

        Raises:
            FileNotFoundError, PermissionError, ValueError: as
                :func:`protocol.keys.load_credentials`.
        """
        creds = load_credentials(path)
        return cls(address, creds["key"], timeout_s, context, user=creds["user"],
                   curve=(creds["curve_public"], creds["curve_secret"], creds["server_public"]))

    # -- socket plumbing -------------------------------------------------------------

    def _open_socket(self) -> None:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTING_ID, b"gen4d-" + uuid.uuid4().hex.encode("ascii"))
        if self.curve is not None:
            sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = self.curve
        sock.setsockopt(zmq.SNDTIMEO, max(1, int(self.timeout_s * 1000)))
        sock.connect(self.address)
        self._sock = sock

    def _reset_socket(self) -> None:
        """Drop the socket with anything still queued in it (so a late backend never sees it)."""
        if self._sock is not None:
            self._sock.close(linger=0)
        self._open_socket()
        self._rewatch = bool(self._followed)  # the new routing id has no subscriptions yet

    def _rewatch_followed(self) -> None:
        """Watch again, after a reconnect, every job this client follows (best effort)."""
        self._rewatch = False
        for job_id in sorted(self._followed):
            try:
                self._request("watch", job_id=job_id)
            except RemoteError:
                self._followed.discard(job_id)

    def _send(self, header: dict, buffers=()) -> None:
        frames = encode_message(header, list(buffers), self.key, "to_server", user=self.user)
        try:
            self._sock.send_multipart(frames, copy=len(frames) < 4)
        except zmq.Again:
            self._reset_socket()
            raise BackendUnavailable(f"could not send to the backend at {self.address} within "
                                     f"{self.timeout_s:g} s") from None

    def _receive_one(self, timeout_s: float):
        """Wait up to ``timeout_s`` for one message; return ``(header, buffers)`` or None.

        Raises:
            ProtocolError: if the message fails signature or schema checks.
        """
        if not self._sock.poll(max(0, int(timeout_s * 1000)), zmq.POLLIN):
            return None
        frames = self._sock.recv_multipart(copy=True)
        return decode_message(frames, self.key, "to_client")

    def _stash_event(self, header: dict, buffers: list) -> None:
        if header["type"] in TERMINAL_EVENTS:
            self._followed.discard(header.get("job_id"))
        event = dict(header)
        if event["type"] == "preview":
            event["png"] = buffers[0]
        self._events.append(event)

    def _request(self, mtype: str, buffers=(), timeout_s: Optional[float] = None, **fields):
        """Send a request and wait for the message whose ``in_reply_to`` is its ``msg_id``.

        Returns:
            ``(header, buffers)`` of the reply.

        Raises:
            BackendUnavailable: no reply within the timeout.
            RemoteError: the reply is an ``error``.
            ProtocolError: a reply failed signature or schema checks.
        """
        if self._rewatch and mtype != "watch":
            self._rewatch_followed()
        msg_id = new_msg_id()
        self._send(make_header(mtype, msg_id=msg_id, **fields), buffers)
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self._reset_socket()
                raise BackendUnavailable(
                    f"no reply to {mtype!r} from the backend at {self.address} within {timeout_s:g} s; "
                    f"is it running (python -m backend serve)?")
            try:
                got = self._receive_one(left)
            except ProtocolError as e:
                if e.code == "bad_signature":
                    raise ProtocolError("bad_signature",
                                        "the backend's reply failed the signature check: this client's key "
                                        "does not match the backend's (gen4d.key, or the user's credentials "
                                        "file), or the add-on and backend versions differ") from None
                raise
            if got is None:
                continue
            header, bufs = got
            # Events that answer this request (the ``queued`` reply to ``submit``) are
            # returned, not also queued for :meth:`poll_event`.
            if header["type"] in EVENT_TYPES and header.get("in_reply_to") != msg_id:
                self._stash_event(header, bufs)
            # An error without in_reply_to answers the request whose id the server could not read.
            if header.get("in_reply_to") == msg_id or (header["type"] == "error" and header["in_reply_to"] is None):
                if header["type"] == "error":
                    raise RemoteError(header["code"], header["message"])
                return header, bufs
            if header["type"] not in EVENT_TYPES:
                log.debug("dropping stale %s (in_reply_to=%s)", header["type"], header.get("in_reply_to"))

    # -- public API ------------------------------------------------------------------

    def hello(self) -> dict:
        """Negotiate the protocol version.

        Returns:
            The server's ``welcome`` header (``version``, ``server``).

        Raises:
            RemoteError: ``version_mismatch`` if the server speaks another version.
            ProtocolError: ``version_mismatch`` if the welcome names another version.
            BackendUnavailable: no answer within the timeout.
        """
        header, _ = self._request("hello", client=f"gen4d-client/{PROTOCOL_VERSION}")
        if header["version"] != PROTOCOL_VERSION:
            raise ProtocolError("version_mismatch",
                                f"backend speaks protocol {header['version']}, this client {PROTOCOL_VERSION}")
        return header

    def ping(self) -> float:
        """Send a heartbeat.

        Returns:
            Round-trip time in seconds.

        Raises:
            BackendUnavailable: no ``pong`` within the timeout.
        """
        t0 = time.monotonic()
        self._request("ping")
        return time.monotonic() - t0

    def submit(self, spec: dict, files: dict[str, bytes]) -> str:
        """Submit a job with its input files.

        Args:
            spec: the job spec, e.g. ``{"job_type": "footage", "preset": "tiny"}``.
            files: relative POSIX path -> file bytes (e.g. ``"train/r_000.png"``).

        Returns:
            The job id, once the server has stored the job and answered ``queued``.
            (The ``queued`` event is also returned by :meth:`poll_event`.)

        Raises:
            ProtocolError: ``invalid_field`` for a bad file name.
            RemoteError: the server refused the job.
            BackendUnavailable: no answer within the timeout (stretched for big uploads).
        """
        names = list(files)
        bufs = [bytes(files[n]) for n in names]
        total = sum(len(b) for b in bufs)
        header, _ = self._request("submit", bufs, timeout_s=self.timeout_s + total / _UPLOAD_BYTES_PER_S,
                                  spec=spec, files=[{"name": n, "size": len(b)} for n, b in zip(names, bufs)])
        self._followed.add(header["job_id"])
        return header["job_id"]

    def submit_footage(self, folder, spec: dict) -> str:
        """Upload a transforms-format footage folder and submit it.

        Reads ``transforms_train.json``, ``transforms_test.json`` (if present) and every
        image their ``frames[].file_path`` names (``"./train/r_000"`` with or without an
        image extension; see :func:`collect_footage_files`), and uploads them under their
        paths relative to ``folder``.

        Args:
            folder: the footage folder.
            spec: the job spec.

        Returns:
            The job id.

        Raises:
            FileNotFoundError: ``transforms_train.json`` or a named image is missing.
            ValueError: a transforms file is not valid JSON, or names an image outside the
                folder.
        """
        files = collect_footage_files(folder)
        return self.submit(spec, files)

    def cancel(self, job_id: str) -> None:
        """Ask the server to cancel a job (queued: at once; running: at its next check).

        The ``cancelled`` event follows through :meth:`poll_event`. Cancelling a finished
        job does nothing.

        Raises:
            RemoteError: ``unknown_job``.
            BackendUnavailable: no answer within the timeout.
        """
        self._request("cancel", job_id=job_id)

    def list_jobs(self) -> list[dict]:
        """List every job the backend knows (also from before a restart).

        Returns:
            One dict per job: ``job_id``, ``state``, ``spec``, ``created_at``,
            ``started_at``, ``finished_at``, ``error_code``, ``error_message``,
            ``progress`` (last progress event fields or None), ``frame_count``, ``files``.

        Raises:
            BackendUnavailable: no answer within the timeout.
        """
        header, _ = self._request("list_jobs")
        return header["jobs"]

    def watch(self, job_id: str) -> None:
        """Subscribe to a job's events (e.g. after reconnecting).

        The server answers and immediately replays the job's current state as events
        (``queued``; ``started`` + last ``progress``; or the terminal event), which
        :meth:`poll_event` returns.

        Raises:
            RemoteError: ``unknown_job``.
            BackendUnavailable: no answer within the timeout.
        """
        self._request("watch", job_id=job_id)
        self._followed.add(job_id)

    def poll_event(self, timeout_s: float = 0.0) -> Optional[dict]:
        """Return the next job event, waiting up to ``timeout_s`` seconds.

        Returns:
            The event header dict (``type`` in queued/started/progress/preview/completed/
            failed/cancelled, ``job_id``, type fields); for ``preview`` the PNG bytes are in
            ``event["png"]``. None if nothing arrived in time. Invalid messages are logged
            and dropped.
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        while not self._events:
            left = deadline - time.monotonic()
            try:
                got = self._receive_one(max(0.0, left))
            except ProtocolError as e:
                log.warning("dropping invalid message from the backend: %s", e)
                got = None
                if left <= 0:
                    return None
                continue
            if got is None:
                return None
            header, bufs = got
            if header["type"] in EVENT_TYPES:
                self._stash_event(header, bufs)
            else:
                log.debug("dropping stale %s (in_reply_to=%s)", header["type"], header.get("in_reply_to"))
        return self._events.popleft()

    def fetch_result(self, job_id: str, dest_dir, on_chunk: Optional[Callable[[int, int], None]] = None) -> Path:
        """Download a completed job's result, one file per chunk.

        Chunk 0 is ``manifest.json``, then each frame's PLY in order, then other files.

        Args:
            job_id: the job.
            dest_dir: folder to write into (created if needed); files keep their relative
                names (e.g. ``frames/frame_0000.ply``).
            on_chunk: called as ``on_chunk(index, count)`` after each chunk is written.

        Returns:
            ``Path(dest_dir)``.

        Raises:
            RemoteError: ``unknown_job``, or ``not_completed`` if the job has no result.
            ProtocolError: ``invalid_field`` for an absolute or ``..`` file name.
            BackendUnavailable: no answer within the timeout.
        """
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        index, count = 0, 1
        while index < count:
            header, bufs = self._request("fetch_result", job_id=job_id, index=index)
            if header["index"] != index or header["job_id"] != job_id:
                raise ProtocolError("invalid_field", f"asked for chunk {index} of {job_id}, got "
                                    f"chunk {header['index']} of {header['job_id']}")
            count = header["count"]
            rel = check_relative_name(header["name"], header)
            path = (root / rel).resolve()
            if root not in path.parents:
                raise ProtocolError("invalid_field", f"result file name {header['name']!r} escapes {root}")
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".part")
            tmp.write_bytes(bufs[0])
            os.replace(tmp, path)
            if on_chunk is not None:
                on_chunk(index, count)
            index += 1
        return dest

    def close(self) -> None:
        """Close the socket (LINGER 0) and, if this client created it, the context. Idempotent."""
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        if self._own_context and self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def __enter__(self) -> "BackendClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def collect_footage_files(folder) -> dict[str, bytes]:
    """Gather a transforms-format footage folder into ``{relative name: bytes}``.

    Reads ``transforms_train.json`` and ``transforms_test.json`` (if present) and every image
    their ``frames[].file_path`` names, found the way the backend's ingest finds it
    (:func:`protocol.formats.resolve_image_path`: as written, or with any of
    :data:`protocol.formats.IMAGE_EXTENSIONS` appended, so ``.png``, ``.jpg``, ``.jpeg``,
    ``.exr`` and ``.webp`` footage all upload).

    Args:
        folder: folder holding ``transforms_train.json`` (required),
            ``transforms_test.json`` (optional) and the images they name.

    Returns:
        Relative POSIX name -> file bytes, transforms files included unchanged.

    Raises:
        FileNotFoundError: a transforms file or image is missing (the message names it).
        ValueError: invalid JSON, a frame without a string ``file_path``, or an image path
            outside the folder.
    """
    folder = Path(folder)
    files: dict[str, bytes] = {}
    for name in (TRANSFORMS_TRAIN, TRANSFORMS_TEST):
        tpath = folder / name
        if not tpath.is_file():
            if name == TRANSFORMS_TRAIN:
                raise FileNotFoundError(f"{tpath} not found: a footage folder needs {TRANSFORMS_TRAIN}")
            continue
        raw = tpath.read_bytes()
        try:
            meta = json.loads(raw)
        except ValueError as e:
            raise ValueError(f"{tpath} is not valid JSON: {e}") from None
        files[name] = raw
        for frame in meta.get("frames", []) if isinstance(meta, dict) else []:
            fp = frame.get("file_path") if isinstance(frame, dict) else None
            if not isinstance(fp, str):
                raise ValueError(f"{tpath}: a frame has no string 'file_path'")
            try:
                img = resolve_image_path(folder, fp)
            except TransformsError as e:
                raise ValueError(f"{tpath}: image {fp!r} lies outside the footage folder ({e})") from None
            rel = Path(os.path.normpath(os.path.relpath(img, folder))).as_posix()
            if rel.startswith("../") or rel == ".." or os.path.isabs(rel):
                raise ValueError(f"{tpath}: image {fp!r} lies outside the footage folder")
            if rel not in files:
                files[rel] = img.read_bytes()
    return files
