"""ZeroMQ endpoint helpers shared by the backend and the add-on."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback(address: str) -> bool:
    """True for ``ipc://`` / ``inproc://`` endpoints and TCP endpoints on ``localhost``,
    127.0.0.0/8 or ``::1``. ``tcp://*:port`` and ``tcp://0.0.0.0:port`` listen on every
    interface: not loopback."""
    if address.startswith(("ipc://", "inproc://")):
        return True
    host = urlsplit(address).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
