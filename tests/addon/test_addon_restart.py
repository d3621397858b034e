"""A job survives a Blender restart: session 1 submits and quits, session 2 (a new process)
finds the job in the add-on's job list, reattaches by id and imports the result."""

import importlib.util
import json
from pathlib import Path

import pytest

from _run import BLENDERS, run_bpy_script
from tests.helpers.backend_proc import BackendProcess
from tests.helpers.footage import make_tiny_footage

if importlib.util.find_spec("bpy") is None:
    pytest.skip("needs the bpy module", allow_module_level=True)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("blender", BLENDERS)
def test_quit_restart_reattach_by_id_and_import(tmp_path, blender):
    footage = make_tiny_footage(tmp_path / "footage", n_cams=4, n_times=3, size=32)
    env = {"BLENDER_USER_RESOURCES": str(tmp_path / "user"), "HF_HUB_OFFLINE": "1"}
    backend = BackendProcess(tmp_path / "backend")
    try:
        key = tmp_path / "backend" / "gen4d.key"
        first = run_bpy_script("restart_session.py", "submit", backend.address, key, tmp_path, footage, env=env,
                               blender=blender)
        second = run_bpy_script("restart_session.py", "reattach", backend.address, key, tmp_path, env=env,
                                blender=blender)
        assert backend.proc.poll() is None, "backend died"
    finally:
        backend.stop()

    # Session 1 quit while the job was queued or running, with the job on disk.
    job_id = first["job_id"]
    assert first["submit"] == ["FINISHED"] and job_id
    assert first["status_at_quit"] in ("queued", "running")
    assert [r["job_id"] for r in first["on_disk"]] == [job_id]
    assert first["on_disk"][0]["job_type"] == "footage" and first["on_disk"][0]["name"] == "footage"
    assert first["store"] == second["store"] and str(tmp_path / "user") in first["store"]

    # Session 2 listed it, reattached by id, downloaded and imported the result.
    assert second["listed"][0]["job_id"] == job_id
    assert second["reattach"] == ["FINISHED"]
    assert second["status"] == "ready", (second["seen"], second["error"])
    manifest = json.loads((Path(second["result_dir"]) / "manifest.json").read_text())
    assert second["import"] == ["FINISHED"]
    assert second["frame_count"] == manifest["frame_count"] == 3
    assert second["points"] == manifest["gaussian_count"] > 0
    assert second["record_after"]["status"] == "ready"
    assert second["record_after"]["result_dir"] == second["result_dir"]
    # An unknown id fails clearly.
    assert second["bogus_status"] == "failed" and "unknown_job" in second["bogus_error"]
