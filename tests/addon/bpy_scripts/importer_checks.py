"""Run in a fresh process: import a synthetic result with bpy and print measurements as
``RESULT: {json}`` (tests/addon/test_addon_importer.py asserts on them)."""

import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bpy  # noqa: E402

from backend.gaussians.ply import SH_C0, read_gaussians_ply, write_gaussians_ply  # noqa: E402
from blender_addon.importer import evaluated_centres, frame_data_path, import_result  # noqa: E402
from blender_addon.importer.nodes import RETIME_INPUT, RETIME_MODES, input_identifier  # noqa: E402
from samples.synthetic_result import write_result  # noqa: E402


def instance_attr(obj, name, width):
    geometry = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).evaluated_geometry()
    cloud = geometry.instances_pointcloud()
    attr = cloud.attributes[name]
    out = np.empty(len(cloud.points) * width, np.float32)
    attr.data.foreach_get("color" if attr.data_type == "FLOAT_COLOR" else
                          "value", out)
    return out.reshape(len(cloud.points), width)


def err(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


work = Path(sys.argv[1])
res = {}
means = write_result(work / "result", n=200, frames=3)
for obj in list(bpy.data.objects):
    bpy.data.objects.remove(obj)
scene = bpy.context.scene
scene.frame_start = 1

t0 = time.perf_counter()
obj = import_result(work / "result", name="asset", cache_dir=work / "cache")
res["import_s"] = time.perf_counter() - t0
path = frame_data_path(obj)
res["driven"] = any(fc.data_path == path for fc in obj.animation_data.drivers)
res["simple_expression"] = all(fc.driver.is_simple_expression for fc in obj.animation_data.drivers)
res["cache_files"] = sorted(p.name for p in (work / "cache").iterdir())

# Driver: scene frame 1 -> Frame 0, scene frame 3 -> Frame 2.
scene.frame_set(1)
c0 = evaluated_centres(obj)
scene.frame_set(3)
c2 = evaluated_centres(obj)
res["count"] = int(len(c0))
res["driver_err0"], res["driver_err2"] = err(c0, means[0]), err(c2, means[2])
res["frame_diff"] = err(c0, c2)
source_2 = work / "result" / json.loads((work / "result" / "manifest.json").read_text())["frame_files"][2]
res["ply_err"] = err(c2, read_gaussians_ply(source_2)["means"])
# The cache holds lean frames: positions and whatever changes over time; the constant
# properties live once on the object's mesh.
from plyfile import PlyData  # noqa: E402
res["cache_props"] = [p.name for p in PlyData.read(str(work / "cache" / "frame_0002.ply"))["vertex"].properties]
res["mesh_attrs"] = sorted(a.name for a in obj.data.attributes if not a.name.startswith(".") and a.name != "position")

# Instance attributes and transforms.
ply = read_gaussians_ply(source_2)
color = instance_attr(obj, "gen4d_color", 4)[:, :3]
res["color_err"] = err(color, np.maximum(0.5 + SH_C0 * ply["sh"][:, 0], 0))
alpha = instance_attr(obj, "gen4d_alpha", 1)[:, 0]
res["alpha_err"] = err(alpha, 1 / (1 + np.exp(-ply["opacity_logits"])))

# Viewport controls: an opacity threshold removes exactly the splats below it; the
# viewport fraction keeps a fixed random subset (this depsgraph is the viewport's).
from blender_addon.importer.nodes import OPACITY_THRESHOLD_INPUT, VIEWPORT_FRACTION_INPUT  # noqa: E402
logits = np.linspace(-3.0, 3.0, 200).astype(np.float32)
write_result(work / "varied", n=200, frames=2, opacity=logits)
varied = import_result(work / "varied", name="varied", cache_dir=work / "cache_varied")
varied_ply = read_gaussians_ply(work / "varied" / "frames" / "frame_0000.ply")
vmod = varied.modifiers["gen4d"]
thr_id = input_identifier(vmod.node_group, OPACITY_THRESHOLD_INPUT)
frac_id = input_identifier(vmod.node_group, VIEWPORT_FRACTION_INPUT)
true_alpha = 1 / (1 + np.exp(-varied_ply["opacity_logits"].astype(np.float64)))
threshold = float(np.quantile(true_alpha, 0.3))
vmod[thr_id] = threshold
varied.update_tag()
res["threshold_count"] = int(len(evaluated_centres(varied)))
res["threshold_expected"] = int((true_alpha >= threshold).sum())
res["threshold_alpha_min"] = float(instance_attr(varied, "gen4d_alpha", 1).min())
res["threshold_value"] = threshold
vmod[thr_id] = 0.0
vmod[frac_id] = 0.25
varied.update_tag()
kept_a = evaluated_centres(varied)
varied.update_tag()
kept_b = evaluated_centres(varied)
res["fraction_count"] = int(len(kept_a))
res["fraction_stable"] = bool(len(kept_a) == len(kept_b) and np.array_equal(kept_a, kept_b))
vmod[frac_id] = 1.0
varied.update_tag()
res["fraction_restored"] = int(len(evaluated_centres(varied)))
mats = instance_attr(obj, "instance_transform", 16).reshape(-1, 4, 4).transpose(0, 2, 1)
sigma3 = 3 * np.exp(ply["log_scales"])
res["scale_err"] = err(np.linalg.norm(mats[:, :3, :3], axis=1), sigma3)
from mathutils import Quaternion  # noqa: E402
rot = np.array([Quaternion(q).to_matrix() for q in ply["quats"][:20]])
res["rot_err"] = err(mats[:20, :3, :3] / sigma3[:20, None, :], rot)

# Direct values and fractional Frame (driver removed).
obj.driver_remove(path)
mod = obj.modifiers["gen4d"]
ident = path.split('"')[3]
for value, key in ((0.0, "direct_err0"), (2.0, "direct_err2"), (7.0, "clamp_err_hi"), (-3.0, "clamp_err_lo")):
    mod[ident] = value
    obj.update_tag()
    res[key] = err(evaluated_centres(obj), means[2] if value > 1 else means[0])
mod[ident] = 0.5
obj.update_tag()
res["half_err"] = err(evaluated_centres(obj), (means[0] + means[1]) / 2)

# Retime modes (T = 3): loop wraps, ping-pong reflects, hold clamps.
retime = input_identifier(mod.node_group, RETIME_INPUT)
res["retime_default"] = mod[retime]
expected = {  # (mode, Frame) -> the clip frame's means it must show
    ("LOOP", 3.0): means[0], ("LOOP", 4.0): means[1], ("LOOP", -1.0): means[2],
    ("LOOP", 2.5): (means[2] + means[0]) / 2,
    ("PING_PONG", 3.0): means[1], ("PING_PONG", 4.0): means[0], ("PING_PONG", 5.0): means[1],
    ("PING_PONG", 2.5): (means[2] + means[1]) / 2,
    ("HOLD", 4.0): means[2],
}
res["retime_err"] = {}
for (mode, value), want in expected.items():
    mod[retime] = RETIME_MODES[mode]
    mod[ident] = value
    obj.update_tag()
    res["retime_err"][f"{mode}@{value}"] = err(evaluated_centres(obj), want)
mod[retime] = RETIME_MODES["HOLD"]

# Fractional Frame blends rotations too: quaternions spinning 0.6 rad per frame about Z,
# with every other quaternion of frame 1 negated (the same rotation; the blend must still
# take the shorter arc).
write_result(work / "spin", n=50, frames=2, spin=0.6, seed=3)
flipped = read_gaussians_ply(work / "spin" / "frames" / "frame_0001.ply")
flipped["quats"][::2] *= -1
write_gaussians_ply(work / "spin" / "frames" / "frame_0001.ply", **flipped)
spun = import_result(work / "spin", name="spin", cache_dir=work / "cache_spin")
spun.driver_remove(frame_data_path(spun))
res["spin_cache_props"] = [p.name for p in PlyData.read(str(work / "cache_spin" / "frame_0001.ply"))["vertex"].properties]
q0 = read_gaussians_ply(work / "spin" / "frames" / "frame_0000.ply")["quats"].astype(np.float64)
q1 = read_gaussians_ply(work / "spin" / "frames" / "frame_0001.ply")["quats"].astype(np.float64)
spin_scales = 3 * np.exp(read_gaussians_ply(work / "spin" / "frames" / "frame_0000.ply")["log_scales"])
spin_ident = frame_data_path(spun).split('"')[3]
res["rot_blend_err"] = {}
for value in (0.0, 0.25, 0.5, 1.0):  # slerp along the shorter arc
    spun.modifiers["gen4d"][spin_ident] = value
    spun.update_tag()
    got = instance_attr(spun, "instance_transform", 16).reshape(-1, 4, 4).transpose(0, 2, 1)[:, :3, :3]
    rot = np.array([Quaternion(a).normalized().slerp(Quaternion(b).normalized(), value).to_matrix()
                    for a, b in zip(q0, q1)])
    res["rot_blend_err"][str(value)] = err(got / spin_scales[:, None, :], rot)
res["rot_frames_differ"] = err(np.array([Quaternion(q).to_matrix() for q in q0]),
                               np.array([Quaternion(q).to_matrix() for q in q1]))
bpy.data.objects.remove(spun)

# Keyframes: Frame 0 -> 2 over scene frames 1 -> 10.
mod[ident] = 0.0
obj.keyframe_insert(path, frame=1)
mod[ident] = 2.0
obj.keyframe_insert(path, frame=10)
scene.frame_set(10)
res["key_err10"] = err(evaluated_centres(obj), means[2])
scene.frame_set(1)
res["key_err1"] = err(evaluated_centres(obj), means[0])

# Saved .blend: default cache beside it, stored relative.
bpy.ops.wm.save_as_mainfile(filepath=str(work / "scene.blend"))
obj2 = import_result(work / "result", name="saved")
res["rel_cache"] = obj2["gen4d_cache_dir"]
res["rel_cache_exists"] = (work / "gen4d_cache" / "saved" / "frame_0001.ply").is_file()
scene.frame_set(2)
res["rel_err1"] = err(evaluated_centres(obj2), means[1])

# Errors.
try:
    import_result(work / "nothing_here")
    res["missing_error"] = None
except FileNotFoundError as exc:
    res["missing_error"] = str(exc)
print("RESULT: " + json.dumps(res))
