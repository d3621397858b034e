"""Run in a fresh process: the Blender 4.2–4.4 playback path (per-frame meshes in an
excluded collection, picked by index) against the known frame positions, on whatever
Blender runs it; where the Import PLY node exists too (≥ 4.5) both paths are compared.
Prints ``RESULT: {json}`` (tests/addon/test_addon_fallback.py).

argv: WORK_DIR
"""

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
import bpy  # noqa: E402

from blender_addon.importer import evaluated_centres, frame_data_path, import_result  # noqa: E402
from blender_addon.importer.nodes import RETIME_INPUT, RETIME_MODES, input_identifier  # noqa: E402
from samples.synthetic_result import write_result  # noqa: E402

work = Path(sys.argv[1])
means = write_result(work / "result", n=120, frames=4, spin=0.5)
bpy.ops.wm.read_factory_settings(use_empty=True)
res = {"blender": bpy.app.version_string}
modes = ["meshes"] + (["ply_node"] if bpy.app.version >= (4, 5, 0) else [])
auto = import_result(work / "result", name="auto", cache_dir=work / "cache_auto")
res["auto_playback"] = auto["gen4d_playback"]
bpy.data.objects.remove(auto)
for mode in modes:
    obj = import_result(work / "result", name=f"asset_{mode}", cache_dir=work / f"cache_{mode}", playback=mode)
    obj.driver_remove(frame_data_path(obj))
    mod = obj.modifiers["gen4d"]
    frame_id = input_identifier(mod.node_group, "Frame")
    out = {"centres": {}}
    for value in (0.0, 1.0, 2.5, 3.0):
        mod[frame_id] = value
        obj.update_tag()
        out["centres"][str(value)] = evaluated_centres(obj).tolist()
    mod[input_identifier(mod.node_group, RETIME_INPUT)] = RETIME_MODES["LOOP"]
    mod[frame_id] = 5.0  # loops to frame 1
    obj.update_tag()
    out["loop_5"] = evaluated_centres(obj).tolist()
    if mode == "meshes":
        coll = bpy.data.collections[f"{obj.name}_frames"]
        layer = bpy.context.view_layer.layer_collection.children[coll.name]
        out["excluded"] = layer.exclude
        out["frame_objects"] = [o.name for o in sorted(coll.objects, key=lambda o: o.name)]
    res[mode] = out
print("RESULT: " + json.dumps({"means": [m.tolist() for m in means], **res}))
