"""Key files: the backend's own HMAC key and a user's credentials file.

The HMAC key file is random hex text, readable only by its owner (mode 0600). The key
used for signing is the ASCII bytes of the hex text (as in Jupyter connection files), so a
user can paste the text into the add-on's preferences and use
``text.strip().encode("ascii")``.

A *credentials file* (JSON, mode 0600, made by ``python -m backend users add NAME``) holds
what one artist needs to reach a studio backend: ``user``, their HMAC ``key`` (hex), their
CurveZMQ key pair ``curve_public`` / ``curve_secret`` and the server's ``server_public``
(z85 text, 40 characters each).
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

from .framing import USER_NAME_RE

#: the credentials file's format tag.
CREDENTIALS_FORMAT = "gen4d-credentials/1"
_Z85_RE = re.compile(r"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")


#: shortest accepted key: 64 hex digits, 32 bytes of randomness (what load_or_create_key makes).
MIN_KEY_HEX_DIGITS = 64


def check_private(path, what: str = "key file") -> None:
    """Refuse a secret file that its group or others may read or write (POSIX only).

    Raises:
        PermissionError: naming the file, its mode and the ``chmod 600`` that fixes it.
    """
    if os.name != "posix":
        return
    mode = Path(path).stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(f"{what} {path} has mode {mode:03o}: others can read or change it; "
                              f"run `chmod 600 {path}`")


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
    check_private(path)
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


def load_credentials(path) -> dict:
    """Read a user's credentials file (see the module docstring).

    Args:
        path: the file, as ``python -m backend users add`` wrote it.

    Returns:
        ``{"user": str, "key": bytes, "curve_public": bytes, "curve_secret": bytes,
        "server_public": bytes}`` (the CURVE keys as z85 bytes, as pyzmq takes them).

    Raises:
        FileNotFoundError: no such file.
        PermissionError: on POSIX, the file is readable or writable by group or others.
        ValueError: not a credentials file, or a field is missing or malformed.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    check_private(path, "credentials file")
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path} is not JSON: {e}") from None
    if not isinstance(data, dict) or data.get("format") != CREDENTIALS_FORMAT:
        raise ValueError(f"{path} is not a gen4d credentials file (expected format {CREDENTIALS_FORMAT!r})")
    out = {}
    user = data.get("user")
    if not isinstance(user, str) or not USER_NAME_RE.match(user):
        raise ValueError(f"{path}: 'user' is missing or not a valid user name")
    out["user"] = user
    key = data.get("key")
    try:
        bytes.fromhex(key)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: 'key' is not hex text") from None
    if len(key) < MIN_KEY_HEX_DIGITS:
        raise ValueError(f"{path}: 'key' is shorter than {MIN_KEY_HEX_DIGITS} hex digits")
    out["key"] = key.encode("ascii")
    for name in ("curve_public", "curve_secret", "server_public"):
        value = data.get(name)
        if not isinstance(value, str) or not _Z85_RE.match(value):
            raise ValueError(f"{path}: {name!r} is not a 40-character z85 CurveZMQ key")
        out[name] = value.encode("ascii")
    return out
