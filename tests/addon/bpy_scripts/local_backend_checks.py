"""Run in a fresh process: start a backend from Blender with "Start Local Backend", follow it
to "reachable" through the heartbeats, draw the panel, show the log, stop it; then a bad
interpreter path. Prints ``RESULT: {json}`` (tests/addon/test_addon_local_backend.py).

argv: PYTHON BACKEND_ROOT DATA_DIR ADDRESS
"""

import json
import os
import sys
import time
from pathlib import Path

import bpy  # noqa: I001
import addon_utils

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from recording_layout import draw_panel  # noqa: E402

python, root, data_dir, address = sys.argv[1:5]
bpy.ops.wm.read_factory_settings(use_empty=True)
addon_utils.enable("blender_addon", default_set=True)
from blender_addon import local_backend, panel_state, panels, timer  # noqa: E402

prefs = bpy.context.preferences.addons["blender_addon"].preferences
prefs.address, prefs.python_path, prefs.backend_root, prefs.data_dir = address, python, root, data_dir
res = {}
t0 = time.monotonic()
res["start"] = sorted(bpy.ops.gen4d.start_local_backend("EXEC_DEFAULT"))
pid = local_backend.current().process.pid
res["key_file_pref"] = prefs.key_file
deadline = time.monotonic() + 90
while panel_state.STATE.reachable is not True and time.monotonic() < deadline:
    timer.tick()
    time.sleep(0.1)
res["reachable_after_s"] = time.monotonic() - t0
res["reachable"], res["status"] = panel_state.STATE.reachable, local_backend.status()
res["panel_running"] = draw_panel(panels.GEN4D_PT_main, bpy.context)
res["log_op"] = sorted(bpy.ops.gen4d.show_backend_log("EXEC_DEFAULT"))
res["log_text"] = bpy.data.texts["gen4d_backend.log"].as_string()
res["stop"] = sorted(bpy.ops.gen4d.stop_local_backend("EXEC_DEFAULT"))
res["status_after_stop"] = local_backend.status()
try:
    os.kill(pid, 0)
    res["pid_alive_after_stop"] = True
except ProcessLookupError:
    res["pid_alive_after_stop"] = False
res["panel_stopped"] = draw_panel(panels.GEN4D_PT_main, bpy.context)

prefs.python_path = str(Path(data_dir) / "no-such-python")
try:
    bpy.ops.gen4d.start_local_backend("EXEC_DEFAULT")
    res["bad_python_error"] = ""
except RuntimeError as exc:
    res["bad_python_error"] = str(exc)

# Unregistering (as when Blender quits) stops a running local backend too.
prefs.python_path = python
bpy.ops.gen4d.start_local_backend("EXEC_DEFAULT")
second = local_backend.current().process
addon_utils.disable("blender_addon")
res["second_returncode_after_disable"] = second.poll()
print("RESULT: " + json.dumps(res))
