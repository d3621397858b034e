"""Run inside real ``bpy`` (a subprocess of tests/e2e/test_capture_to_asset.py): build an
animated object, capture it with the add-on (8 training cameras + 2 held-out), submit the
footage through the add-on's connection with the scene's job settings, wait for the result,
import it, and print a JSON report on the last stdout line.

Usage: python bpy_capture_and_submit.py ADDRESS KEYFILE OUT_DIR
"""

import json
import sys
import time
from pathlib import Path

import bpy

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import blender_addon  # noqa: E402
from blender_addon import capture, panel_state, session, timer  # noqa: E402
from blender_addon.importer import import_result  # noqa: E402
from protocol import load_key  # noqa: E402


def build_scene():
    """An emissive two-tone sphere that moves and turns over 5 frames."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 5
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.35, segments=24, ring_count=12)
    ball = bpy.context.active_object
    mat = bpy.data.materials.new("two_tone")
    mat.use_nodes = True
    nt = mat.node_tree
    nt.nodes.clear()
    coords = nt.nodes.new("ShaderNodeTexCoord")
    sep = nt.nodes.new("ShaderNodeSeparateXYZ")
    ramp = nt.nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.interpolation = "CONSTANT"
    ramp.color_ramp.elements[0].color = (0.9, 0.25, 0.05, 1.0)
    ramp.color_ramp.elements[1].position = 0.5
    ramp.color_ramp.elements[1].color = (0.05, 0.3, 0.9, 1.0)
    emission = nt.nodes.new("ShaderNodeEmission")
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(coords.outputs["Generated"], sep.inputs[0])
    nt.links.new(sep.outputs["Z"], ramp.inputs["Fac"])
    nt.links.new(ramp.outputs["Color"], emission.inputs["Color"])
    nt.links.new(emission.outputs[0], out.inputs["Surface"])
    ball.data.materials.append(mat)
    for frame, loc, rot in ((1, (-0.3, 0, 0), 0.0), (3, (0, 0.15, 0.15), 0.8), (5, (0.3, 0, 0), 1.6)):
        ball.location, ball.rotation_euler = loc, (rot, 0.0, 0.0)
        ball.keyframe_insert("location", frame=frame)
        ball.keyframe_insert("rotation_euler", frame=frame)
    return scene, ball


def main() -> int:
    address, key_file, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    scene, ball = build_scene()
    blender_addon.register()
    t0 = time.monotonic()
    footage = capture.capture_footage(scene, ball, out / "footage", n_cameras=8, n_test=2, size=64,
                                      engine="CYCLES", samples=8)
    capture_s = time.monotonic() - t0
    settings = scene.gen4d
    settings.preset, settings.iterations, settings.max_image_size = "DRAFT", 400, 64
    spec = settings.spec("footage", fps=24.0)
    connection = session.connect(address, load_key(key_file), timeout_s=30.0)
    session.follow_submission(connection.submit_footage(str(footage), spec), "footage", Path(footage).name,
                              connection.address)
    deadline = time.monotonic() + 400
    while panel_state.STATE.status not in ("ready", "failed", "cancelled") and time.monotonic() < deadline:
        timer.tick()
        time.sleep(0.05)
    session.shutdown()
    if panel_state.STATE.status != "ready":
        print(json.dumps({"error": panel_state.STATE.status, "last_error": panel_state.STATE.last_error}))
        return 1
    obj = import_result(panel_state.STATE.result_dir, name="captured_asset")
    print(json.dumps({"footage": str(footage), "result_dir": panel_state.STATE.result_dir, "capture_s": capture_s,
                      "frames": int(obj["gen4d_frame_count"]), "spec": spec,
                      "job_s": time.monotonic() - t0 - capture_s}))
    blender_addon.unregister()
    return 0


if __name__ == "__main__":
    sys.exit(main())
