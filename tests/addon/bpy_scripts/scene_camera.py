"""The render camera the fidelity bpy scripts share (imported by the scripts in this folder)."""

import bpy
from mathutils import Matrix


def add_render_camera(scene, c2w, fov: float, samples: int):
    """Add a camera at Blender c2w ``c2w`` (4×4, metres) with horizontal field of view
    ``fov`` (radians) and a 0.01 m near clip, make it the scene camera, and set Cycles on
    the CPU at ``samples`` after the add-on's recommended settings.

    Returns:
        The changes :func:`blender_addon.scene_prep.apply_recommended` made.
    """
    from blender_addon.scene_prep import apply_recommended

    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    cam.matrix_world = Matrix([list(row) for row in c2w])
    cam.data.sensor_fit, cam.data.angle, cam.data.clip_start = "HORIZONTAL", fov, 0.01
    scene.camera = cam
    scene.render.engine = "CYCLES"
    changes = apply_recommended(scene)
    scene.cycles.device, scene.cycles.samples = "CPU", samples
    return changes
