"""Run in a fresh process: File › Import › 4D Gaussian PLY Sequence on sequences written
directly with plyfile in the standard 3DGS layout (as other tools write them), and its
errors. Prints ``RESULT: {json}`` (tests/addon/test_addon_ply_sequence.py)."""

import json
import sys
from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bpy  # noqa: E402

import blender_addon  # noqa: E402
from blender_addon import import_ply_sequence  # noqa: E402
from blender_addon.importer import evaluated_centres, frame_data_path  # noqa: E402
from blender_addon.importer.nodes import input_identifier  # noqa: E402
from recording_layout import RecordingLayout  # noqa: E402

C0 = 0.28209479177387814
work = Path(sys.argv[1])
rng = np.random.default_rng(5)
N, T = 64, 12
names = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(9)]
         + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
base = rng.normal(size=(N, 3)).astype(np.float32) * 0.3
colour = rng.normal(size=(N, 3)).astype(np.float32)


def write_frame(path, t, n=N):
    data = np.zeros(n, dtype=[(name, "<f4") for name in names])
    pos = base[:n] + np.array([0.05 * t, 0.0, 0.02 * t], np.float32)
    for i, axis in enumerate("xyz"):
        data[axis] = pos[:, i]
    for i in range(3):
        data[f"f_dc_{i}"] = colour[:n, i]
        data[f"scale_{i}"] = -3.5
    data["f_rest_0"] = 0.1
    data["opacity"] = 1.0
    data["rot_0"] = np.cos(0.05 * t)
    data["rot_3"] = np.sin(0.05 * t)
    PlyData([PlyElement.describe(data, "vertex")], byte_order="<").write(str(path))
    return pos


seq = work / "seq"
seq.mkdir(parents=True)
positions = [write_frame(seq / f"splat_{t}.ply", t) for t in range(T)]  # unpadded: 10 sorts after 9
write_frame(seq / "other_001.ply", 0)  # a different sequence in the same folder
(seq / "notes.txt").write_text("not a frame")
res = {}
bpy.ops.wm.read_factory_settings(use_empty=True)
blender_addon.register()
try:
    log = []
    import_ply_sequence.menu_func(type("Menu", (), {"layout": RecordingLayout(log)})(), bpy.context)
    res["menu"] = log
    res["op"] = sorted(bpy.ops.gen4d.import_ply_sequence("EXEC_DEFAULT", filepath=str(seq / "splat_3.ply"), fps=12.0))
    obj = next(o for o in bpy.data.objects if "gen4d_frame_count" in o)
    res["name"], res["frames"], res["fps"] = obj.name, int(obj["gen4d_frame_count"]), float(obj["gen4d_fps"])
    obj.driver_remove(frame_data_path(obj))
    mod = obj.modifiers["gen4d"]
    ident = input_identifier(mod.node_group, "Frame")
    errors = {}
    for frame in (0, 9, 10, 11):
        mod[ident] = float(frame)
        obj.update_tag()
        errors[frame] = float(np.abs(evaluated_centres(obj) - positions[frame]).max())
    res["position_err"] = errors
    # Mismatched Gaussian counts: a clear error, and nothing half-imported.
    bad = work / "bad"
    bad.mkdir()
    write_frame(bad / "f_000.ply", 0)
    write_frame(bad / "f_001.ply", 1, n=N - 5)
    before = len(bpy.data.objects)
    try:
        bpy.ops.gen4d.import_ply_sequence("EXEC_DEFAULT", filepath=str(bad / "f_000.ply"))
        res["mismatch_error"] = ""
    except RuntimeError as exc:
        res["mismatch_error"] = str(exc)
    res["objects_added_by_failure"] = len(bpy.data.objects) - before
    try:
        bpy.ops.gen4d.import_ply_sequence("EXEC_DEFAULT", filepath=str(seq / "notes.txt"))
        res["not_numbered_error"] = ""
    except RuntimeError as exc:
        res["not_numbered_error"] = str(exc)
finally:
    blender_addon.unregister()
print("RESULT: " + json.dumps(res))
