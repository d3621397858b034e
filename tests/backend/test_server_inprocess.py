"""Server, job store and worker tests in-process, with a fake ``run_job`` (fast, no pipeline).

The real pipeline is exercised by ``test_server_subprocess.py``.
"""

import json
import threading
import time

import pytest
import zmq

from backend import server as server_mod
from backend.errors import BadInputError
from backend.jobs import JobStore, order_result_files
from backend.pipeline import runner
from protocol import (PROTOCOL_VERSION, BackendClient, BackendUnavailable, ProtocolError, RemoteError, decode_message,
                      encode_message, make_header, sign)
from tests.helpers.backend_proc import free_port, server_thread
from tests.helpers.footage import make_tiny_footage


def fake_run_job(spec, input_dir, out_dir, ctx):
    """Stand-in for the pipeline, steered by the spec's ``name`` (``"ok"``, ``"slow"``, ...)."""
    mode = spec.get("name", "ok")
    if mode == "slow":
        for i in range(400):
            ctx.check_cancelled()
            ctx.progress("reconstruct", i, 400, loss=1.0 / (i + 1))
            time.sleep(0.05)
    if mode == "job_error":
        raise BadInputError("image train/x.png is missing")
    if mode == "oom":
        raise MemoryError("cannot allocate")
    if mode == "crash":
        raise RuntimeError("boom")
    for i in range(4):
        ctx.progress("reconstruct", i, 3, loss=float("nan") if i == 1 else 0.5)
    ctx.preview(b"\x89PNG fake")
    (out_dir / "frames").mkdir()
    for i in (10, 2, 1):
        (out_dir / "frames" / f"frame_{i}.ply").write_bytes(b"ply %d" % i)
    (out_dir / "extra.txt").write_text("x")
    manifest = {"frame_count": 3, "inputs": sorted(p.name for p in input_dir.rglob("*") if p.is_file())}
    (out_dir / "manifest.json").write_text(json.dumps(manifest))
    return manifest


@pytest.fixture
def live(tmp_path, monkeypatch):
    """A server thread on a free port with the fake runner; yields (address, key, data_dir)."""
    monkeypatch.setattr(runner, "run_job", fake_run_job)
    key = b"test-key-0123456789abcdef"
    with server_thread(tmp_path / "data", key) as address:
        yield address, key, tmp_path / "data"


def wait_for(client, job_id, types, timeout_s=10.0):
    """Collect events of ``job_id`` until one of ``types`` arrives; return the list."""
    got = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ev = client.poll_event(0.2)
        if ev and ev["job_id"] == job_id:
            got.append(ev)
            if ev["type"] in types:
                return got
    raise AssertionError(f"no {types} for {job_id}; got {[e['type'] for e in got]}")


def test_hello_ping_and_full_job(live, tmp_path):
    address, key, data_dir = live
    with BackendClient(address, key, timeout_s=5) as c:
        assert c.hello()["version"] == PROTOCOL_VERSION
        assert c.ping() < 5
        job = c.submit({"job_type": "footage", "name": "ok"}, {"a.txt": b"hi", "sub/b.bin": b"\0" * 10})
        events = wait_for(c, job, {"completed"})
        types = [e["type"] for e in events]
        # The ``queued`` reply is submit's return value, not also a polled event.
        assert types[0] == "started" and types[-1] == "completed" and "queued" not in types
        progress = [e for e in events if e["type"] == "progress"]
        assert progress and all(e["loss"] in (None, 0.5) for e in progress)
        preview = next(e for e in events if e["type"] == "preview")
        assert preview["png"] == b"\x89PNG fake" and preview["stage"] == "reconstruct"
        done = events[-1]
        assert done["frame_count"] == 3
        assert done["files"] == ["manifest.json", "frames/frame_1.ply", "frames/frame_2.ply",
                                 "frames/frame_10.ply", "extra.txt"]
        chunks = []
        out = c.fetch_result(job, tmp_path / "dl", on_chunk=lambda i, n: chunks.append((i, n)))
        assert chunks == [(i, 5) for i in range(5)]
        assert (out / "frames" / "frame_10.ply").read_bytes() == b"ply 10"
        assert json.loads((out / "manifest.json").read_text())["inputs"] == ["a.txt", "b.bin"]
        assert (data_dir / "jobs" / job / "input" / "sub" / "b.bin").stat().st_size == 10
        [info] = [j for j in c.list_jobs() if j["job_id"] == job]
        assert info["state"] == "completed" and info["spec"]["name"] == "ok"


