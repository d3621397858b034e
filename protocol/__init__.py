"""gen4d wire contract: message schemas, framing with HMAC signing, key files, and the client.

Depends only on the standard library, numpy and pyzmq, and uses only relative imports,
because ``build_addon.py`` copies this package into the Blender extension.
"""

from .client import BackendClient, collect_footage_files
from .errors import BackendUnavailable, ProtocolError, RemoteError
from .framing import decode_message, encode_message, sign
from .keys import load_key, load_or_create_key
from .messages import (CLIENT_TYPES, EVENT_TYPES, PROTOCOL_VERSION, SCHEMAS, SERVER_TYPES, TERMINAL_EVENTS,
                       check_relative_name, make_header, new_msg_id, validate_message)

__all__ = [
    "BackendClient", "collect_footage_files",
    "BackendUnavailable", "ProtocolError", "RemoteError",
    "decode_message", "encode_message", "sign",
    "load_key", "load_or_create_key",
    "CLIENT_TYPES", "EVENT_TYPES", "PROTOCOL_VERSION", "SCHEMAS", "SERVER_TYPES", "TERMINAL_EVENTS",
    "check_relative_name", "make_header", "new_msg_id", "validate_message",
]
