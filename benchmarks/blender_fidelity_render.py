"""Blender side of ``benchmarks/blender_fidelity.py``, run in its own process (bpy can be
imported once per process, and a headless Eevee abort must not take the driver down).

Imports a result folder with the add-on's importer (the Geometry Nodes object), then for
each configuration renders every view (a camera and a scene frame) with film transparent
and writes straight-alpha RGBA PNGs ``<out>/<config>/<view>.png``. Prints
``RESULT: {json}`` with, per configuration, the render wall time per view (s).

Usage: ``python benchmarks/blender_fidelity_render.py SPEC.json``. The spec:
``result`` (folder), ``cache`` (folder for the importer's cache), ``out``, ``width``,
``height``, ``angle_x`` (horizontal FOV, rad), ``views`` (list of ``{"name", "c2w"
(4x4 Blender camera-to-world), "frame" (0-based clip frame)}``), ``configs`` (list of
``{"name", "engine", "settings": {dotted scene path: value}, "prepare": bool}``;
``prepare`` applies :func:`blender_addon.scene_prep.apply_recommended` first).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402
from mathutils import Matrix  # noqa: E402

from blender_addon.importer import import_result  # noqa: E402
from blender_addon.scene_prep import apply_recommended  # noqa: E402

#: Applied before each configuration's own settings: the baseline every row shares.
BASE = {"cycles.device": "CPU", "cycles.use_denoising": False, "cycles.use_adaptive_sampling": False,
        "render.film_transparent": True, "view_settings.view_transform": "Standard",
        "view_settings.look": "None", "cycles.transparent_max_bounces": 256, "cycles.max_bounces": 256}


def set_path(scene, path: str, value) -> None:
    """``scene.<path> = value`` for a dotted path (``"cycles.samples"``)."""
    *parents, name = path.split(".")
    obj = scene
    for part in parents:
        obj = getattr(obj, part)
    setattr(obj, name, value)


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    out = Path(spec["out"])
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.frame_start = 1
    scene.frame_end = 10_000
    import_result(spec["result"], name="asset", cache_dir=spec["cache"])
    cam_data = bpy.data.cameras.new("bench_camera")
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.angle = spec["angle_x"]
    cam_data.clip_start = 0.01
    cam = bpy.data.objects.new("bench_camera", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    scene.render.resolution_x, scene.render.resolution_y = spec["width"], spec["height"]
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.image_settings.color_depth = "8"
    res = {}
    for config in spec["configs"]:
        scene.render.engine = config["engine"]
        for path, value in BASE.items():
            set_path(scene, path, value)
        changes = apply_recommended(scene) if config.get("prepare") else []
        for path, value in config.get("settings", {}).items():
            set_path(scene, path, value)
        times = []
        for view in spec["views"]:
            cam.matrix_world = Matrix(view["c2w"])
            scene.frame_set(scene.frame_start + int(view["frame"]))
            scene.render.filepath = str(out / config["name"] / f"{view['name']}.png")
            t0 = time.perf_counter()
            bpy.ops.render.render(write_still=True)
            times.append(time.perf_counter() - t0)
        res[config["name"]] = {"seconds_per_view": times, "prepare_changes": changes}
        print(f"[blender_fidelity] {config['name']}: {sum(times) / len(times):.2f} s/view", file=sys.stderr)
    print("RESULT: " + json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
