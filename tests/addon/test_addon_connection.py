"""The add-on's backend connection (blender_addon/connection.py) against an in-process
backend with a fake runner: requests return futures whose callbacks run only when the main
thread drains the queue; a submit costs one ``submit`` and no ``watch``. No bpy: the module
is imported outside the add-on package (see _nobpy.py)."""

import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("zmq")
from _nobpy import addon_module  # noqa: E402

import protocol  # noqa: E402
from backend import server as server_mod  # noqa: E402
from backend.pipeline import runner  # noqa: E402
from protocol.formats.manifest import Manifest, write_manifest  # noqa: E402
from tests.helpers.backend_proc import free_port  # noqa: E402
from tests.helpers.footage import make_tiny_footage  # noqa: E402

connection_mod = addon_module("connection")
futures = addon_module("futures")


def fake_run_job(spec, input_dir, out_dir, ctx):
    for i in range(3):
        ctx.progress("reconstruct", i, 3, loss=0.5)
    (out_dir / "frames").mkdir()
    (out_dir / "frames" / "frame_0000.ply").write_bytes(b"ply")
    manifest = Manifest(frame_count=1, frame_files=["frames/frame_0000.ply"])
    write_manifest(out_dir, manifest)
    return manifest.to_dict()


@pytest.fixture
def requests_seen(monkeypatch):
    """Request types the server handled, in order (submit / watch / cancel / fetch_result)."""
    seen = []
    for name in ("submit", "watch", "cancel", "fetch_result"):
        original = getattr(server_mod.Server, f"_on_{name}")

        def counting(self, rid, req, bufs, _original=original, _name=name):
            seen.append(_name)
            return _original(self, rid, req, bufs)

        monkeypatch.setattr(server_mod.Server, f"_on_{name}", counting)
    return seen


@pytest.fixture
def live(tmp_path, monkeypatch, requests_seen):
    monkeypatch.setattr(runner, "run_job", fake_run_job)
    address, key = f"tcp://127.0.0.1:{free_port()}", b"test-key-0123456789abcdef"
    stop = threading.Event()
    t = threading.Thread(target=server_mod.serve, kwargs=dict(address=address, data_dir=tmp_path / "data",
                                                              key=key, stop_event=stop), daemon=True)
    t.start()
    yield address, key
    stop.set()
    t.join(15)


class Main:
    """The main thread's side: the dispatch queue, and what the callbacks recorded."""

    def __init__(self):
        self.queue = futures.MainThreadQueue(on_error=self.fail)
        self.reachability, self.errors, self.callback_threads = [], [], set()

    def fail(self, exc):
        raise AssertionError(f"a callback raised {exc!r}")

    def connect(self, address, key, **kwargs):
        return connection_mod.Connection(
            address, key, protocol, self.queue, on_reachability=lambda *a: self.reachability.append(a),
            on_error=self.errors.append, **kwargs).start()

    def pump(self, until, timeout_s=20.0, what="condition"):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.queue.drain()
            if until():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    def events_of(self, future):
        """A list the future's event callbacks append to (recording the callback thread)."""
        got = []

        def record(event):
            self.callback_threads.add(threading.current_thread())
            got.append(event)
        future.add_event_callback(record)
        return got


def test_submit_progress_fetch_with_one_submit_and_no_watch(live, tmp_path, requests_seen):
    address, key = live
    footage = make_tiny_footage(tmp_path / "footage", n_cams=2, n_times=2, size=16)
    main = Main()
    conn = main.connect(address, key, timeout_s=5.0, heartbeat_s=0.5)
    try:
        main.pump(lambda: main.reachability, what="a heartbeat")
        assert main.reachability[0][0] is True and main.reachability[0][1] < 5
        submitted = conn.submit_footage(str(footage), {"job_type": "footage", "preset": "tiny"})
        events = main.events_of(submitted)
        done = []
        submitted.add_done_callback(done.append)
        main.pump(lambda: events and events[-1]["type"] == "completed", what="completed")
        job_id = submitted.result()
        assert done == [submitted] and isinstance(job_id, str) and job_id
        types = [e["type"] for e in events]
        assert {"started", "progress", "completed"} <= set(types) and types[-1] == "completed", types
        assert all(e["job_id"] == job_id for e in events)
        assert any(e["stage"] == "reconstruct" and e["loss"] == 0.5 for e in events if e["type"] == "progress")
        assert requests_seen == ["submit"]  # the server subscribed the submitter: no watch

        fetched = conn.fetch(job_id, str(tmp_path / "result"))
        chunks = main.events_of(fetched)
        main.pump(fetched.done, what="the download")
        assert (Path(fetched.result()) / "frames" / "frame_0000.ply").read_bytes() == b"ply"
        assert [(c["index"], c["count"]) for c in chunks] == [(0, 2), (1, 2)]
        assert requests_seen == ["submit", "fetch_result", "fetch_result"]
        assert main.callback_threads == {threading.main_thread()} and not main.errors
    finally:
        t0 = time.monotonic()
        conn.stop()
        assert time.monotonic() - t0 < 3 and not conn.alive


