"""gen4d wire contract: message schemas, framing with HMAC signing, key files, the client,
and the shared file formats (:mod:`protocol.formats`).

Depends only on the standard library, numpy and pyzmq, and uses only relative imports,
because ``build_addon.py`` copies this package into the Blender extension. pyzmq is
imported only when the client is first used (``protocol.BackendClient`` or
``protocol.collect_footage_files``), so the add-on's importer can use
:mod:`protocol.formats` without loading pyzmq.
"""

from . import formats
from .addresses import is_loopback
from .errors import BackendUnavailable, ProtocolError, RemoteError
from .framing import decode_message, encode_message, sign
from .keys import load_credentials, load_key, load_or_create_key
from .messages import (CLIENT_TYPES, EVENT_TYPES, PROTOCOL_VERSION, SCHEMAS, SERVER_TYPES, TERMINAL_EVENTS,
                       check_relative_name, make_header, new_msg_id, validate_message)

#: Names served by :mod:`.client`, imported on first access (it imports pyzmq).
_CLIENT_NAMES = ("BackendClient", "collect_footage_files")

__all__ = [
    "formats",
    "BackendClient", "collect_footage_files",
    "BackendUnavailable", "ProtocolError", "RemoteError",
    "decode_message", "encode_message", "sign",
    "load_credentials", "load_key", "load_or_create_key",
    "CLIENT_TYPES", "EVENT_TYPES", "PROTOCOL_VERSION", "SCHEMAS", "SERVER_TYPES", "TERMINAL_EVENTS",
    "check_relative_name", "make_header", "new_msg_id", "validate_message", "is_loopback",
]


def __getattr__(name: str):
    """Import :mod:`.client` (and pyzmq) on first access to ``BackendClient`` or
    ``collect_footage_files``.

    Raises:
        AttributeError: any other unknown name.
        ImportError: pyzmq is not installed.
    """
    if name in _CLIENT_NAMES:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """Module attributes, including the lazily imported client names."""
    return sorted(set(globals()) | set(_CLIENT_NAMES))
