"""Start a real backend server for tests: in a subprocess (:class:`BackendProcess`), or on a
thread of the test process (:func:`server_thread`).

The subprocess uses ``python -m backend serve`` when ``backend/__main__.py`` exists (and no
``prelude`` is given), else ``python -c`` calling :func:`backend.server.serve`.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_PREFIX = "gen4d backend listening on "


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server_thread(data_dir: Path, key: bytes, ping_timeout_s: float = 5.0, join_timeout_s: float = 15.0,
                  curve: Optional[bool] = None, ping_credentials: Optional[Path] = None,
                  executor: str = "local", executor_options: Optional[dict] = None) -> Iterator[str]:
    """A real server (:func:`backend.server.serve`) on a thread, on a free loopback port.

    Yields the address once the server answers a ping (sent with ``key``, or as the user of
    ``ping_credentials`` over CurveZMQ when given); on exit stops it and asserts that its
    thread ended within ``join_timeout_s``. ``curve``, ``executor`` and ``executor_options``
    are passed to ``serve``.
    """
    from backend import server
    from protocol import BackendClient

    address = f"tcp://127.0.0.1:{free_port()}"
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, kwargs=dict(address=address, data_dir=data_dir, key=key,
                                                               stop_event=stop, curve=curve, executor=executor,
                                                               executor_options=executor_options), daemon=True)
    thread.start()
    try:
        client = (BackendClient.from_credentials(address, ping_credentials, timeout_s=ping_timeout_s)
                  if ping_credentials else BackendClient(address, key, timeout_s=ping_timeout_s))
        with client:
            client.ping()
        yield address
    finally:
        stop.set()
        thread.join(join_timeout_s)
    assert not thread.is_alive(), "the server thread did not stop"


class BackendProcess:
    """A backend subprocess listening on loopback.

    Args:
        data_dir: the backend's data folder.
        address: endpoint to bind; a free loopback port if None.
        prelude: Python code run before ``serve`` (forces the ``-c`` launcher), e.g. to
            monkeypatch the runner in scratch experiments.
        startup_timeout_s: how long to wait for the "listening" line.
        extra_env: environment variables for the server (e.g. ``GEN4D_MODELS_DIR``).

    Attributes:
        address: the bound endpoint. key: the key from ``<data_dir>/gen4d.key``.
        proc: the ``subprocess.Popen``. log_path: the server's stderr log file.
    """

    def __init__(self, data_dir, address: Optional[str] = None, prelude: Optional[str] = None,
                 startup_timeout_s: float = 30.0, extra_env: Optional[dict] = None):
        from protocol import load_key

        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.address = address or f"tcp://127.0.0.1:{free_port()}"
        self.log_path = self.data_dir / "server.log"
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", **(extra_env or {}))
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        if prelude is None and (REPO_ROOT / "backend" / "__main__.py").exists():
            cmd = [sys.executable, "-m", "backend", "serve", "--address", self.address,
                   "--data-dir", str(self.data_dir)]
        else:
            code = (f"{prelude or ''}\nfrom backend.server import serve\n"
                    f"serve(address={self.address!r}, data_dir={str(self.data_dir)!r})\n")
            cmd = [sys.executable, "-c", code]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=str(REPO_ROOT), env=env, stdout=subprocess.PIPE,
                                     stderr=self._log)
        self._wait_ready(startup_timeout_s)
        self.key = load_key(self.data_dir / "gen4d.key")

    def _wait_ready(self, timeout_s: float) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout_s
        buf = b""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if sel.select(timeout=0.2):
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                buf += chunk
                if READY_PREFIX.encode() in buf:
                    sel.close()
                    return
        sel.close()
        self.stop()
        raise RuntimeError(f"backend did not start (stdout {buf!r}); log:\n{self.log_text()}")

    def log_text(self) -> str:
        """Return the server's stderr log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, timeout_s: float = 10.0):
        """Return a new :class:`protocol.BackendClient` for this backend (caller closes it)."""
        from protocol import BackendClient

        return BackendClient(self.address, self.key, timeout_s=timeout_s)

    def stop(self, timeout_s: float = 15.0) -> int:
        """Send SIGTERM, wait, kill if needed; return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log.close()
        return self.proc.returncode