@pytest.mark.parametrize("mode,code", [("job_error", "bad_input"), ("oom", "out_of_memory"),
                                       ("crash", "internal_error")])
def test_failures_map_to_codes(live, mode, code):
    address, key, data_dir = live
    with BackendClient(address, key, timeout_s=5) as c:
        job = c.submit({"job_type": "footage", "name": mode}, {})
        ev = wait_for(c, job, {"failed", "completed"})[-1]
        assert ev["type"] == "failed" and ev["code"] == code
        if mode == "crash":
            assert "RuntimeError" in ev["message"] and "boom" not in ev["message"]  # exception text only in the log
        with pytest.raises(RemoteError) as ei:
            c.fetch_result(job, data_dir / "x")
        assert ei.value.code == "not_completed"
        c.ping()


@pytest.mark.parametrize("spec, code, text", [
    ({"job_type": "footage", "options": {"warp_speed": 9}}, "invalid_option", "warp_speed"),
    ({"job_type": "footage", "options": {"lr_means": -1}}, "invalid_option", "lr_means"),
    ({"job_type": "footage", "options": {"densification": {"strategy": "mcmc"}}}, "invalid_option", "strategy"),
    ({"job_type": "footage", "options": ["iterations", 5]}, "invalid_option", "options"),
    ({"job_type": "footage", "teleport": 1}, "invalid_option", "teleport"),
    ({"job_type": "footage", "preset": "cpu"}, "unknown_preset", "cpu"),
    ({"job_type": "hologram"}, "unknown_job_type", "hologram"),
])
def test_submit_with_a_bad_spec_is_refused_and_nothing_is_stored(live, spec, code, text):
    address, key, data_dir = live
    with BackendClient(address, key, timeout_s=5) as c:
        before = c.list_jobs()
        with pytest.raises(RemoteError) as ei:
            c.submit(spec, {"a.txt": b"hi"})
        assert ei.value.code == code and text in ei.value.message
        assert c.list_jobs() == before
        assert c.ping() < 5  # still serving


def test_cancel_running_and_queued(live):
    address, key, _ = live
    with BackendClient(address, key, timeout_s=5) as c:
        running = c.submit({"job_type": "footage", "name": "slow"}, {})
        waiting = c.submit({"job_type": "footage", "name": "ok"}, {})
        wait_for(c, running, {"progress"})
        c.cancel(waiting)
        c.cancel(running)
        t0 = time.monotonic()
        seen = {}
        while len(seen) < 2 and time.monotonic() - t0 < 5:
            ev = c.poll_event(0.2)
            if ev and ev["type"] in ("cancelled", "completed", "failed"):
                seen[ev["job_id"]] = ev["type"]
        assert seen == {running: "cancelled", waiting: "cancelled"}
        c.cancel(running)  # cancelling a finished job is a no-op
        with pytest.raises(RemoteError) as ei:
            c.cancel("0" * 32)
        assert ei.value.code == "unknown_job"
        states = {j["job_id"]: j["state"] for j in c.list_jobs()}
        assert states[running] == states[waiting] == "cancelled"


def test_reconnect_watch_replays_state(live, tmp_path):
    address, key, _ = live
    with BackendClient(address, key, timeout_s=5) as c:
        job = c.submit({"job_type": "footage", "name": "ok"}, {})
    time.sleep(0.5)
    with BackendClient(address, key, timeout_s=5) as c2:
        c2.watch(job)
        ev = wait_for(c2, job, {"completed", "failed"})[-1]
        assert ev["type"] == "completed"
        assert (c2.fetch_result(job, tmp_path / "r") / "manifest.json").exists()
        with pytest.raises(RemoteError) as ei:
            c2.watch("../../etc")
        assert ei.value.code == "unknown_job"