def test_submit_file_uploads_from_the_connection_thread(live, tmp_path, monkeypatch):
    address, key = live
    seen = {}

    def recording_run_job(spec, input_dir, out_dir, ctx):
        seen["spec"], seen["files"] = dict(spec), sorted(p.name for p in Path(input_dir).iterdir())
        seen["bytes"] = (Path(input_dir) / spec["video"]).read_bytes()
        return fake_run_job(spec, input_dir, out_dir, ctx)

    monkeypatch.setattr(runner, "run_job", recording_run_job)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x01video bytes" * 1000)
    main = Main()
    conn = main.connect(address, key, timeout_s=5.0, heartbeat_s=0.5)
    try:
        submitted = conn.submit_file(str(video), {"job_type": "video", "preset": "tiny"}, "video")
        events = main.events_of(submitted)
        main.pump(lambda: events and events[-1]["type"] == "completed", what="completed")
        assert seen["spec"]["job_type"] == "video" and seen["spec"]["video"] == "clip.mp4"
        assert seen["files"] == ["clip.mp4"] and seen["bytes"] == video.read_bytes()
        # A file that vanished before upload fails its future, and the connection carries on.
        gone = conn.submit_file(str(tmp_path / "gone.mp4"), {"job_type": "video"}, "video")
        main.pump(gone.done, what="the failed upload")
        assert isinstance(gone.exception(), FileNotFoundError) and "gone.mp4" in str(gone.exception())
        assert conn.alive and conn.ping().result(timeout=10) < 5
    finally:
        conn.stop()


def test_watch_replays_a_finished_job_and_refuses_an_unknown_one(live, requests_seen):
    address, key = live
    main = Main()
    first = main.connect(address, key, timeout_s=5.0)
    try:
        submitted = first.submit({"job_type": "footage", "name": "ok"}, {})
        events = main.events_of(submitted)
        main.pump(lambda: events and events[-1]["type"] == "completed", what="completed")
    finally:
        first.stop()
    # A new connection (as after a Blender restart) reattaches by id.
    second = main.connect(address, key, timeout_s=5.0)
    try:
        watched = second.watch(submitted.result())
        replayed = main.events_of(watched)
        main.pump(lambda: replayed, what="the replay")
        assert watched.result() == submitted.result()
        assert [e["type"] for e in replayed] == ["completed"]
        assert requests_seen == ["submit", "watch"]
        unknown = second.watch("no-such-job")
        main.pump(unknown.done, what="the refusal")
        assert isinstance(unknown.exception(), protocol.RemoteError) and unknown.exception().code == "unknown_job"
        cancel = second.cancel("no-such-job")
        main.pump(cancel.done, what="the cancel refusal")
        assert cancel.exception().code == "unknown_job"
    finally:
        second.stop()


def test_dead_backend_reports_unreachable_and_stops_fast():
    main = Main()
    conn = main.connect(f"tcp://127.0.0.1:{free_port()}", b"k" * 16, timeout_s=0.3)
    waiting = [conn.submit({"job_type": "footage"}, {}) for _ in range(3)]
    main.pump(lambda: main.reachability, timeout_s=5, what="an unreachable report")
    ok, rtt, message = main.reachability[0]
    assert ok is False and rtt is None and "no reply" in message
    t0 = time.monotonic()
    conn.stop()
    assert time.monotonic() - t0 < 2 and not conn.alive
    main.queue.drain()
    # Each request either failed (no backend) or was cancelled with the thread; none hangs.
    assert all(f.done() for f in waiting)
    assert any(f.cancelled() for f in waiting) or all(f.exception() for f in waiting)


def test_is_loopback():
    assert connection_mod.is_loopback("tcp://127.0.0.1:5555")
    assert connection_mod.is_loopback("tcp://localhost:5555")
    assert connection_mod.is_loopback("ipc:///tmp/gen4d")
    assert not connection_mod.is_loopback("tcp://192.168.1.5:5555")


def test_the_addon_connects_to_a_studio_backend_over_curve(tmp_path, monkeypatch):
    """Issue 16: with CurveZMQ keys configured, the add-on's connection (settings from a
    credentials file, as the preferences pass them) talks to a CURVE-only backend on loopback."""
    from backend.users import add_user
    from tests.helpers.backend_proc import server_thread

    monkeypatch.setattr(runner, "run_job", fake_run_job)
    data = tmp_path / "data"
    cred = protocol.load_credentials(add_user(data, "alice")["path"])
    settings = {"key": cred["key"], "user": cred["user"],
                "curve": (cred["curve_public"], cred["curve_secret"], cred["server_public"])}
    with server_thread(data, b"own-key-0123456789abcdef", curve=True,
                       ping_credentials=data / "users" / "alice.credentials.json") as address:
        main, other = Main(), Main()
        conn = main.connect(address, timeout_s=5.0, heartbeat_s=0.5, **settings)
        plain = other.connect(address, cred["key"], timeout_s=1.0, heartbeat_s=0.5, user="alice")
        try:
            submitted = conn.submit({"job_type": "footage", "name": "curve"}, {"a.txt": b"a"})
            events = main.events_of(submitted)
            main.pump(lambda: events and events[-1]["type"] == "completed", what="completed over CURVE")
            assert main.reachability and all(r[0] is True for r in main.reachability)
            # the same user and key without CURVE never gets through to this backend
            other.pump(lambda: other.reachability, what="the plain connection's heartbeat")
            assert other.reachability[0][0] is False and "no reply" in other.reachability[0][2]
        finally:
            conn.stop()
            plain.stop()
