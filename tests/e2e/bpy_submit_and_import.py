"""Run inside real ``bpy`` (a subprocess of the e2e test): submit footage with the add-on's
own client (worker thread + queue, drained by the add-on's timer callback), wait for the
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

from blender_addon import state  # noqa: E402
from blender_addon.importer import evaluated_centres, frame_data_path, import_result  # noqa: E402
from blender_addon.importer.nodes import input_identifier  # noqa: E402
from protocol import load_key  # noqa: E402


def main() -> int:
    address, key_file, footage, blend = sys.argv[1:5]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.save_as_mainfile(filepath=blend)
    worker = state.ensure_worker(address, load_key(key_file), timeout_s=30.0)
    worker.send("submit_footage", folder=footage, spec={"job_type": "footage", "preset": "tiny"})
    seen = []
    deadline = time.monotonic() + 240
    while state.STATE.status not in ("ready", "failed", "cancelled") and time.monotonic() < deadline:
        state._tick()  # the bpy.app.timers callback; the module has no event loop to fire it
        if state.STATE.status not in (seen[-1:] or [None]):
            seen.append(state.STATE.status)
        time.sleep(0.05)
    state.shutdown()
    if state.STATE.status != "ready":
        print(json.dumps({"error": state.STATE.status, "last_error": state.STATE.last_error, "seen": seen}))
        return 1
    obj = import_result(state.STATE.result_dir, name="e2e_asset")
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
    print(json.dumps({"result_dir": state.STATE.result_dir, "frames": frames, "seen": seen,
                      "positions": positions}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
