"""Message types and their declarative schemas, plus validation.

Every header is a JSON object with ``v`` (int, :data:`PROTOCOL_VERSION`), ``type`` (str)
and the fields listed for its type in :data:`SCHEMAS`. Requests (client to server) carry
a client-chosen random ``msg_id`` and ``sent_at`` (the sender's clock, Unix seconds; the
server refuses a request outside its replay window or seen before,
:class:`backend.replay.ReplayGuard`); replies carry ``in_reply_to`` with that id. Job
events carry ``job_id``.

Version 2 (this one) signs frame boundaries and the user (:mod:`protocol.framing`) and
adds ``sent_at``; a version-1 peer fails the signature check.

Field type names used in the schemas: ``str``, ``int`` (not bool), ``float`` (int or
float, not bool), ``bool``, ``dict``, ``list``, ``files`` (list of ``{name, size}``),
``str_list``; a trailing ``?`` means the value may be null. A field is required unless
listed in the schema's ``optional`` set.
"""

from __future__ import annotations

import math
import time
import uuid
from pathlib import PurePosixPath
from typing import Optional

from .errors import ProtocolError
from .limits import MESSAGE_PART_BYTES, UPLOAD_BYTES, UPLOAD_FILES, describe_bytes
from .formats.job_states import TERMINAL_STATES

PROTOCOL_VERSION = 2

#: Requests a client may send to the server.
CLIENT_TYPES = frozenset({"hello", "submit", "cancel", "list_jobs", "watch", "fetch_result", "ping"})
#: Events after which a job never changes again: named like the job's terminal states.
TERMINAL_EVENTS = TERMINAL_STATES
#: Job events the server pushes to subscribers of a job.
EVENT_TYPES = frozenset({"queued", "started", "progress", "preview"}) | TERMINAL_EVENTS
#: Everything the server may send.
SERVER_TYPES = frozenset({"welcome", "pong", "jobs", "ack", "error", "result_chunk"}) | EVENT_TYPES

_REQ = {"msg_id": "str", "sent_at": "float"}
_REPLY = {"in_reply_to": "str?"}

#: type -> {"fields": {name: type}, "optional": set, "buffers": int | "files"}
SCHEMAS: dict[str, dict] = {
    # client -> server
    "hello": {"fields": {**_REQ, "client": "str"}, "optional": {"client"}, "buffers": 0},
    "ping": {"fields": {**_REQ}, "buffers": 0},
    "submit": {"fields": {**_REQ, "spec": "dict", "files": "files"}, "buffers": "files"},
    "cancel": {"fields": {**_REQ, "job_id": "str"}, "buffers": 0},
    "list_jobs": {"fields": {**_REQ}, "buffers": 0},
    "watch": {"fields": {**_REQ, "job_id": "str"}, "buffers": 0},
    "fetch_result": {"fields": {**_REQ, "job_id": "str", "index": "int"}, "buffers": 0},
    # server -> client: replies
    "welcome": {"fields": {**_REPLY, "version": "int", "server": "str"}, "optional": {"server"},
                "buffers": 0},
    "pong": {"fields": {**_REPLY, "time": "float"}, "optional": {"time"}, "buffers": 0},
    "jobs": {"fields": {**_REPLY, "jobs": "list"}, "buffers": 0},
    "ack": {"fields": {**_REPLY, "job_id": "str?"}, "optional": {"job_id"}, "buffers": 0},
    "error": {"fields": {"in_reply_to": "str?", "code": "str", "message": "str"}, "buffers": 0},
    "result_chunk": {"fields": {**_REPLY, "job_id": "str", "index": "int", "count": "int", "name": "str"},
                     "buffers": 1},
    # server -> client: job events (``in_reply_to`` set when the event answers a request)
    "queued": {"fields": {**_REPLY, "job_id": "str", "position": "int"}, "optional": {"position"},
               "buffers": 0},
    "started": {"fields": {**_REPLY, "job_id": "str", "node": "str?"}, "optional": {"node"}, "buffers": 0},
    "progress": {"fields": {**_REPLY, "job_id": "str", "stage": "str", "step": "int", "total": "int",
                            "loss": "float?", "eta_s": "float?", "message": "str?"}, "buffers": 0},
    "preview": {"fields": {**_REPLY, "job_id": "str", "stage": "str"}, "buffers": 1},
    "completed": {"fields": {**_REPLY, "job_id": "str", "frame_count": "int", "files": "str_list"},
                  "buffers": 0},
    "failed": {"fields": {**_REPLY, "job_id": "str", "code": "str", "message": "str"}, "buffers": 0},
    "cancelled": {"fields": {**_REPLY, "job_id": "str"}, "buffers": 0},
}
# ``in_reply_to`` is optional on every server message; error requires the key (may be null).
for _name, _schema in SCHEMAS.items():
    _schema.setdefault("optional", set())
    if _name in SERVER_TYPES and _name != "error":
        _schema["optional"] = set(_schema["optional"]) | {"in_reply_to"}


