"""The add-on's job list file: records survive a reload, a corrupt file is kept aside and
reported (never a crash), writes are atomic. No bpy: the module is loaded from its file."""

import importlib.util
import json

import pytest

from _run import REPO

spec_ = importlib.util.spec_from_file_location("gen4d_job_store", REPO / "blender_addon" / "job_store.py")
job_store = importlib.util.module_from_spec(spec_)
spec_.loader.exec_module(job_store)


def test_records_round_trip_newest_first(tmp_path):
    path = tmp_path / "jobs.json"
    records = job_store.upsert([], "a1", job_type="footage", status="queued")
    records = job_store.upsert(records, "b2", job_type="prompt", name="robot", status="running")
    records = job_store.upsert(records, "a1", status="ready", result_dir="/r/a1")
    job_store.save(path, records)
    loaded, warning = job_store.load(path)
    assert warning == ""
    assert [r["job_id"] for r in loaded] == ["b2", "a1"]
    assert job_store.find(loaded, "a1")["status"] == "ready" and job_store.find(loaded, "a1")["result_dir"] == "/r/a1"
    assert job_store.find(loaded, "a1")["submitted_at"] > 0
    assert [r["job_id"] for r in job_store.forget(loaded, "b2")] == ["a1"]
    assert not list(tmp_path.glob("*.tmp-*"))  # the temporary file was renamed into place


def test_corrupt_file_is_kept_aside_and_reported(tmp_path):
    path = tmp_path / "jobs.json"
    path.write_text('{"jobs": [{"job_id": "x"')  # truncated, as after a crash of another writer
    records, warning = job_store.load(path)
    assert records == [] and "unreadable" in warning
    kept = list(tmp_path.glob("jobs.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_text().startswith('{"jobs"')
    assert not path.exists()


def test_bad_records_and_fields(tmp_path):
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps({"jobs": [{"job_id": "ok", "status": "ready"}, {"status": "no id"}, 5]}))
    records, _ = job_store.load(path)
    assert [r["job_id"] for r in records] == ["ok"] and records[0]["result_dir"] == ""
    with pytest.raises(ValueError, match="unknown job record field"):
        job_store.upsert(records, "ok", colour="red")
    with pytest.raises(ValueError, match="job id"):
        job_store.upsert(records, "")


def test_list_is_capped(tmp_path):
    records = []
    for i in range(job_store.MAX_RECORDS + 5):
        records = job_store.upsert(records, f"j{i}")
    job_store.save(tmp_path / "jobs.json", records)
    loaded, _ = job_store.load(tmp_path / "jobs.json")
    assert len(loaded) == job_store.MAX_RECORDS and loaded[0]["job_id"] == f"j{job_store.MAX_RECORDS + 4}"
