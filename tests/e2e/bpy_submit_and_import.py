"""Run inside real ``bpy`` (a subprocess of the e2e test): submit footage with the add-on's
own connection (a background thread whose futures' callbacks the add-on's timer callback
runs), wait for the
result to be downloaded, import it with the add-on's importer, and report evaluated point
positions at two clip frames as JSON on the last stdout line.

Usage: python bpy_submit_and_import.py ADDRESS KEYFILE FOOTAGE_DIR BLEND_PATH
"""

import json
import sys
import time
from pathlib import Path

import bpy

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from blender_addon import panel_state, session, timer  # noqa: E402
from blender_addon.importer import evaluated_centres, frame_data_path, import_result  # noqa: E402
from blender_addon.importer.nodes import input_identifier  # noqa: E402
from protocol import load_key  # noqa: E402


def main() -> int:
    address, key_file, footage, blend = sys.argv[1:5]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.save_as_mainfile(filepath=blend)
    connection = session.connect(address, load_key(key_file), timeout_s=30.0)
    submitted = connection.submit_footage(footage, {"job_type": "footage", "preset": "tiny"})
    session.follow_submission(submitted, "footage", Path(footage).name, connection.address)
    seen = []
    deadline = time.monotonic() + 240
    while panel_state.STATE.status not in ("ready", "failed", "cancelled") and time.monotonic() < deadline:
        timer.tick()  # the bpy.app.timers callback; the module has no event loop to fire it
        if panel_state.STATE.status not in (seen[-1:] or [None]):
            seen.append(panel_state.STATE.status)
        time.sleep(0.05)
    session.shutdown()
    if panel_state.STATE.status != "ready":
        print(json.dumps({"error": panel_state.STATE.status, "last_error": panel_state.STATE.last_error, "seen": seen}))
        return 1
    obj = import_result(panel_state.STATE.result_dir, name="e2e_asset")
    obj.driver_remove(frame_data_path(obj))
    positions = {}
    frames = int(obj["gen4d_frame_count"])
    for f in (0, frames - 1):
        mod = obj.modifiers["gen4d"]
        mod[input_identifier(mod.node_group, "Frame")] = float(f)
        obj.update_tag()
        bpy.context.view_layer.update()
        positions[f] = evaluated_centres(obj).tolist()
    bpy.ops.wm.save_mainfile()
    print(json.dumps({"result_dir": panel_state.STATE.result_dir, "frames": frames, "seen": seen,
                      "positions": positions}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