def new_msg_id() -> str:
    """Return a fresh random message id (32 hex characters)."""
    return uuid.uuid4().hex


def make_header(type_: str, **fields) -> dict:
    """Build a header dict ``{"v": PROTOCOL_VERSION, "type": type_, **fields}``; a request
    (:data:`CLIENT_TYPES`) gets ``sent_at`` (now, Unix seconds) unless given.

    Args:
        type_: message type, one of :data:`SCHEMAS`.
        **fields: the type's fields.

    Returns:
        The header dict (not validated; :func:`protocol.framing.encode_message` validates).
    """
    if type_ in CLIENT_TYPES:
        fields.setdefault("sent_at", time.time())
    return {"v": PROTOCOL_VERSION, "type": type_, **fields}


def _type_ok(value, tname: str) -> bool:
    nullable = tname.endswith("?")
    if nullable:
        if value is None:
            return True
        tname = tname[:-1]
    if tname == "str":
        return isinstance(value, str)
    if tname == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if tname == "float":
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value))
    if tname == "bool":
        return isinstance(value, bool)
    if tname == "dict":
        return isinstance(value, dict)
    if tname == "list":
        return isinstance(value, list)
    if tname == "str_list":
        return isinstance(value, list) and all(isinstance(x, str) for x in value)
    if tname == "files":
        return isinstance(value, list) and all(
            isinstance(f, dict) and set(f) == {"name", "size"} and isinstance(f["name"], str)
            and isinstance(f["size"], int) and not isinstance(f["size"], bool) and f["size"] >= 0
            for f in value)
    raise ValueError(f"unknown schema type {tname!r}")  # pragma: no cover - schema bug


def check_header_basics(header) -> None:
    """Check that a decoded header is an object with an int ``v`` and a str ``type``.

    Raises:
        ProtocolError: ``malformed`` otherwise.
    """
    if not isinstance(header, dict):
        raise ProtocolError("malformed", "header is not a JSON object")
    if not isinstance(header.get("type"), str):
        raise ProtocolError("malformed", "header has no string field 'type'", header)
    v = header.get("v")
    if not isinstance(v, int) or isinstance(v, bool):
        raise ProtocolError("malformed", "header has no integer field 'v' (protocol version)", header)


def validate_message(header: dict, buffers: list, direction: Optional[str] = None) -> None:
    """Validate a header and its buffers against the schema of its type.

    Checks, in order: basic shape, protocol version (except for ``welcome`` and ``error``,
    which must stay readable across versions), known type (for the direction), required
    fields and their types, unexpected fields, and the number of buffers.

    Args:
        header: decoded header dict.
        buffers: the message's binary frames.
        direction: ``"to_server"`` (only client requests allowed), ``"to_client"`` (only
            server messages allowed) or None (any known type).

    Raises:
        ProtocolError: with code ``malformed``, ``version_mismatch``, ``unknown_type`` or
            ``invalid_field``; ``.header`` is the header.
    """
    check_header_basics(header)
    mtype = header["type"]
    if header["v"] != PROTOCOL_VERSION and mtype not in ("welcome", "error"):
        raise ProtocolError("version_mismatch",
                            f"message has protocol version {header['v']}, this side speaks "
                            f"{PROTOCOL_VERSION}; update the add-on or the backend so they match", header)
    allowed = {"to_server": CLIENT_TYPES, "to_client": SERVER_TYPES, None: SCHEMAS.keys()}[direction]
    if mtype not in allowed:
        raise ProtocolError("unknown_type", f"unknown message type {mtype!r}", header)
    schema = SCHEMAS[mtype]
    fields = schema["fields"]
    for name, tname in fields.items():
        if name not in header:
            if name in schema["optional"]:
                continue
            raise ProtocolError("invalid_field", f"{mtype}: missing required field {name!r}", header)
        if not _type_ok(header[name], tname):
            raise ProtocolError("invalid_field",
                                f"{mtype}: field {name!r} must be {tname.rstrip('?')}"
                                f"{' or null' if tname.endswith('?') else ''}, got {type(header[name]).__name__}",
                                header)
    extra = set(header) - set(fields) - {"v", "type", "msg_id", "in_reply_to"}
    if extra:
        raise ProtocolError("invalid_field", f"{mtype}: unexpected field(s) {sorted(extra)}", header)
    want = schema["buffers"]
    if want == "files":
        files = header["files"]
        if len(files) != len(buffers):
            raise ProtocolError("invalid_field",
                                f"{mtype}: 'files' lists {len(files)} file(s) but {len(buffers)} buffer(s) came",
                                header)
        for f, buf in zip(files, buffers):
            if f["size"] != len(buf):
                raise ProtocolError("invalid_field",
                                    f"{mtype}: file {f['name']!r} declares size {f['size']} but its buffer "
                                    f"has {len(buf)} bytes", header)
            check_relative_name(f["name"], header)
        check_distinct_files([f["name"] for f in files], header)
        check_upload_size([len(b) for b in buffers], header)
    elif len(buffers) != want:
        raise ProtocolError("invalid_field", f"{mtype}: expects {want} buffer(s), got {len(buffers)}", header)


