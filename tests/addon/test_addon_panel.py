"""The sidebar panel's draw() in each job state, through a recording layout (real bpy in
a subprocess, see bpy_scripts/panel_checks.py)."""

import importlib.util

import pytest

from _run import BLENDERS, run_bpy_script

if importlib.util.find_spec("bpy") is None:  # do not import bpy in the pytest process
    pytest.skip("needs the bpy module", allow_module_level=True)

SUBMIT = ("gen4d.submit_prompt", "gen4d.submit_image", "gen4d.submit_video", "gen4d.submit_orbital_video",
          "gen4d.submit_footage", "gen4d.capture_selected")


@pytest.fixture(scope="module", params=BLENDERS)
def res(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("panel")
    return run_bpy_script("panel_checks.py", work, env={"BLENDER_USER_RESOURCES": str(work / "user")},
                          blender=request.param)


def ops(log):
    """operator id -> (button text, enabled) for each operator drawn."""
    out = {}
    for kind, detail, enabled, _ in log:
        if kind == "operator":
            idname, text = detail.split("|", 1)
            out[idname] = (text, enabled)
    return out


def of_kind(log, kind):
    return [entry for entry in log if entry[0] == kind]


def test_idle_offers_every_input_and_no_progress(res):
    drawn = ops(res["idle"])
    for idname in SUBMIT:
        assert drawn[idname][1], idname  # enabled
    assert "gen4d.cancel" not in drawn
    assert not of_kind(res["idle"], "progress")
    assert drawn["gen4d.import_result"][0] == "Import Result Folder…"
    assert drawn["gen4d.prepare_scene"][1]  # offered, applied only when pressed
    labels = [d for k, d, *_ in res["idle"] if k == "label"]
    assert "not connected" in labels


def test_running_shows_stage_progress_eta_and_cancel_and_locks_inputs(res):
    log = res["running"]
    (progress,) = of_kind(log, "progress")
    factor, text = progress[1].split("|")
    assert float(factor) == pytest.approx(0.4)
    assert text == "running · reconstruct ETA 1:15"
    drawn = ops(log)
    assert drawn["gen4d.cancel"][1]
    for idname in SUBMIT:
        assert not drawn[idname][1], idname  # disabled while a job runs
    labels = [d for k, d, *_ in log if k == "label"]
    assert "step 400/1000 · loss 0.0412" in labels
    assert "reachable (4 ms)" in labels


def test_ready_offers_import(res):
    drawn = ops(res["ready"])
    assert drawn["gen4d.import_result"] == ("Import", True)
    assert "gen4d.cancel" not in drawn
    for idname in SUBMIT:
        assert drawn[idname][1]


def test_failure_is_an_alert_label_not_a_traceback(res):
    alerts = [d for k, d, _, alert in res["failed"] if k == "label" and alert]
    assert alerts == ["model_missing: stabilityai/sd-turbo is not downloaded"]
    assert "unreachable" in [d for k, d, *_ in res["failed"] if k == "label"]


def test_active_asset_shows_its_player_inputs(res):
    props = [d for k, d, *_ in res["asset_active"] if k == "prop"]
    assert props[-5:] == ["Frame", "Retime", "Splat Size", "Opacity Threshold", "Viewport Display"]
    assert "asset" in [d for k, d, *_ in res["asset_active"] if k == "label"]
    assert not [d for k, d, *_ in res["idle"] if k == "prop" and d == "Retime"]


def test_unreachable_backend_shows_why_since_when_and_how_to_recover(res):
    log = res["unreachable"]
    labels = [d for k, d, *_ in log if k == "label"]
    assert "unreachable (last answer 12 s ago)" in labels
    assert "BackendUnavailable: no reply within 5.0 s" in labels
    drawn = ops(log)
    assert drawn["gen4d.connect"][1] and drawn["gen4d.start_local_backend"][1]
    assert "gen4d.cancel" not in drawn and not of_kind(log, "progress")


def test_job_list_rows_offer_import_reattach_and_forget(res):
    log = res["job_list"]
    labels = [d for k, d, *_ in log if k == "label"]
    assert "Jobs (2)" in labels
    assert "cccc2222 · prompt · ready · a dancing robot" in labels
    assert "aaaa1111 · footage · running · wobble" in labels
    row_ops = [d for k, d, *_ in log if k == "operator"]
    header = row_ops.index("gen4d.reattach|Reattach by ID…")
    # Newest first: the finished job's row imports, the running one's reattaches.
    assert [d.split("|")[0] for d in row_ops[header + 1:header + 5]] == [
        "gen4d.import_result", "gen4d.forget_job", "gen4d.reattach", "gen4d.forget_job"]
