"""The add-on's job flow through its operators and timer in real bpy, against an in-process
backend with a fake runner (bpy_scripts/session_checks.py): a submit is one ``submit``
request and no ``watch``; progress, preview, completion, download and cancel still reach
the panel and the job list."""

import importlib.util

import pytest

from _run import run_bpy_script

if importlib.util.find_spec("bpy") is None:  # do not import bpy in the pytest process
    pytest.skip("needs the bpy module", allow_module_level=True)


@pytest.fixture(scope="module")
def res(tmp_path_factory):
    work = tmp_path_factory.mktemp("session")
    return run_bpy_script("session_checks.py", work, env={"BLENDER_USER_RESOURCES": str(work / "user"),
                                                          "HF_HUB_OFFLINE": "1"})


def test_submit_is_one_request_and_the_job_runs_to_an_imported_ready_result(res):
    assert res["reachable_before_connect"] is None and res["connect"] == ["FINISHED"] and res["reachable"] is True
    assert res["submit"] == ["FINISHED"] and res["status_right_after_submit"] == "submitting"
    assert res["status"] == "ready", (res["seen"], res["error"])
    assert res["seen"][0] == "submitting" and "running" in res["seen"] and "fetching" in res["seen"], res["seen"]
    assert res["message"] == "result ready" and res["progress"] == 1.0 and res["stage"] == "reconstruct"
    assert res["frame_on_disk"] and res["preview"] == "\x89PNG fake preview"
    record = res["record"]
    assert record["job_id"] == res["job_id"] and record["status"] == "ready"
    assert record["job_type"] == "prompt" and record["name"] == "a dancing robot"
    assert record["result_dir"] == res["result_dir"]
    # One submit (the server subscribed the submitter), then the download; never a watch.
    assert res["requests_after_job"][0] == "submit"
    assert set(res["requests_after_job"][1:]) == {"fetch_result"}


def test_cancel_reaches_the_backend_and_the_panel(res):
    assert res["cancel"] == ["FINISHED"]
    assert res["cancel_status"] == "cancelled" and res["cancel_message"] == "cancelled", res["seen_cancel"]
    assert res["cancel_record"]["status"] == "cancelled"
    assert [r for r in res["requests"] if r != "fetch_result"] == ["submit", "submit", "cancel"]
    assert len(res["jobs_listed"]) == 2 and res["jobs_listed"][1] == res["job_id"]  # newest first
    assert res["timer_after_disable"] is False


def test_a_credentials_file_in_the_preferences_gives_user_and_curve_keys(res):
    assert res["credentials_settings"] == res["credentials_expected"]
    assert "chmod 600" in res["open_credentials_error"]  # a file others can read is refused
