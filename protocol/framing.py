"""Multipart framing and HMAC signing (after the Jupyter kernel-protocol scheme).

A message is the ZeroMQ multipart ``[signature, header_json, *buffers]``; a ROUTER
socket prepends the peer's routing id. ``signature`` is ``<user>:<hex>`` for a named
user's key (:mod:`backend.users`) or ``<hex>`` for the backend's own key, where ``<hex>``
is the HMAC-SHA256 under that key of :data:`SIGNATURE_DOMAIN`, the user name, the number
of frames and every frame prefixed by its length (:func:`sign`). Jupyter signs the frames'
bytes run together, so ``[a, b""]`` and ``[a]`` (or a byte moved across a boundary) share
a signature; the lengths here make every frame boundary part of what is signed.

Replays (a captured message sent again) are refused by the server, not here:
:class:`backend.replay.ReplayGuard` over the request's ``msg_id``, ``sent_at`` and
signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Callable, Optional, Sequence, Union

from .errors import ProtocolError
from .messages import validate_message
from .strict_json import MAX_HEADER_BYTES, MAX_JSON_DEPTH, MAX_REPLY_HEADER_BYTES, JSONRefused, loads_strict


#: first bytes of every signed text: ties a signature to this protocol and version.
SIGNATURE_DOMAIN = b"gen4d-signature-v2"
#: a user name in a signature frame: lower-case letters, digits, ``_ . -``; 1-64 characters.
USER_NAME_RE = re.compile(r"^[a-z0-9_][a-z0-9_.-]{0,63}$")
#: longest signature frame: a 64-character user name, ``:`` and 64 hex digits.
MAX_SIGNATURE_BYTES = 64 + 1 + 64


def _length(n: int) -> bytes:
    return n.to_bytes(8, "big")


def sign(key: bytes, parts: Sequence[bytes], user: str = "") -> bytes:
    """Return the ASCII hex HMAC-SHA256 under ``key`` of ``parts`` (header JSON then
    buffers), with the frame boundaries and the signing user included.

    The signed text is :data:`SIGNATURE_DOMAIN`, then ``user`` (UTF-8), the number of parts
    and each part, each of the last three preceded by its length as 8 big-endian bytes.

    Args:
        key: the HMAC key (the user's, or the backend's own for ``user=""``).
        parts: ``[header_json, *buffers]``.
        user: the user name the signature frame names (``""``: the backend's own key).

    Raises:
        ValueError: if ``key`` is empty.
    """
    if not key:
        raise ValueError("an empty key is not allowed; load it with protocol.load_key()")
    mac = hmac.new(bytes(key), SIGNATURE_DOMAIN, digestmod=hashlib.sha256)
    name = user.encode("utf-8")
    mac.update(_length(len(name)))
    mac.update(name)
    mac.update(_length(len(parts)))
    for part in parts:
        mac.update(_length(len(part)))
        mac.update(part)
    return mac.hexdigest().encode("ascii")


def signature_frame(key: bytes, parts: Sequence[bytes], user: Optional[str] = None) -> bytes:
    """Return the first frame of a message: ``<user>:<hex>``, or ``<hex>`` when ``user``
    is None or empty (see :func:`sign`).

    Raises:
        ValueError: an empty key, or a user name outside :data:`USER_NAME_RE`.
    """
    if not user:
        return sign(key, parts)
    if not USER_NAME_RE.match(user):
        raise ValueError(f"user name {user!r} must be 1-64 of a-z 0-9 _ . - (starting with a letter, digit or _)")
    return user.encode("ascii") + b":" + sign(key, parts, user)


def split_signature(frame: bytes) -> tuple[str, bytes]:
    """Split a signature frame into ``(user, hex digest)``; ``user`` is ``""`` without a prefix.

    Raises:
        ProtocolError: ``malformed`` when the frame is over :data:`MAX_SIGNATURE_BYTES` or
            names a user outside :data:`USER_NAME_RE`.
    """
    if len(frame) > MAX_SIGNATURE_BYTES:
        raise ProtocolError("malformed", f"signature frame of {len(frame)} bytes is over the limit of "
                                         f"{MAX_SIGNATURE_BYTES}")
    if b":" not in frame:
        return "", frame
    user, digest = frame.split(b":", 1)
    try:
        name = user.decode("ascii")
    except UnicodeDecodeError:
        name = ""
    if not USER_NAME_RE.match(name):
        raise ProtocolError("malformed", "the signature frame names an invalid user")
    return name, digest


def encode_message(header: dict, buffers: Sequence[bytes], key: bytes,
                   direction: Optional[str] = None, user: Optional[str] = None) -> list[bytes]:
    """Validate, serialize and sign one message.

    Args:
        header: header dict (``v``, ``type`` and the type's fields).
        buffers: binary frames (file bytes, PNG bytes), each bytes-like.
        key: the HMAC key (the user's, or the backend's own).
        direction: passed to :func:`protocol.messages.validate_message`.
        user: the user whose key signs (named in the signature frame); None or ``""`` for
            the backend's own key and for everything the server sends.

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
    return [signature_frame(key, [hjson, *bufs], user), hjson, *bufs]


KeyLookup = Callable[[str], Optional[bytes]]


def decode_message(frames: Sequence[bytes], key: bytes,
                   direction: Optional[str] = None) -> tuple[dict, list[bytes]]:
    """Check the signature of a multipart message under one key, parse and validate its
    header (the client's side; the server uses :func:`decode_signed`, which knows users).

    Returns:
        ``(header, buffers)``.

    Raises:
        ProtocolError: as :func:`decode_signed`; a signature that names a user is checked
            with ``key`` like any other.
    """
    _, header, buffers = decode_signed(frames, lambda _user: key, direction)
    return header, buffers


def decode_signed(frames: Sequence[bytes], keys: Union[bytes, KeyLookup],
                  direction: Optional[str] = None) -> tuple[str, dict, list[bytes]]:
    """Check the signature of a multipart message, parse and validate its header.

    Args:
        frames: ``[signature, header_json, *buffers]`` (routing id already removed);
            ``bytes`` or ``zmq.Frame`` items.
        keys: the HMAC key, or ``keys(user) -> key | None`` giving the key of the user the
            signature frame names (``""``: the backend's own key); None = no such user,
            reported exactly like a wrong key (no oracle for user names).
        direction: ``"to_server"``, ``"to_client"`` or None; see
            :func:`protocol.messages.validate_message`.

    Returns:
        ``(user, header, buffers)``; ``user`` is ``""`` for the backend's own key.

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
    user, digest = split_signature(signature)
    key = keys(user) if callable(keys) else keys
    # an unknown user costs the same HMAC as a wrong key: no timing oracle for user names
    expected = sign(key or b"\0" * 32, [hjson, *buffers], user)
    if not key or not hmac.compare_digest(digest, expected):
        raise ProtocolError("bad_signature",
                            "message signature does not match; both sides must use the same key "
                            "(the backend's gen4d.key, or the user's credentials file) and the same "
                            "protocol version")
    try:
        header = loads_strict(hjson, limit, MAX_JSON_DEPTH)
    except JSONRefused as e:
        raise ProtocolError("malformed", f"header refused: {e}") from None
    validate_message(header, buffers, direction)
    return user, header, buffers
