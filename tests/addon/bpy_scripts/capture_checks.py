"""Run in a fresh process: capture an animated object as multi-view footage with the add-on
and print ``RESULT: {json}`` (tests/addon/test_addon_capture.py asserts).

argv: OUT_DIR. The scene: a keyframed, emissive UV sphere moving along a curve over 5
frames, a ground plane (which the capture must hide) and a light.
"""

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
import bpy  # noqa: E402

import blender_addon  # noqa: E402
from blender_addon import capture, panel_state  # noqa: E402

out = Path(sys.argv[-1])
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.frame_start, scene.frame_end = 1, 5
scene.render.fps = 12

bpy.ops.mesh.primitive_uv_sphere_add(radius=0.3, segments=24, ring_count=12)
ball = bpy.context.active_object
mat = bpy.data.materials.new("ball")
mat.use_nodes = True
nodes = mat.node_tree.nodes
nodes.clear()
emission = nodes.new("ShaderNodeEmission")
emission.inputs["Color"].default_value = (0.8, 0.3, 0.1, 1.0)
output = nodes.new("ShaderNodeOutputMaterial")
mat.node_tree.links.new(emission.outputs[0], output.inputs["Surface"])
ball.data.materials.append(mat)
path = {1: (-0.4, 0.0, 0.0), 3: (0.0, 0.2, 0.25), 5: (0.4, 0.0, 0.0)}
for frame, loc in path.items():
    ball.location = loc
    ball.keyframe_insert("location", frame=frame)
bpy.ops.mesh.primitive_plane_add(size=4.0, location=(0, 0, -0.5))
plane = bpy.context.active_object
light = bpy.data.objects.new("light", bpy.data.lights.new("light", "SUN"))
scene.collection.objects.link(light)
bpy.context.view_layer.objects.active = ball
scene.frame_set(2)

before = {"engine": scene.render.engine, "resolution": [scene.render.resolution_x, scene.render.resolution_y],
          "film_transparent": scene.render.film_transparent, "view_transform": scene.view_settings.view_transform,
          "frame": scene.frame_current, "camera": scene.camera.name if scene.camera else None,
          "plane_hidden": plane.hide_render, "objects": sorted(o.name for o in bpy.data.objects)}

# The world-space centre of the ball at each scene frame, for the projection check.
centres = {}
for frame in range(1, 6):
    scene.frame_set(frame)
    centres[frame] = list(ball.matrix_world.translation)
scene.frame_set(2)

footage = capture.capture_footage(scene, ball, out / "footage", n_cameras=6, size=48, engine="CYCLES", samples=4)

after = {"engine": scene.render.engine, "resolution": [scene.render.resolution_x, scene.render.resolution_y],
         "film_transparent": scene.render.film_transparent, "view_transform": scene.view_settings.view_transform,
         "frame": scene.frame_current, "camera": scene.camera.name if scene.camera else None,
         "plane_hidden": plane.hide_render, "objects": sorted(o.name for o in bpy.data.objects)}

# The operator path (registered add-on, EXEC_DEFAULT, no submit), and its errors.
blender_addon.register()
op_result = bpy.ops.gen4d.capture_selected("EXEC_DEFAULT", n_cameras=2, size=32, engine="WORKBENCH", submit=False,
                                           directory=str(out / "op"))
empty = bpy.data.objects.new("empty", None)
scene.collection.objects.link(empty)
bpy.context.view_layer.objects.active = empty
try:
    bpy.ops.gen4d.capture_selected("EXEC_DEFAULT", n_cameras=2, size=32, engine="WORKBENCH", submit=False,
                                   directory=str(out / "bad"))
    empty_error = ""
except RuntimeError as exc:  # bpy turns an ERROR report of a called operator into RuntimeError
    empty_error = str(exc)
objects_after_failure = sorted(o.name for o in bpy.data.objects)
try:
    bpy.ops.gen4d.submit_orbital_video("EXEC_DEFAULT", filepath=str(out / "missing.mp4"), fov_deg=30.0)
    orbital_error = ""
except RuntimeError as exc:
    orbital_error = str(exc)
orbit_props = bpy.ops.gen4d.submit_orbital_video.get_rna_type().properties
orbit_ui = {name: {"default": orbit_props[name].default, "min": orbit_props[name].hard_min,
                   "max": orbit_props[name].hard_max}
            for name in ("sweep_deg", "start_azimuth_deg", "elevation_deg", "fov_deg", "radius")}
blender_addon.unregister()

print("RESULT: " + json.dumps({
    "footage": str(footage), "before": before, "after": after, "centres": centres,
    "op_result": sorted(op_result), "op_frames": len(json.loads((out / "op" / "transforms_train.json").read_text())[
        "frames"]),
    "empty_error": empty_error, "objects_after_failure": objects_after_failure,
    "state_error": panel_state.STATE.last_error, "orbital_error": orbital_error, "orbit_ui": orbit_ui,
}))
