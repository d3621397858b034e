"""The backend's users: who may talk to it, with which keys, and who is an admin.

Two kinds of key prove who sends a message:

- **HMAC keys** (:mod:`protocol.framing`) sign every message. The backend's own key
  (``<data_dir>/gen4d.key``, made on first start; the local add-on uses it) is the
  *admin* key: it names no user on the wire. A named user signs with their own key and
  names themselves in the signature frame.
- **CurveZMQ** (libzmq's CURVE, through pyzmq and :mod:`zmq.auth`) encrypts the connection
  and lets only known public keys connect. It is required whenever the backend listens on
  an address other than loopback (:func:`backend.server.serve`). The server's key pair
  lives in ``<data_dir>/curve/`` as zmq.auth certificate files (``server.key``,
  ``server.key_secret``).

A user is a file ``<data_dir>/users/<name>.json`` (mode 0600) holding the user's HMAC key
(hex), their CURVE public key (z85) and whether they are an admin. :func:`add_user` makes
it and a *credentials file* (:func:`protocol.keys.load_credentials`) for the artist (their HMAC key, their CURVE key pair and the
server's public key), which the add-on's preferences take as one path. The server reads
the folder again when a message names a user it does not know (at most once a second),
so adding a user needs no restart; removing one takes effect the same way.

Jobs belong to the user who submitted them (``owner``; None for the admin key); only that
user and admins see them (:class:`backend.server.Server`).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Optional

from protocol.framing import USER_NAME_RE
from protocol.keys import CREDENTIALS_FORMAT, check_private, load_or_create_key

log = logging.getLogger("gen4d.users")



class UserError(ValueError):
    """A user cannot be added, found or read (the message says which and how to fix it)."""


def users_dir(data_dir) -> Path:
    """Return ``<data_dir>/users``."""
    return Path(data_dir) / "users"


def curve_dir(data_dir) -> Path:
    """Return ``<data_dir>/curve`` (the server's CURVE certificate files)."""
    return Path(data_dir) / "curve"


def _write_private(path: Path, data: dict) -> None:
    """Write JSON readable only by its owner (mode 0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _read_private(path: Path) -> dict:
    """Read a JSON file that must not be readable by group or others.

    Raises:
        UserError: unreadable, not a JSON object, or mode open to others.
    """
    try:
        check_private(path, "user record")
        data = json.loads(path.read_text(encoding="utf-8"))
    except PermissionError as e:
        raise UserError(str(e)) from None
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} does not hold a JSON object")
    return data


def check_user_name(name: str) -> str:
    """Return ``name`` if it is a valid user name (:data:`protocol.framing.USER_NAME_RE`).

    Raises:
        UserError: otherwise.
    """
    if not isinstance(name, str) or not USER_NAME_RE.match(name):
        raise UserError(f"user name {name!r} must be 1-64 characters of a-z 0-9 _ . - "
                        f"(not starting with . or -)")
    return name


def server_curve_keys(data_dir, create: bool = False) -> Optional[tuple[bytes, bytes]]:
    """Return the server's CURVE key pair ``(public, secret)`` (z85 bytes), or None.

    Args:
        data_dir: the backend's data folder.
        create: make the pair (``zmq.auth.create_certificates``) when missing.

    Raises:
        UserError: the secret certificate exists but is readable by others or unreadable.
    """
    import zmq.auth

    folder = curve_dir(data_dir)
    secret_file = folder / "server.key_secret"
    if not secret_file.exists():
        if not create:
            return None
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        zmq.auth.create_certificates(folder, "server")
        os.chmod(secret_file, 0o600)
    try:
        check_private(secret_file, "the server's CURVE secret key")
    except PermissionError as e:
        raise UserError(str(e)) from None
    try:
        public, secret = zmq.auth.load_certificate(secret_file)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read the server's CURVE certificate {secret_file}: {e}") from None
    if not secret:
        raise UserError(f"{secret_file} holds no secret key")
    return public, secret


def add_user(data_dir, name: str, admin: bool = False, credentials_path=None) -> dict:
    """Create a user with a fresh HMAC key and CURVE key pair; write their credentials file.

    Makes the server's CURVE key pair too if it has none yet.

    Args:
        data_dir: the backend's data folder.
        name: the user name (:func:`check_user_name`).
        admin: an admin sees and may cancel or fetch every user's jobs.
        credentials_path: where to write the artist's credentials file (mode 0600);
            default ``<data_dir>/users/<name>.credentials.json``.

    Returns:
        The credentials dict: ``format``, ``user``, ``key`` (hex text), ``curve_public``,
        ``curve_secret``, ``server_public`` (z85 text) and ``path`` (where it was written).

    Raises:
        UserError: a bad name, or the user exists.
    """
    import zmq

    check_user_name(name)
    record_path = users_dir(data_dir) / f"{name}.json"
    if record_path.exists():
        raise UserError(f"user {name!r} exists ({record_path}); remove it first to make new keys")
    server_public, _ = server_curve_keys(data_dir, create=True)
    public, secret = zmq.curve_keypair()
    key = secrets.token_hex(32)
    _write_private(record_path, {"user": name, "key": key, "admin": bool(admin),
                                 "curve_public": public.decode("ascii"), "created_at": time.time()})
    os.chmod(record_path.parent, 0o700)
    path = Path(credentials_path) if credentials_path else users_dir(data_dir) / f"{name}.credentials.json"
    creds = {"format": CREDENTIALS_FORMAT, "user": name, "key": key, "curve_public": public.decode("ascii"),
             "curve_secret": secret.decode("ascii"), "server_public": server_public.decode("ascii")}
    _write_private(path, creds)
    log.info("added user %s%s; credentials in %s", name, " (admin)" if admin else "", path)
    return {**creds, "path": str(path)}


def remove_user(data_dir, name: str) -> None:
    """Delete a user (their record; their jobs stay, visible to admins).

    Raises:
        UserError: no such user.
    """
    path = users_dir(data_dir) / f"{check_user_name(name)}.json"
    if not path.exists():
        raise UserError(f"no user {name!r} in {path.parent}")
    path.unlink()
    cred = path.with_name(f"{name}.credentials.json")
    if cred.exists():
        cred.unlink()


class Users:
    """The keys the server accepts, read from the data folder.

    Args:
        data_dir: the backend's data folder.
        own_key: the backend's own (admin) HMAC key; loaded or created from
            ``<data_dir>/gen4d.key`` if None.
        reload_every_s: shortest time between two re-reads of the users folder.
    """

    def __init__(self, data_dir, own_key: Optional[bytes] = None, reload_every_s: float = 1.0):
        self.data_dir = Path(data_dir)
        self.own_key = own_key if own_key is not None else load_or_create_key(self.data_dir / "gen4d.key")
        self.reload_every_s = reload_every_s
        self._lock = threading.Lock()
        self._records: dict[str, dict] = {}
        self._loaded_at = float("-inf")
        self.reload()

    def reload(self) -> None:
        """Read every ``users/<name>.json``; a record that cannot be read is skipped with a warning."""
        records = {}
        folder = users_dir(self.data_dir)
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            if path.name.endswith(".credentials.json"):
                continue
            try:
                data = _read_private(path)
                name = check_user_name(data.get("user", ""))
                if path.stem != name:
                    raise UserError(f"{path} names user {name!r}")
                key = str(data["key"])
                bytes.fromhex(key)
                if len(key) < 64:
                    raise UserError(f"{path}: the key is shorter than 64 hex digits")
                records[name] = {"key": key.encode("ascii"), "admin": bool(data.get("admin")),
                                 "curve_public": str(data.get("curve_public", "")).encode("ascii")}
            except (UserError, KeyError, ValueError) as e:
                log.warning("skipping user record %s: %s", path, e)
        with self._lock:
            self._records = records
            self._loaded_at = time.monotonic()

    def _fresh(self, name: str) -> Optional[dict]:
        with self._lock:
            record = self._records.get(name)
            stale = time.monotonic() - self._loaded_at >= self.reload_every_s
        if stale:
            self.reload()
            with self._lock:
                record = self._records.get(name)
        return record

    def key(self, user: str) -> Optional[bytes]:
        """Return the HMAC key of ``user`` (``""``: the backend's own key), or None."""
        if user == "":
            return self.own_key
        record = self._fresh(user)
        return record["key"] if record else None

    def is_admin(self, user: str) -> bool:
        """True for the backend's own key (``""``) and users added with ``admin``."""
        if user == "":
            return True
        record = self._fresh(user)
        return bool(record and record["admin"])

    def user_for_curve_key(self, public_z85: bytes) -> Optional[str]:
        """Return the user whose CURVE public key (z85) this is, or None."""
        for _ in range(2):
            with self._lock:
                for name, record in self._records.items():
                    if record["curve_public"] and secrets.compare_digest(record["curve_public"], public_z85):
                        return name
                stale = time.monotonic() - self._loaded_at >= self.reload_every_s
            if not stale:
                return None
            self.reload()
        return None

    def names(self) -> list[str]:
        """Return the named users (the admin key is not one)."""
        with self._lock:
            return sorted(self._records)
