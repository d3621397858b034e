"""One Blender session of the restart test (tests/addon/test_addon_restart.py).

argv: MODE ADDRESS KEY_FILE WORK_DIR [FOOTAGE]. Both sessions share BLENDER_USER_RESOURCES
(set by the test), where the add-on keeps its job list.

- ``submit``: enable the add-on, submit FOOTAGE through the Submit operator, wait until
  the backend has given the job an id and the job list on disk holds it, save the .blend,
  and quit without waiting for the job.
- ``reattach``: a fresh session: enable the add-on, read the job list, reattach to the job
  by id through the operator, wait for the result to download, import it through the
  Import operator; also reattach to an id the backend never had.

Prints ``RESULT: {json}``.
"""

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
import bpy  # noqa: E402, I001 (bpy first: it puts addon_utils on sys.path)
import addon_utils  # noqa: E402

mode, address, key_file, work = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
bpy.ops.wm.read_factory_settings(use_empty=True)
addon_utils.enable("blender_addon", default_set=True)
from blender_addon import job_list, panel_state, session, timer  # noqa: E402

prefs = bpy.context.preferences.addons["blender_addon"].preferences
prefs.address, prefs.key_file = address, key_file  # preferences are per machine, set as a user would
res = {"store": str(job_list.store_path())}


def pump(until, timeout_s):
    deadline = time.monotonic() + timeout_s
    seen = []
    while not until() and time.monotonic() < deadline:
        timer.tick()  # the bpy.app.timers callback (the bpy module runs no event loop)
        if panel_state.STATE.status not in seen[-1:]:
            seen.append(panel_state.STATE.status)
        time.sleep(0.05)
    return seen


if mode == "submit":
    settings = bpy.context.scene.gen4d
    settings.preset, settings.iterations, settings.max_image_size = "DRAFT", 150, 32
    res["submit"] = sorted(bpy.ops.gen4d.submit_footage("EXEC_DEFAULT", directory=sys.argv[5]))
    res["seen"] = pump(lambda: panel_state.STATE.job_id, 60)
    res["job_id"] = panel_state.STATE.job_id
    res["status_at_quit"] = panel_state.STATE.status
    res["on_disk"] = json.loads(Path(res["store"]).read_text())["jobs"]
    bpy.ops.wm.save_as_mainfile(filepath=str(work / "scene.blend"))
else:
    bpy.ops.wm.open_mainfile(filepath=str(work / "scene.blend"))
    records = session.JOBS.reload()
    res["listed"] = [dict(r) for r in records]
    job_id = records[0]["job_id"]
    res["reattach"] = sorted(bpy.ops.gen4d.reattach("EXEC_DEFAULT", job_id=job_id))
    res["seen"] = pump(lambda: panel_state.STATE.status in ("ready", "failed", "cancelled"), 240)
    state = panel_state.STATE
    res["status"], res["result_dir"], res["error"] = state.status, state.result_dir, state.last_error
    res["import"] = sorted(bpy.ops.gen4d.import_result("EXEC_DEFAULT", directory=state.result_dir))
    obj = next(o for o in bpy.data.objects if "gen4d_frame_count" in o)
    from blender_addon.importer import evaluated_centres
    res["frame_count"] = int(obj["gen4d_frame_count"])
    res["points"] = int(len(evaluated_centres(obj)))
    res["record_after"] = dict(session.JOBS.find(job_id))
    # An id the backend never had: a clear failure in the panel, not a traceback.
    bpy.ops.gen4d.reattach("EXEC_DEFAULT", job_id="no-such-job")
    pump(lambda: panel_state.STATE.status == "failed", 15)
    res["bogus_status"], res["bogus_error"] = panel_state.STATE.status, panel_state.STATE.last_error
session.shutdown()
print("RESULT: " + json.dumps(res))
