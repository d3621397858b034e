"""Multipart framing and HMAC signing (the Jupyter kernel-protocol scheme).

A message is the ZeroMQ multipart ``[signature, header_json, *buffers]``; a ROUTER
socket prepends the peer's routing id. ``signature`` is the hex HMAC-SHA256, under a
shared key, of ``header_json`` followed by every buffer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Optional, Sequence

from .errors import ProtocolError
from .messages import validate_message
from .strict_json import MAX_HEADER_BYTES, MAX_JSON_DEPTH, MAX_REPLY_HEADER_BYTES, JSONRefused, loads_strict


def sign(key: bytes, parts: Sequence[bytes]) -> bytes:
    """Return the ASCII hex HMAC-SHA256 of ``parts`` (header JSON then buffers) under ``key``.

    Raises:
        ValueError: if ``key`` is empty.
    """
    if not key:
        raise ValueError("an empty key is not allowed; load it with protocol.load_key()")
    mac = hmac.new(bytes(key), digestmod=hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.hexdigest().encode("ascii")


def encode_message(header: dict, buffers: Sequence[bytes], key: bytes,
                   direction: Optional[str] = None) -> list[bytes]:
    """Validate, serialize and sign one message.

    Args:
        header: header dict (``v``, ``type`` and the type's fields).
        buffers: binary frames (file bytes, PNG bytes), each bytes-like.
        key: shared HMAC key.
        direction: passed to :func:`protocol.messages.validate_message`.

    Returns:
        ``[signature, header_json, *buffers]`` ready for ``send_multipart``.

    Raises:
        ProtocolError: if the header does not match its schema (a bug on the sending side),
            or is not JSON-serializable (``malformed``).
    """
    bufs = [bytes(b) if not isinstance(b, bytes) else b for b in buffers]
    validate_message(header, bufs, direction)
    try:
        hjson = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise ProtocolError("malformed", f"header is not JSON-serializable: {e}", header) from None
    return [sign(key, [hjson, *bufs]), hjson, *bufs]


def decode_message(frames: Sequence[bytes], key: bytes,
                   direction: Optional[str] = None) -> tuple[dict, list[bytes]]:
    """Check the signature of a multipart message, parse and validate its header.

    Args:
        frames: ``[signature, header_json, *buffers]`` (routing id already removed);
            ``bytes`` or ``zmq.Frame`` items.
        key: shared HMAC key.
        direction: ``"to_server"``, ``"to_client"`` or None; see
            :func:`protocol.messages.validate_message`.

    Returns:
        ``(header, buffers)``.

    Raises:
        ProtocolError: ``malformed`` (too few frames; not JSON, not an object, a header
            over :data:`~protocol.strict_json.MAX_HEADER_BYTES` going to the server or
            :data:`~protocol.strict_json.MAX_REPLY_HEADER_BYTES` otherwise, nested deeper
            than :data:`~protocol.strict_json.MAX_JSON_DEPTH`, or holding a non-finite
            number: :func:`protocol.strict_json.loads_strict`), ``bad_signature``
            (signature does not match; the key probably differs), ``version_mismatch``,
            ``unknown_type`` or ``invalid_field``.
    """
    frames = [f.bytes if hasattr(f, "bytes") else bytes(f) for f in frames]
    if len(frames) < 2:
        raise ProtocolError("malformed", f"expected [signature, header, *buffers], got {len(frames)} frame(s)")
    signature, hjson, buffers = frames[0], frames[1], frames[2:]
    limit = MAX_HEADER_BYTES if direction == "to_server" else MAX_REPLY_HEADER_BYTES
    if len(hjson) > limit:
        raise ProtocolError("malformed", f"header of {len(hjson)} bytes is over the limit of {limit}")
    expected = sign(key, [hjson, *buffers])
    if not hmac.compare_digest(signature, expected):
        raise ProtocolError("bad_signature",
                            "message signature does not match; both sides must use the same key "
                            "(the backend's gen4d.key)")
    try:
        header = loads_strict(hjson, limit, MAX_JSON_DEPTH)
    except JSONRefused as e:
        raise ProtocolError("malformed", f"header refused: {e}") from None
    validate_message(header, buffers, direction)
    return header, buffers
