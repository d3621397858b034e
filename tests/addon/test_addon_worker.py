"""The add-on's background worker (blender_addon/client.py) against an in-process backend
with a fake runner. No bpy: client.py is loaded from its file, outside the package."""

import importlib.util
import json
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("zmq")
from _run import REPO  # noqa: E402

import protocol  # noqa: E402
from backend import server as server_mod  # noqa: E402
from backend.pipeline import runner  # noqa: E402
from tests.helpers.backend_proc import free_port  # noqa: E402
from tests.helpers.footage import make_tiny_footage  # noqa: E402

spec = importlib.util.spec_from_file_location("gen4d_addon_client", REPO / "blender_addon" / "client.py")
client_mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(client_mod)


def fake_run_job(spec, input_dir, out_dir, ctx):
    for i in range(3):
        ctx.progress("reconstruct", i, 3, loss=0.5)
    (out_dir / "frames").mkdir()
    (out_dir / "frames" / "frame_0000.ply").write_bytes(b"ply")
    manifest = {"format": "gen4d-result", "format_version": 1, "frame_count": 1,
                "frame_files": ["frames/frame_0000.ply"]}
    (out_dir / "manifest.json").write_text(json.dumps(manifest))
    return manifest


@pytest.fixture
def live(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run_job", fake_run_job)
    address, key = f"tcp://127.0.0.1:{free_port()}", b"test-key-0123456789abcdef"
    stop = threading.Event()
    t = threading.Thread(target=server_mod.serve, kwargs=dict(address=address, data_dir=tmp_path / "data",
                                                              key=key, stop_event=stop), daemon=True)
    t.start()
    yield address, key
    stop.set()
    t.join(15)


def next_event(worker, kind, timeout_s=20.0):
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            event = worker.events.get(timeout=0.1)
        except Exception:
            continue
        seen.append(event["type"])
        if event["type"] == kind:
            return event, seen
        assert event["type"] != "error", event
    raise AssertionError(f"no {kind} event; saw {seen}")


def test_submit_progress_fetch(live, tmp_path):
    address, key = live
    footage = make_tiny_footage(tmp_path / "footage", n_cams=2, n_times=2, size=16)
    worker = client_mod.BackendWorker(address, key, protocol, timeout_s=5.0, heartbeat_s=0.5).start()
    try:
        event, _ = next_event(worker, "reachable")
        assert event["ok"]
        worker.send("submit_footage", folder=str(footage), spec={"job_type": "footage", "preset": "tiny"})
        job_id = next_event(worker, "submitted")[0]["job_id"]
        worker.send("watch", job_id=job_id)
        _, seen = next_event(worker, "completed")
        assert seen[-1] == "completed"
        worker.send("fetch", job_id=job_id, dest=str(tmp_path / "result"))
        fetched, _ = next_event(worker, "fetched")
        assert (Path(fetched["path"]) / "frames" / "frame_0000.ply").read_bytes() == b"ply"
    finally:
        t0 = time.monotonic()
        worker.stop()
        assert time.monotonic() - t0 < 3 and not worker.alive


def test_submit_file_uploads_from_the_worker_thread(live, tmp_path, monkeypatch):
    address, key = live
    seen = {}

    def recording_run_job(spec, input_dir, out_dir, ctx):
        seen["spec"], seen["files"] = dict(spec), sorted(p.name for p in Path(input_dir).iterdir())
        seen["bytes"] = (Path(input_dir) / spec["video"]).read_bytes()
        return fake_run_job(spec, input_dir, out_dir, ctx)

    monkeypatch.setattr(runner, "run_job", recording_run_job)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x01video bytes" * 1000)
    worker = client_mod.BackendWorker(address, key, protocol, timeout_s=5.0, heartbeat_s=0.5).start()
    try:
        next_event(worker, "reachable")
        worker.send("submit_file", path=str(video), field="video", spec={"job_type": "video", "preset": "tiny"})
        job_id = next_event(worker, "submitted")[0]["job_id"]
        worker.send("watch", job_id=job_id)
        next_event(worker, "completed")
        assert seen["spec"]["job_type"] == "video" and seen["spec"]["video"] == "clip.mp4"
        assert seen["files"] == ["clip.mp4"] and seen["bytes"] == video.read_bytes()
        # A file that vanished before upload is an error event, and the worker carries on.
        worker.send("submit_file", path=str(tmp_path / "gone.mp4"), field="video", spec={"job_type": "video"})
        err = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and err is None:
            try:
                ev = worker.events.get(timeout=0.1)
            except Exception:
                continue
            if ev["type"] == "error":
                err = ev
        assert err is not None and "gone.mp4" in err["message"]
        assert worker.alive
    finally:
        worker.stop()


def test_dead_backend_reports_unreachable_and_stops_fast():
    worker = client_mod.BackendWorker(f"tcp://127.0.0.1:{free_port()}", b"k" * 16, protocol,
                                      timeout_s=0.3).start()
    event, _ = next_event(worker, "reachable", timeout_s=5)
    assert event["ok"] is False
    t0 = time.monotonic()
    worker.stop()
    assert time.monotonic() - t0 < 2 and not worker.alive


def test_is_loopback():
    assert client_mod.is_loopback("tcp://127.0.0.1:5555")
    assert client_mod.is_loopback("tcp://localhost:5555")
    assert not client_mod.is_loopback("tcp://192.168.1.5:5555")
