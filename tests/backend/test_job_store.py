"""The SQLite job store (backend.jobs): WAL mode, state across reopen, migration from the
JSON job folders, corrupt rows, and resuming running jobs that have a checkpoint."""

import json
import logging
import sqlite3
import threading

import pytest

from backend.jobs import JobDatabaseError, JobStore


def _db(tmp_path):
    return sqlite3.connect(tmp_path / "jobs.sqlite3")


def test_wal_mode_and_state_survive_reopen(tmp_path):
    store = JobStore(tmp_path)
    a = store.create({"job_type": "footage", "name": "a"}, [("in/x.png", b"1")], owner="ann")["job_id"]
    b = store.create({"job_type": "footage"}, [])["job_id"]
    assert store.transition(a, {"queued"}, "running")
    store.set_progress(a, {"stage": "reconstruct", "step": 3, "total": 9, "loss": 0.5})
    assert store.transition(a, {"running"}, "completed", frame_count=2, files=["manifest.json"])
    store.close()
    with _db(tmp_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = JobStore(tmp_path)
    job = again.get(a)
    assert job["state"] == "completed" and job["owner"] == "ann" and job["frame_count"] == 2
    assert job["progress"]["step"] == 3 and job["spec"] == {"job_type": "footage", "name": "a"}
    assert (again.input_dir(a) / "in" / "x.png").read_bytes() == b"1"
    assert [j["job_id"] for j in again.list()] == [a, b] and again.pending == [b]
    c = again.create({"job_type": "footage"}, [])
    assert c["seq"] == 3  # sequence numbers continue after a reopen
    assert not list(tmp_path.glob("jobs/*/state.json"))  # the database is the only record


def test_concurrent_writers_keep_every_change(tmp_path):
    store = JobStore(tmp_path)
    ids = [store.create({"job_type": "footage"}, [])["job_id"] for _ in range(4)]

    def hammer(job_id):
        for i in range(50):
            store.set_progress(job_id, {"stage": "s", "step": i, "total": 50, "loss": None})

    threads = [threading.Thread(target=hammer, args=(j,)) for j in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    assert all(JobStore(tmp_path).get(j)["progress"]["step"] == 49 for j in ids)


def _old_folder(root, job_id, seq, state="queued", spec=None, **fields):
    d = root / "jobs" / job_id
    (d / "input").mkdir(parents=True)
    (d / "result").mkdir()
    record = {"job_id": job_id, "seq": seq, "state": state, "created_at": 1.0 + seq, "started_at": None,
              "finished_at": None, "error_code": None, "error_message": None, "progress": None,
              "frame_count": None, "files": None, **fields}
    (d / "state.json").write_text(json.dumps(record))
    (d / "spec.json").write_text(json.dumps(spec or {"job_type": "footage", "seq": seq}))
    return d


def test_migration_from_json_folders(tmp_path, caplog):
    a, b, c, bad = "a" * 32, "b" * 32, "c" * 32, "d" * 32
    _old_folder(tmp_path, a, 1, state="completed", frame_count=4, files=["manifest.json"])
    _old_folder(tmp_path, b, 2, state="queued")
    _old_folder(tmp_path, c, 3, state="failed", progress={"stage": "r", "step": 1, "total": 2,
                                                         "loss": float("nan")})
    d = tmp_path / "jobs" / bad
    d.mkdir(parents=True)
    (d / "state.json").write_text("{not json")
    (d / "spec.json").write_text("{}")
    with caplog.at_level(logging.WARNING, logger="gen4d.jobs"):
        store = JobStore(tmp_path)
    assert any("not migrated" in r.getMessage() and bad in r.getMessage() for r in caplog.records)
    assert [j["job_id"] for j in store.list()] == [a, b, c]
    assert store.get(a)["frame_count"] == 4 and store.get(a)["owner"] is None  # records from before owners
    assert store.get(c)["progress"]["loss"] is None  # NaN repaired: every job encodes
    json.dumps(store.list(), allow_nan=False)
    assert store.pending == [b] and store.spec(b) == {"job_type": "footage", "seq": 2}
    for j in (a, b, c):
        folder = tmp_path / "jobs" / j
        assert not (folder / "state.json").exists() and (folder / "state.json.migrated").exists()
        assert (folder / "spec.json.migrated").exists()
    assert (d / "state.json").exists()  # the unreadable folder is left as it was
    store.transition(b, {"queued"}, "cancelled")
    store.close()
    store2 = JobStore(tmp_path)  # a second open does not import again (b stays cancelled)
    assert store2.get(b)["state"] == "cancelled" and len(store2.list()) == 3
    with _db(tmp_path) as db:
        assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 3
    assert store2.create({"job_type": "footage"}, [])["seq"] == 4


def test_a_corrupt_row_is_skipped_with_a_warning(tmp_path, caplog):
    store = JobStore(tmp_path)
    good = store.create({"job_type": "footage"}, [])["job_id"]
    store.close()
    with _db(tmp_path) as db:
        db.execute("INSERT INTO jobs VALUES (?, 5, 'queued', ?, '{}')", ("e" * 32, "{torn"))
        db.execute("INSERT INTO jobs VALUES (?, 6, 'queued', ?, '[]')",
                   ("f" * 32, json.dumps({"job_id": "f" * 32, "state": "queued", "seq": 6})))
        db.execute("INSERT INTO jobs VALUES (?, 7, 'bogus', ?, '{}')",
                   ("0" * 32, json.dumps({"job_id": "0" * 32, "state": "bogus", "seq": 7})))
    with caplog.at_level(logging.WARNING, logger="gen4d.jobs"):
        store = JobStore(tmp_path)
    assert [j["job_id"] for j in store.list()] == [good] and store.pending == [good]
    skipped = [r.getMessage() for r in caplog.records if "skipping unreadable job record" in r.getMessage()]
    assert len(skipped) == 3


def test_running_job_with_checkpoint_is_requeued_ahead_of_newer_jobs(tmp_path):
    store = JobStore(tmp_path)
    old = store.create({"job_type": "footage"}, [])["job_id"]
    resumable = store.create({"job_type": "footage"}, [])["job_id"]
    lost = store.create({"job_type": "footage"}, [])["job_id"]
    newer = store.create({"job_type": "footage"}, [])["job_id"]
    for j in (old, resumable, lost):
        store.transition(j, {"queued"}, "running")
    store.transition(old, {"running"}, "completed", frame_count=1, files=[])
    store.checkpoint_dir(resumable).mkdir()
    (store.checkpoint_dir(resumable) / "reconstruct.pt").write_bytes(b"x")
    (store.checkpoint_dir(lost)).mkdir()
    (store.checkpoint_dir(lost) / "reconstruct.pt.tmp").write_bytes(b"half")  # a torn write is no checkpoint
    store.close()
    again = JobStore(tmp_path)
    assert again.pending == [resumable, newer]
    assert again.get(resumable)["state"] == "queued" and again.get(resumable)["error_code"] is None
    assert again.get(lost)["state"] == "failed" and again.get(lost)["error_code"] == "interrupted"
    assert again.queue_position(newer) == 1


def test_not_a_database_is_a_clear_error(tmp_path):
    (tmp_path / "jobs.sqlite3").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JobDatabaseError, match="move it away"):
        JobStore(tmp_path)


def test_worker_keeps_the_checkpoint_only_for_a_shutdown(tmp_path, monkeypatch):
    """Cancel and completion delete ``checkpoint/``; a shutdown keeps it and re-queues the job."""
    from backend.errors import JobCancelled
    from backend.pipeline import runner
    from backend.worker import Worker

    def fake_run_job(spec, input_dir, out_dir, ctx):
        ctx.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        (ctx.checkpoint_dir / "reconstruct.pt").write_bytes(b"state")
        if spec.get("name") == "quick":
            (out_dir / "manifest.json").write_text("{}")
            return {"frame_count": 1}
        while not ctx.cancel_event.wait(0.01):
            pass
        raise JobCancelled()

    monkeypatch.setattr(runner, "run_job", fake_run_job)
    store = JobStore(tmp_path)
    events = []
    worker = Worker(store, lambda header, bufs: events.append(header))
    quick = store.create({"job_type": "footage", "name": "quick"}, [])["job_id"]
    cancelled = store.create({"job_type": "footage"}, [])["job_id"]
    stopped = store.create({"job_type": "footage"}, [])["job_id"]
    worker.start([quick, cancelled, stopped])

    def wait_state(job, state):
        for _ in range(500):
            if store.get(job)["state"] == state and store.has_checkpoint(job) == (state == "running"):
                return
            threading.Event().wait(0.01)
        raise AssertionError(f"{job} never {state}: {store.get(job)['state']}")

    wait_state(cancelled, "running")
    assert store.get(quick)["state"] == "completed" and not store.checkpoint_dir(quick).exists()
    assert worker.cancel(cancelled) == "requested"
    wait_state(stopped, "running")
    assert store.get(cancelled)["state"] == "cancelled" and not store.checkpoint_dir(cancelled).exists()
    worker.stop()
    assert store.get(stopped)["state"] == "queued" and store.has_checkpoint(stopped)
    store.close()
    assert JobStore(tmp_path).pending == [stopped]
