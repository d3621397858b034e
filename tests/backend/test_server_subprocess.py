"""Tests against a REAL backend subprocess running the real pipeline.

Every test ends by checking that the backend still answers. Jobs use the ``tiny`` preset
(seconds on CPU); the cancel test uses the long ``cpu`` preset and cancels it early.
"""

import json
import time

import pytest
import zmq

from protocol import RemoteError, decode_message, encode_message, make_header, sign
from tests.helpers.backend_proc import BackendProcess
from tests.helpers.footage import make_tiny_footage

TINY = {"job_type": "footage", "preset": "tiny"}

# A hung backend must fail the test, not the whole run.
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    """One backend subprocess shared by this module's tests."""
    proc = BackendProcess(tmp_path_factory.mktemp("backend"))
    yield proc
    code = proc.stop()
    print(proc.log_text())
    assert code == 0, "backend did not exit cleanly on SIGTERM"


@pytest.fixture
def client(backend):
    """A fresh client; after the test checks the backend still answers a ping."""
    c = backend.client(timeout_s=10)
    yield c
    c.close()
    with backend.client(timeout_s=10) as after:
        assert after.ping() < 10, "backend stopped answering"
    assert backend.proc.poll() is None, backend.log_text()


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    """Tiny valid footage (4 cameras x 3 times, 32 px)."""
    return make_tiny_footage(tmp_path_factory.mktemp("footage"))


def files_of(folder):
    """All files of a footage folder, as ``submit`` takes them."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def wait_terminal(client, job_id, timeout_s=60.0):
    """Return the job's events up to and including its terminal event."""
    events = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ev = client.poll_event(0.5)
        if ev and ev["job_id"] == job_id:
            events.append(ev)
            if ev["type"] in ("completed", "failed", "cancelled"):
                return events
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s: {[e['type'] for e in events]}")


def test_raw_bad_messages(backend, client):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(backend.address)
    try:
        def exchange(frames):
            sock.send_multipart(frames)
            assert sock.poll(10000), "no error reply"
            return decode_message(sock.recv_multipart(), backend.key, "to_client")[0]

        assert exchange([b"\xff\x00 not a message"])["code"] == "malformed"
        assert exchange([sign(backend.key, [b"[["]), b"[["])["code"] == "malformed"
        assert exchange(encode_message(make_header("ping", msg_id="a"), [], b"bad"))["code"] == "bad_signature"
        hj = json.dumps({"v": 2, "sent_at": time.time(), "type": "no_such_type", "msg_id": "b"}).encode()
        err = exchange([sign(backend.key, [hj]), hj])
        assert (err["code"], err["in_reply_to"]) == ("unknown_type", "b")
    finally:
        sock.close()


def test_missing_image_fails_bad_input(client, footage):
    files = files_of(footage)
    del files["train/r_001_002.png"]
    job = client.submit(TINY, files)
    ev = wait_terminal(client, job)[-1]
    assert (ev["type"], ev["code"]) == ("failed", "bad_input"), ev
    assert "r_001_002" in ev["message"]


def test_not_an_image_fails_bad_input(client, footage):
    files = files_of(footage)
    files["train/r_000_000.png"] = b"this is not a PNG"
    job = client.submit(TINY, files)
    ev = wait_terminal(client, job)[-1]
    assert (ev["type"], ev["code"]) == ("failed", "bad_input"), ev


def test_cancel_mid_job(client, footage):
    job = client.submit_footage(footage, {"job_type": "footage", "preset": "standard"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ev = client.poll_event(0.5)
        if ev and ev["job_id"] == job and ev["type"] == "progress":
            break
    else:
        pytest.fail("no progress event")
    t0 = time.monotonic()
    client.cancel(job)
    ev = wait_terminal(client, job, timeout_s=15)[-1]
    assert ev["type"] == "cancelled", ev
    assert time.monotonic() - t0 < 5, "cancel took too long"
    [info] = [j for j in client.list_jobs() if j["job_id"] == job]
    assert info["state"] == "cancelled"


@pytest.mark.slow  # runs one whole ``tiny`` job: seconds alone, much longer on a loaded 2-core machine
def test_reconnect_fetch_list_and_restart(tmp_path, footage):
    """Submit, drop the client, fetch by job id from a new one; then again after a backend restart."""
    data = tmp_path / "data"
    first = BackendProcess(data)
    try:
        c1 = first.client()
        job = c1.submit_footage(footage, TINY)
        c1.close()
        with first.client() as c2:
            c2.watch(job)
            done = wait_terminal(c2, job, timeout_s=90)[-1]
            assert done["type"] == "completed", done
            out = c2.fetch_result(job, tmp_path / "result")
            assert json.loads((out / "manifest.json").read_text())
            plys = sorted(out.rglob("*.ply"))  # frames/ and, for a blender asset, frames_3dgs/
            manifest = json.loads((out / "manifest.json").read_text())
            standard = manifest["standard_frame_files"] or []
            assert len(plys) == len(manifest["frame_files"]) + len(standard) and len(manifest["frame_files"]) == \
                done["frame_count"] >= 1
            assert all((out / f).is_file() for f in manifest["frame_files"] + standard)
            assert [f for f in done["files"] if f.endswith(".ply")] == [p.relative_to(out).as_posix() for p in plys]
            [info] = [j for j in c2.list_jobs() if j["job_id"] == job]
            assert info["state"] == "completed" and info["spec"] == TINY
            with pytest.raises(RemoteError) as ei:
                c2.fetch_result("f" * 32, tmp_path / "nothing")
            assert ei.value.code == "unknown_job"
            assert c2.ping() < 10
    finally:
        assert first.stop() == 0, first.log_text()
    second = BackendProcess(data)
    try:
        with second.client() as c3:
            assert [j["state"] for j in c3.list_jobs() if j["job_id"] == job] == ["completed"]
            again = c3.fetch_result(job, tmp_path / "after_restart")
            assert (again / "manifest.json").read_bytes() == (out / "manifest.json").read_bytes()
            c3.watch(job)
            assert c3.poll_event(5)["type"] == "completed"
            assert c3.ping() < 10
    finally:
        assert second.stop() == 0, second.log_text()