#: longest path component of an uploaded file name, in UTF-8 bytes (the common file system limit).
MAX_NAME_COMPONENT_BYTES = 255
#: longest uploaded file name, in UTF-8 bytes.
MAX_NAME_BYTES = 1024


def check_distinct_files(names: list[str], header: Optional[dict] = None) -> None:
    """Check that uploaded file names can all be written: no name twice (after ``.``
    components are dropped) and no name that is also a folder of another (``a`` beside
    ``a/b``).

    Raises:
        ProtocolError: ``invalid_field`` naming the clash.
    """
    files = [check_relative_name(n, header).as_posix() for n in names]
    seen: set[str] = set()
    for name in files:
        if name in seen:
            raise ProtocolError("invalid_field", f"file name {name!r} appears twice", header)
        seen.add(name)
    folders = {"/".join(n.split("/")[:i]) for n in files for i in range(1, n.count("/") + 1)}
    clash = sorted(seen & folders)
    if clash:
        raise ProtocolError("invalid_field", f"file name {clash[0]!r} is also a folder of another file", header)


def check_upload_size(sizes: list[int], header: Optional[dict] = None) -> None:
    """Check the files of one ``submit`` against :data:`protocol.limits.UPLOAD_FILES`,
    :data:`protocol.limits.MESSAGE_PART_BYTES` (per file; the server's socket drops a larger
    part before this runs, so the check is for the sender, which gets a clear error instead
    of a dropped connection) and :data:`protocol.limits.UPLOAD_BYTES` (all files).

    Args:
        sizes: byte size of each uploaded file.

    Raises:
        ProtocolError: ``upload_too_large`` naming the count or total and the limit.
    """
    if len(sizes) > UPLOAD_FILES:
        raise ProtocolError("upload_too_large", f"{len(sizes)} files uploaded; at most {UPLOAD_FILES} per job",
                            header)
    largest = max(sizes, default=0)
    if largest > MESSAGE_PART_BYTES:
        raise ProtocolError("upload_too_large", f"a {describe_bytes(largest)} file; at most "
                                                f"{describe_bytes(MESSAGE_PART_BYTES)} per file", header)
    total = sum(sizes)
    if total > UPLOAD_BYTES:
        raise ProtocolError("upload_too_large", f"{describe_bytes(total)} uploaded; at most "
                                                f"{describe_bytes(UPLOAD_BYTES)} per job", header)


def check_relative_name(name: str, header: Optional[dict] = None) -> PurePosixPath:
    """Check a file name from the wire: a relative POSIX path without ``..``, valid UTF-8,
    at most :data:`MAX_NAME_BYTES` long with components of at most
    :data:`MAX_NAME_COMPONENT_BYTES`.

    Args:
        name: e.g. ``"train/r_000.png"``.
        header: header to attach to the error, if any.

    Returns:
        The name as a :class:`PurePosixPath`.

    Raises:
        ProtocolError: ``invalid_field`` for empty, absolute, ``..``-containing,
            backslash, drive-letter or NUL-containing names, names that are not valid
            UTF-8 (lone surrogates) and names or components over the length limits.
    """
    bad = None
    try:
        encoded = name.encode("utf-8") if isinstance(name, str) else b""
    except UnicodeEncodeError:
        raise ProtocolError("invalid_field", f"file name {name!r:.80} is not valid UTF-8", header) from None
    if not isinstance(name, str) or not name:
        bad = "is empty"
    elif len(encoded) > MAX_NAME_BYTES:
        raise ProtocolError("invalid_field", f"file name {name[:60]!r}… is {len(encoded)} bytes long; "
                                             f"the limit is {MAX_NAME_BYTES}", header)
    elif any(len(p.encode("utf-8")) > MAX_NAME_COMPONENT_BYTES for p in name.split("/")):
        bad = f"has a component over {MAX_NAME_COMPONENT_BYTES} bytes"
    elif "\x00" in name or "\\" in name:
        bad = "contains a NUL or backslash"
    elif name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        bad = "is absolute"
    else:
        parts = name.split("/")
        if any(p in ("..", "") for p in parts):
            bad = "contains '..' or an empty path component"
        elif all(p == "." for p in parts):
            bad = "names no file"
    if bad:
        raise ProtocolError("invalid_field", f"file name {name!r} {bad}; use a relative path", header)
    return PurePosixPath(*[p for p in name.split("/") if p != "."])
