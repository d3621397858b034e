"""blender_addon/panel_state.py: the named transitions give the statuses and texts the
panel shows (the drawing itself: test_addon_panel.py). No bpy."""

import time

import pytest
from _nobpy import addon_module

panel_state = addon_module("panel_state")


def test_a_job_from_submit_to_ready():
    s = panel_state.PanelState(job_id="old", status="failed", last_error="boom", result_dir="/r", preview_path="/p")
    s.submitting()
    assert (s.job_id, s.status, s.message, s.last_error, s.result_dir, s.preview_path) == (
        "", "submitting", "uploading", "", "", "")
    assert s.busy
    s.accepted("j1")
    assert (s.job_id, s.status, s.message) == ("j1", "queued", "queued")
    s.started()
    s.queued()  # a late queued event does not move a running job back
    assert s.status == "running"
    s.progressed("reconstruct", 400, 1000, eta_s=75, loss=0.04, message="step 400/1000")
    assert (s.stage, s.progress, s.eta_s, s.loss, s.message) == ("reconstruct", 0.4, 75, 0.04, "step 400/1000")
    s.progressed("export", 5, 0)  # unknown total
    assert s.progress == 0.0 and s.message == ""
    s.progressed("export", 7, 3)
    assert s.progress == 1.0  # clamped
    assert s.completed() is True and (s.status, s.message) == ("fetching", "downloading result")
    assert s.completed() is False  # a replayed completed event starts no second download
    s.fetch_progress(0, 4)
    assert s.message == "downloading 1/4"
    s.fetched("/results/j1")
    assert (s.status, s.result_dir, s.message, s.busy) == ("ready", "/results/j1", "result ready", False)


def test_failures_cancel_and_reattach():
    s = panel_state.PanelState()
    s.failed("model_missing", "stabilityai/sd-turbo is not downloaded")
    assert s.status == "failed" and s.last_error == "model_missing: stabilityai/sd-turbo is not downloaded"
    s.reattaching("j9")
    assert (s.job_id, s.status, s.message, s.last_error) == ("j9", "queued", "reattaching", "")
    s.reattach_failed("RemoteError: [unknown_job] no job j9")
    assert s.status == "failed" and "unknown_job" in s.last_error
    s.cancelled()
    assert (s.status, s.message) == ("cancelled", "cancelled")
    s.fetch_failed("BackendUnavailable: no reply")
    assert s.status == "completed" and s.last_error.startswith("BackendUnavailable")
    s.submit_failed("ValueError: bad spec")
    assert s.status == "failed" and s.last_error == "ValueError: bad spec"


def test_reachability_and_capture():
    s = panel_state.PanelState()
    assert s.reachable is None
    s.reachability(True, 0.004)
    assert s.reachable is True and s.rtt_s == 0.004 and s.last_ok == pytest.approx(time.monotonic(), abs=1)
    s.reachability(False, None, "")
    assert s.reachable is False and s.unreachable_reason == "no answer" and s.last_ok is not None
    s.disconnected()
    assert s.reachable is None
    s.capturing()
    assert (s.status, s.progress, s.message, s.busy) == ("capturing", 0.0, "capturing", True)
    s.capture_progress(3, 12)
    assert s.progress == 0.25 and s.message == "capturing 3/12"
    s.capture_cancelled()
    assert (s.status, s.message) == ("idle", "capture cancelled")
    s.capture_failed("capture failed: no geometry")
    assert s.status == "idle" and s.last_error == "capture failed: no geometry"
    s.capture_finished("captured 24 images to /tmp/c")
    assert s.message == "captured 24 images to /tmp/c"


def test_queue_position_and_the_node_that_runs_the_job():
    """Issue 17 item 4: the panel says how many jobs are ahead and where the job runs."""
    s = panel_state.PanelState()
    s.submitting()
    s.accepted("j1")
    s.queued(3)
    assert (s.status, s.message) == ("queued", "queued, 3 job(s) ahead")
    s.queued(0)
    assert s.message == "queued, next to run"
    s.started("gpu-node-2")
    assert (s.status, s.node, s.message) == ("running", "gpu-node-2", "running on gpu-node-2")
    s.reattaching("j2")
    assert s.node == ""  # another job: where the old one ran no longer applies
    s.started(None)
    assert (s.status, s.node) == ("running", "")
