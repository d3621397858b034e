"""The add-on's persistent job list (blender_addon/job_list.py): records survive a reload, a
corrupt file is kept aside and reported (never a crash), writes are atomic. No bpy."""

import json

import pytest
from _nobpy import addon_module

job_list = addon_module("job_list")


def test_records_round_trip_newest_first(tmp_path):
    path = tmp_path / "jobs.json"
    records = job_list.upsert([], "a1", job_type="footage", status="queued")
    records = job_list.upsert(records, "b2", job_type="prompt", name="robot", status="running")
    records = job_list.upsert(records, "a1", status="ready", result_dir="/r/a1")
    job_list.save(path, records)
    loaded, warning = job_list.load(path)
    assert warning == ""
    assert [r["job_id"] for r in loaded] == ["b2", "a1"]
    assert job_list.find(loaded, "a1")["status"] == "ready" and job_list.find(loaded, "a1")["result_dir"] == "/r/a1"
    assert job_list.find(loaded, "a1")["submitted_at"] > 0
    assert [r["job_id"] for r in job_list.forget(loaded, "b2")] == ["a1"]
    assert not list(tmp_path.glob("*.tmp-*"))  # the temporary file was renamed into place


def test_corrupt_file_is_kept_aside_and_reported(tmp_path):
    path = tmp_path / "jobs.json"
    path.write_text('{"jobs": [{"job_id": "x"')  # truncated, as after a crash of another writer
    records, warning = job_list.load(path)
    assert records == [] and "unreadable" in warning
    kept = list(tmp_path.glob("jobs.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_text().startswith('{"jobs"')
    assert not path.exists()


def test_bad_records_and_fields(tmp_path):
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps({"jobs": [{"job_id": "ok", "status": "ready"}, {"status": "no id"}, 5]}))
    records, _ = job_list.load(path)
    assert [r["job_id"] for r in records] == ["ok"] and records[0]["result_dir"] == ""
    with pytest.raises(ValueError, match="unknown job record field"):
        job_list.upsert(records, "ok", colour="red")
    with pytest.raises(ValueError, match="job id"):
        job_list.upsert(records, "")


def test_list_is_capped(tmp_path):
    records = []
    for i in range(job_list.MAX_RECORDS + 5):
        records = job_list.upsert(records, f"j{i}")
    job_list.save(tmp_path / "jobs.json", records)
    loaded, _ = job_list.load(tmp_path / "jobs.json")
    assert len(loaded) == job_list.MAX_RECORDS and loaded[0]["job_id"] == f"j{job_list.MAX_RECORDS + 4}"


def test_job_list_loads_lazily_saves_each_change_and_reports_instead_of_raising(tmp_path):
    warnings = []
    path = tmp_path / "user" / "jobs.json"
    opened = []
    jobs = job_list.JobList(lambda: opened.append(1) or path, on_warning=warnings.append)
    assert opened == []  # nothing read before first use
    assert jobs.records() == [] and opened == [1]
    jobs.record("a1", status="queued", job_type="footage", name="wobble")
    jobs.record("a1", status="ready", result_dir="/r/a1")
    jobs.record("b2", status="running")
    assert [r["job_id"] for r in json.loads(path.read_text())["jobs"]] == ["b2", "a1"]
    assert jobs.find("a1")["status"] == "ready" and jobs.find("zz") is None
    jobs.record("a1", colour="red")  # a bad field is reported, not raised
    assert "unknown job record field" in warnings[-1]
    jobs.forget("b2")
    again = job_list.JobList(path)
    assert [r["job_id"] for r in again.records()] == ["a1"]
    path.write_text("{not json")
    assert jobs.reload() == [] and "unreadable" in warnings[-1]
    assert list(path.parent.glob("jobs.json.corrupt-*"))


def test_job_list_without_a_usable_folder_keeps_working_in_memory(tmp_path):
    warnings = []
    blocker = tmp_path / "file"
    blocker.write_text("")

    def no_folder():
        raise OSError("no user folder")
    jobs = job_list.JobList(no_folder, on_warning=warnings.append)
    jobs.record("a1", status="queued")
    assert [r["job_id"] for r in jobs.records()] == ["a1"] and "unavailable" in warnings[0]
    unwritable = job_list.JobList(blocker / "jobs.json", on_warning=warnings.append)
    unwritable.record("b2", status="queued")
    assert unwritable.find("b2") is not None and "not saved" in warnings[-1]
