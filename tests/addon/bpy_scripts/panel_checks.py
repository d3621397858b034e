"""Run in a fresh process: draw the gen4d panel with a recording layout in each job state
and print what it drew as ``RESULT: {json}`` (tests/addon/test_addon_panel.py asserts)."""

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
import bpy  # noqa: E402

import blender_addon  # noqa: E402
from blender_addon import panel_state, panels, session  # noqa: E402
from blender_addon.importer import import_result  # noqa: E402
from samples.synthetic_result import write_result  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recording_layout import draw_panel  # noqa: E402


def draw(label):
    res[label] = draw_panel(panels.GEN4D_PT_main, bpy.context)


work = Path(sys.argv[1])
res = {}
blender_addon.register()
try:
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)

    panel_state.STATE = panel_state.PanelState()
    draw("idle")

    panel_state.STATE = panel_state.PanelState(reachable=True, rtt_s=0.004, job_id="j1", status="running",
                                               stage="reconstruct", progress=0.4, eta_s=75, message="step 400/1000 · loss 0.0412")
    draw("running")

    panel_state.STATE = panel_state.PanelState(reachable=True, job_id="j1", status="ready", stage="export",
                                               progress=1.0, result_dir=str(work))
    draw("ready")

    panel_state.STATE = panel_state.PanelState(reachable=False, job_id="j2", status="failed",
                                               last_error="model_missing: stabilityai/sd-turbo is not downloaded")
    draw("failed")

    import time
    panel_state.STATE = panel_state.PanelState(reachable=False, last_ok=time.monotonic() - 12.4,
                                               unreachable_reason="BackendUnavailable: no reply within 5.0 s")
    draw("unreachable")

    # The job list (on disk under BLENDER_USER_RESOURCES): a finished job with its result
    # downloaded, and one still running on the backend.
    (work / "done").mkdir(exist_ok=True)
    session.JOBS.record("aaaa1111bbbb", job_type="footage", name="wobble", status="running")
    session.JOBS.record("cccc2222dddd", job_type="prompt", name="a dancing robot", status="ready",
                        result_dir=str(work / "done"))
    panel_state.STATE = panel_state.PanelState(reachable=True, rtt_s=0.002, job_id="cccc2222dddd", status="ready",
                                               result_dir=str(work / "done"))
    draw("job_list")

    write_result(work / "result", n=20, frames=3)
    obj = import_result(work / "result", name="asset", cache_dir=work / "cache")
    bpy.context.view_layer.objects.active = obj
    panel_state.STATE = panel_state.PanelState()
    draw("asset_active")
finally:
    blender_addon.unregister()
print("RESULT: " + json.dumps(res))
