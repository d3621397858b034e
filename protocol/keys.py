"""The shared HMAC key file: random hex text, readable only by its owner (mode 0600).

The key used for signing is the ASCII bytes of the hex text (as in Jupyter connection
files), so a user can paste the text into the add-on's preferences and use
``text.strip().encode("ascii")``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


#: shortest accepted key: 64 hex digits, 32 bytes of randomness (what load_or_create_key makes).
MIN_KEY_HEX_DIGITS = 64


def load_key(path) -> bytes:
    """Read a key file.

    Args:
        path: path of the key file (hex text).

    Returns:
        The key: the stripped file text as ASCII bytes.

    Raises:
        FileNotFoundError: if the file does not exist.
        PermissionError: on POSIX, if the file is readable or writable by its group or by
            others (the message names the ``chmod 600`` that fixes it).
        ValueError: if the file is empty, not hex text, or shorter than
            :data:`MIN_KEY_HEX_DIGITS` hex digits (32 bytes).
    """
    path = Path(path)
    text = path.read_text(encoding="ascii").strip()
    if os.name == "posix":
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise PermissionError(f"key file {path} has mode {mode:03o}: others can read or change it; "
                                  f"run `chmod 600 {path}`")
    if not text:
        raise ValueError(f"key file {path} is empty")
    try:
        bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"key file {path} does not hold hex text") from None
    if len(text) < MIN_KEY_HEX_DIGITS:
        raise ValueError(f"key file {path} holds {len(text)} hex digits; at least {MIN_KEY_HEX_DIGITS} "
                         f"(32 random bytes) are needed: delete it and let the backend make a new one")
    return text.encode("ascii")


def load_or_create_key(path) -> bytes:
    """Load the key file at ``path``, creating it (64 random hex digits, mode 0600) if missing.

    Args:
        path: path of the key file; its parent folder is created if needed.

    Returns:
        The key bytes, as :func:`load_key` returns them.

    Raises:
        OSError: if the file cannot be read or created.
        ValueError: if an existing file is not a valid key.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        text = secrets.token_hex(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race: use its key
            return load_key(path)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text + "\n")
        try:
            os.chmod(path, 0o600)
        except OSError:  # pragma: no cover - e.g. Windows
            pass
    return load_key(path)
