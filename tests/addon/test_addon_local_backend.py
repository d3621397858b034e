"""Start Local Backend: Blender spawns the backend with the interpreter from the add-on
preferences, tracks its pid, connects once it is listening (heartbeats), shows its log,
and stops it (also on unregister)."""

import importlib.util
import sys

import pytest

from _run import REPO, run_bpy_script
from tests.helpers.backend_proc import free_port

if importlib.util.find_spec("bpy") is None:
    pytest.skip("needs the bpy module", allow_module_level=True)


def ops(log):
    return {d.split("|")[0]: enabled for k, d, enabled, _ in log if k == "operator"}


@pytest.mark.timeout(300)
def test_start_connect_log_stop(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    res = run_bpy_script("local_backend_checks.py", sys.executable, REPO, tmp_path / "data", address,
                         env={"BLENDER_USER_RESOURCES": str(tmp_path / "user"), "HF_HUB_OFFLINE": "1"})
    assert res["start"] == ["FINISHED"]
    assert res["key_file_pref"] == str(tmp_path / "data" / "gen4d.key")
    assert res["reachable"] is True, res
    assert res["status"].startswith("running (pid ")
    labels = [d for k, d, *_ in res["panel_running"] if k == "label"]
    assert any(label.startswith("local backend running (pid ") for label in labels)
    assert any(label.startswith("reachable (") for label in labels)
    assert "gen4d.stop_local_backend" in ops(res["panel_running"])
    assert res["log_op"] == ["FINISHED"] and "gen4d backend listening on " + address in res["log_text"]
    assert res["stop"] == ["FINISHED"]
    assert res["status_after_stop"].startswith("exited (code ") and not res["pid_alive_after_stop"]
    assert "gen4d.start_local_backend" in ops(res["panel_stopped"])
    assert "interpreter not found" in res["bad_python_error"]
    assert res["second_returncode_after_disable"] is not None  # stopped with the add-on
    print("reachable after", round(res["reachable_after_s"], 1), "s")