def test_bad_messages_get_errors_and_server_keeps_serving(live):
    address, key, _ = live
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(address)

    def exchange(frames):
        s.send_multipart(frames)
        assert s.poll(5000), "no reply"
        return decode_message(s.recv_multipart(), key, "to_client")[0]

    assert exchange([b"garbage"])["code"] == "malformed"
    hj = b"{not json"
    assert exchange([sign(key, [hj]), hj])["code"] == "malformed"
    assert exchange(encode_message(make_header("ping", msg_id="m"), [], b"wrong-key"))["code"] == "bad_signature"
    hj = json.dumps({"v": 2, "sent_at": time.time(), "type": "explode", "msg_id": "m2"}).encode()
    err = exchange([sign(key, [hj]), hj])
    assert err["code"] == "unknown_type" and err["in_reply_to"] == "m2"
    hj = json.dumps({"v": 3, "sent_at": time.time(), "type": "hello", "msg_id": "m3"}).encode()
    err = exchange([sign(key, [hj]), hj])
    assert err["code"] == "version_mismatch" and err["in_reply_to"] == "m3"
    hj = json.dumps({"v": 2, "sent_at": time.time(), "type": "submit", "msg_id": "m4", "spec": {},
                     "files": [{"name": "../evil", "size": 1}]}).encode()
    assert exchange([sign(key, [hj, b"x"]), hj, b"x"])["code"] == "invalid_field"
    hj = json.dumps({"v": 2, "sent_at": time.time(), "type": "fetch_result", "msg_id": "m5", "job_id": "nope", "index": 0}).encode()
    assert exchange([sign(key, [hj]), hj])["code"] == "unknown_job"
    assert exchange(encode_message(make_header("ping", msg_id="p"), [], key))["type"] == "pong"
    s.close()


def test_client_errors(live, tmp_path):
    address, key, _ = live
    with BackendClient(address, b"wrong-key", timeout_s=3) as c:
        with pytest.raises(ProtocolError) as ei:
            c.ping()
        assert ei.value.code == "bad_signature"
    with BackendClient(f"tcp://127.0.0.1:{free_port()}", key, timeout_s=0.5) as c:
        t0 = time.monotonic()
        with pytest.raises(BackendUnavailable):
            c.ping()
        assert time.monotonic() - t0 < 2
    folder = make_tiny_footage(tmp_path / "fp", n_cams=2, n_times=2, size=8)
    (folder / "train" / "r_001_001.png").unlink()
    with BackendClient(address, key, timeout_s=5) as c:
        with pytest.raises(FileNotFoundError, match="r_001_001"):
            c.submit_footage(folder, {"job_type": "footage"})


def test_store_recovery_after_restart(tmp_path, monkeypatch):
    store = JobStore(tmp_path)
    a = store.create({"job_type": "footage"}, [("x.png", b"1")])["job_id"]
    b = store.create({"job_type": "footage"}, [])["job_id"]
    c = store.create({"job_type": "footage"}, [])["job_id"]
    assert store.transition(a, {"queued"}, "running")
    store2 = JobStore(tmp_path)
    job_a = store2.get(a)
    assert job_a["state"] == "failed" and job_a["error_code"] == "interrupted"
    assert "resubmit" in job_a["error_message"]
    assert store2.pending == [b, c]
    with pytest.raises(Exception):
        store2.create({}, [("../x", b"")])
    assert order_result_files(["b.txt", "f/frame_10.ply", "manifest.json", "f/frame_9.ply"]) == \
        ["manifest.json", "f/frame_9.ply", "f/frame_10.ply", "b.txt"]


def test_shutdown_interrupts_and_restart_requeues(tmp_path, monkeypatch):
    """Stopping mid-job marks it failed/interrupted; a queued job left behind runs after restart."""
    monkeypatch.setattr(runner, "run_job", fake_run_job)
    data, key = tmp_path / "data", b"k"

    def start():
        address = f"tcp://127.0.0.1:{free_port()}"
        stop = threading.Event()
        t = threading.Thread(target=server_mod.serve, kwargs=dict(address=address, data_dir=data, key=key,
                                                                  stop_event=stop), daemon=True)
        t.start()
        return address, stop, t

    address, stop, t = start()
    with BackendClient(address, key, timeout_s=5) as c:
        slow = c.submit({"job_type": "footage", "name": "slow"}, {})
        later = c.submit({"job_type": "footage", "name": "ok"}, {})
        wait_for(c, slow, {"progress"})
    stop.set()
    t.join(15)
    assert not t.is_alive()
    address, stop, t = start()
    try:
        with BackendClient(address, key, timeout_s=5) as c:
            c.watch(later)
            assert wait_for(c, later, {"completed", "failed"})[-1]["type"] == "completed"
            states = {j["job_id"]: j for j in c.list_jobs()}
            assert states[slow]["state"] == "failed" and states[slow]["error_code"] == "interrupted"
    finally:
        stop.set()
        t.join(15)
