"""Start, watch and stop a gen4d backend on this machine ("Start Local Backend").

The backend runs as ``<python> -m backend serve --address A --data-dir D`` in its own
process (no shell), with ``cwd`` and ``PYTHONPATH`` set to the folder holding the
``backend`` package, stdout and stderr appended to ``<data dir>/backend.log``. Its key is
``<data dir>/gen4d.key`` (written by the backend on first start). The process is stopped
by :func:`stop` (terminate, wait, kill), which ``unregister`` and an ``atexit`` hook call,
so quitting Blender never leaves it running.

Plain Python (no ``bpy``): the panel reads :func:`status`, the timer calls :func:`poll`.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

#: The line the backend prints once its socket is bound.
READY_PREFIX = "gen4d backend listening on "
LOG_NAME = "backend.log"
KEY_NAME = "gen4d.key"


@dataclass
class LocalBackend:
    """One started backend process.

    Attributes:
        process: the ``subprocess.Popen``.
        address: the ZeroMQ endpoint it binds.
        data_dir: its data folder (jobs, key, log).
        log_path: its stdout + stderr.
        log_offset: where this run's output starts in the log (the log is appended to).
        started_at: ``time.monotonic()`` at start.
        ready: the ready line has been seen.
    """

    process: subprocess.Popen
    address: str
    data_dir: Path
    log_path: Path
    log_offset: int
    started_at: float
    ready: bool = False

    @property
    def key_path(self) -> Path:
        return self.data_dir / KEY_NAME


_current: LocalBackend | None = None


def start(python: str, backend_root: str, address: str, data_dir: str) -> LocalBackend:
    """Start the backend (stopping one this module started before).

    Args:
        python: interpreter with the backend's packages (torch, gsplat, pyzmq, ...).
        backend_root: folder containing the ``backend`` package; "" = the interpreter's
            own ``sys.path`` (an installed backend).
        address: endpoint to bind, e.g. ``tcp://127.0.0.1:5555``.
        data_dir: the backend's data folder (created).

    Returns:
        the :class:`LocalBackend`.

    Raises:
        FileNotFoundError: ``python`` is not an executable file, or ``backend_root`` has no
            ``backend`` package.
        OSError: the process could not be started.
    """
    global _current
    python = os.path.expanduser(python.strip())
    if not python or not os.path.isfile(python) or not os.access(python, os.X_OK):
        raise FileNotFoundError(f"backend Python interpreter not found or not executable: {python!r} "
                                "(set it in the gen4d add-on preferences)")
    root = os.path.expanduser(backend_root.strip())
    if root and not os.path.isfile(os.path.join(root, "backend", "__main__.py")):
        raise FileNotFoundError(f"no backend package in {root!r} (expected {root}/backend/__main__.py)")
    stop()
    data = Path(os.path.expanduser(data_dir)).resolve()
    data.mkdir(parents=True, exist_ok=True)
    log_path = data / LOG_NAME
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if root:
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(log_path, "ab") as log:
        offset = log.tell()
        log.write(f"\n--- gen4d: starting {python} -m backend serve --address {address} ---\n".encode())
        log.flush()
        flags = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if sys.platform == "win32" else \
            {"start_new_session": True}
        process = subprocess.Popen([python, "-m", "backend", "serve", "--address", address, "--data-dir", str(data)],
                                   cwd=root or None, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, **flags)
    _current = LocalBackend(process, address, data, log_path, offset, time.monotonic())
    return _current


def current() -> LocalBackend | None:
    """The backend this module started (running or exited), or None."""
    return _current


def read_log(max_bytes: int = 200_000) -> str:
    """The current run's log output (at most the last ``max_bytes``), "" if none."""
    if _current is None or not _current.log_path.is_file():
        return ""
    with open(_current.log_path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(_current.log_offset, size - max_bytes))
        return f.read().decode("utf-8", "replace")


def poll() -> str:
    """Update and return the state: ``"none"``, ``"starting"``, ``"ready"`` or ``"exited"``."""
    if _current is None:
        return "none"
    if _current.process.poll() is not None:
        return "exited"
    if not _current.ready and READY_PREFIX in read_log():
        _current.ready = True
    return "ready" if _current.ready else "starting"


def status() -> str:
    """One line for the panel: ``running (pid N)``, ``starting (pid N)``, ``exited (code N)`` or ""."""
    state = poll()
    if state == "none":
        return ""
    proc = _current.process
    if state == "exited":
        return f"exited (code {proc.returncode})"
    return f"{'running' if state == 'ready' else 'starting'} (pid {proc.pid})"


def stop(timeout_s: float = 3.0) -> int | None:
    """Stop the backend this module started: terminate, wait ``timeout_s``, then kill.

    Returns:
        its exit code, or None when none was started.
    """
    global _current
    if _current is None:
        return None
    proc = _current.process
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)
    code = proc.returncode
    return code


def forget() -> None:
    """Stop the backend and drop its record (unregister)."""
    global _current
    stop()
    _current = None


atexit.register(stop)
