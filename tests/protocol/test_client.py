"""Client-side tests: footage collection, result-name safety, timeouts, vendoring."""

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq

from protocol import (PROTOCOL_VERSION, BackendClient, BackendUnavailable, ProtocolError, collect_footage_files, decode_message,
                      encode_message, make_header)
from tests.helpers.backend_proc import free_port
from tests.helpers.footage import make_tiny_footage

KEY = b"client-test-key"
REPO = Path(__file__).resolve().parents[2]


def test_collect_footage_resolves_paths(tmp_path):
    folder = make_tiny_footage(tmp_path / "f", n_cams=2, n_times=2, size=8)
    files = collect_footage_files(folder)
    assert "transforms_train.json" in files and "transforms_test.json" in files
    assert "train/r_001_001.png" in files and "test/r_000_001.png" in files
    assert len(files) == 2 + 2 * 2 + 1 * 2
    # an explicit extension works too
    meta = json.loads((folder / "transforms_train.json").read_text())
    meta["frames"][0]["file_path"] += ".png"
    (folder / "transforms_train.json").write_text(json.dumps(meta))
    assert "train/r_000_000.png" in collect_footage_files(folder)


def test_collect_footage_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="transforms_train.json"):
        collect_footage_files(tmp_path)
    folder = make_tiny_footage(tmp_path / "f", n_cams=1, n_times=2, size=8)
    (folder / "test" / "r_000_001.png").unlink()
    with pytest.raises(FileNotFoundError, match="test/r_000_001"):
        collect_footage_files(folder)
    (folder / "transforms_test.json").unlink()
    meta = json.loads((folder / "transforms_train.json").read_text())
    meta["frames"][0]["file_path"] = "../outside"
    (tmp_path / "outside.png").write_bytes(b"x")
    (folder / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="outside"):
        collect_footage_files(folder)


def _fake_router(address, name, stop):
    """Answer every fetch_result with one chunk named ``name``."""
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(address)
    while not stop.is_set():
        if sock.poll(50):
            rid, *frames = sock.recv_multipart()
            req, _ = decode_message(frames, KEY, "to_server")
            if req["type"] == "fetch_result":
                h = make_header("result_chunk", in_reply_to=req["msg_id"], job_id=req["job_id"], index=0, count=1,
                                name=name)
                sock.send_multipart([rid, *encode_message(h, [b"evil"], KEY)])
    sock.close()


@pytest.mark.parametrize("name", ["../escape.txt", "/abs.txt"])
def test_fetch_result_rejects_unsafe_names(tmp_path, name):
    address = f"tcp://127.0.0.1:{free_port()}"
    stop = threading.Event()
    t = threading.Thread(target=_fake_router, args=(address, name, stop), daemon=True)
    t.start()
    try:
        with BackendClient(address, KEY, timeout_s=5) as c:
            with pytest.raises(ProtocolError) as ei:
                c.fetch_result("j", tmp_path / "dest")
            assert ei.value.code == "invalid_field"
        assert not (tmp_path / "escape.txt").exists() and not Path("/abs.txt").exists()
    finally:
        stop.set()
        t.join(5)


def test_dead_backend_times_out_and_poll_returns_none():
    with BackendClient(f"tcp://127.0.0.1:{free_port()}", KEY, timeout_s=0.3) as c:
        t0 = time.monotonic()
        with pytest.raises(BackendUnavailable):
            c.hello()
        assert time.monotonic() - t0 < 1.5
        assert c.poll_event(0.05) is None
        with pytest.raises(BackendUnavailable):
            c.list_jobs()


def test_package_works_as_vendored_subpackage(tmp_path):
    """build_addon.py copies protocol/ into the extension: it must import with relative imports only."""
    shutil.copytree(REPO / "protocol", tmp_path / "my_ext" / "vendored_protocol",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "my_ext" / "__init__.py").write_text("")
    code = ("import sys; sys.path = [p for p in sys.path if p not in ('', %r)]; sys.path.insert(0, %r); "
            "from my_ext.vendored_protocol import BackendClient, PROTOCOL_VERSION; "
            "from my_ext.vendored_protocol.formats import read_manifest, write_transforms; "
            "assert 'protocol' not in sys.modules; print(PROTOCOL_VERSION)") % (str(REPO), str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(PROTOCOL_VERSION)


def test_protocol_and_formats_import_without_pyzmq_until_the_client_is_used():
    """The add-on's importer uses protocol.formats; only the client needs pyzmq."""
    code = ("import sys, protocol, protocol.formats; assert 'zmq' not in sys.modules, 'zmq imported early'; "
            "assert 'BackendClient' in dir(protocol); "
            "from protocol import BackendClient, collect_footage_files; assert 'zmq' in sys.modules; "
            "print(BackendClient.__module__, collect_footage_files.__module__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["protocol.client", "protocol.client"]
    import protocol
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        protocol.nope
