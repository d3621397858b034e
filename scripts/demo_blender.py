"""Demo steps 5-6, run in its own process: import a result with the add-on's importer into
a new .blend, and render it with Cycles on the CPU at every held-out view.

The scene gets the add-on's "Prepare Scene for Splats" settings
(:func:`blender_addon.scene_prep.apply_recommended`: what an artist gets by pressing the
button), film transparent. Every frame of ``transforms_test.json`` (each held-out camera
at each time) is rendered at the ground truth's own resolution to
``<out>/cycles_preview/<index>.png`` (straight-alpha RGBA, index = the frame's position in
``transforms_test.json``), so ``scripts/demo.py`` scores the Cycles renders over the same
images as the backend's figures. ``<out>/preview.png`` is a strip of the first held-out
camera: top row Cycles, bottom row ground truth, on white, enlarged 2× for viewing.

Usage: ``python scripts/demo_blender.py --result DIR --footage DIR --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402
import imageio.v3 as iio  # noqa: E402
import numpy as np  # noqa: E402
from mathutils import Matrix  # noqa: E402

from blender_addon.importer import frame_data_path, import_result  # noqa: E402
from blender_addon.scene_prep import apply_recommended  # noqa: E402
from protocol.formats import (TRANSFORMS_TEST, composite_over, read_manifest, read_transforms,  # noqa: E402
                              resolve_image_path)

PREVIEW_DIR = "cycles_preview"


def add_camera(scene, angle_x: float, width: int, height: int):
    """A scene camera with the footage's horizontal FOV at the footage's resolution."""
    cam_data = bpy.data.cameras.new("heldout_camera")
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.angle = angle_x
    cam_data.clip_start = 0.01
    cam = bpy.data.objects.new("heldout_camera", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    scene.render.resolution_x = width
    scene.render.resolution_y = height
    scene.render.resolution_percentage = 100
    return cam


def on_white(rgba: np.ndarray) -> np.ndarray:
    """uint8 straight-alpha RGBA ``[H, W, 4]`` over white, as uint8 RGB."""
    rgb = composite_over(rgba.astype(np.float32) / 255.0, 1.0)
    return (rgb * 255).round().astype(np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--footage", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=6, help="frames in the preview strip")
    args = parser.parse_args()
    out = args.out.resolve()

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    blend_path = out / "demo.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend_path))  # so the cache sits beside the .blend
    manifest = read_manifest(args.result)
    times = np.asarray(manifest.times)
    scene.frame_start = 1
    scene.frame_end = manifest.frame_count
    scene.render.fps = int(round(manifest.fps))
    obj = import_result(args.result, name="gen4d_demo")
    assert frame_data_path(obj)

    test = read_transforms(args.footage / TRANSFORMS_TEST)
    first = iio.imread(resolve_image_path(args.footage, test.frames[0].file_path))
    height, width = first.shape[:2]
    cam = add_camera(scene, test.camera_angle_x, width, height)
    world = bpy.data.worlds.new("demo_world")
    world.color = (1.0, 1.0, 1.0)
    scene.world = world
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    changes = apply_recommended(scene)
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.image_settings.color_depth = "8"
    bpy.ops.wm.save_mainfile()
    print(f"[demo] Prepare Scene for Splats: {'; '.join(changes) or 'no changes'}", file=sys.stderr)

    preview = out / PREVIEW_DIR
    preview.mkdir(parents=True, exist_ok=True)
    seconds = []
    for i, frame in enumerate(test.frames):
        cam.matrix_world = Matrix(frame.c2w.tolist())
        scene.frame_set(scene.frame_start + int(np.abs(times - frame.time).argmin()))
        scene.render.filepath = str(preview / f"{i:04d}.png")
        t0 = time.perf_counter()
        bpy.ops.render.render(write_still=True)
        seconds.append(time.perf_counter() - t0)
        print(f"[demo] Cycles held-out view {i + 1}/{len(test.frames)}: {seconds[-1]:.1f} s", file=sys.stderr)
    (preview / "render.json").write_text(json.dumps({
        "engine": "CYCLES", "samples": scene.cycles.samples, "filter_width": scene.cycles.filter_width,
        "width": width, "height": height, "views": len(test.frames), "prepare_changes": changes,
        "seconds_per_view": float(np.median(seconds))}, indent=2))

    camera_of = lambda f: f.fields.get("camera_index", 0)  # noqa: E731
    strip_idx = [i for i, f in enumerate(test.frames) if camera_of(f) == camera_of(test.frames[0])]
    picks = [strip_idx[k] for k in np.linspace(0, len(strip_idx) - 1, args.frames).round().astype(int)]
    rows = []
    for source in ("render", "truth"):
        tiles = []
        for i in picks:
            path = (preview / f"{i:04d}.png" if source == "render"
                    else resolve_image_path(args.footage, test.frames[i].file_path))
            tiles.append(on_white(iio.imread(path)).repeat(2, 0).repeat(2, 1))
        rows.append(np.concatenate(tiles, axis=1))
    iio.imwrite(out / "preview.png", np.concatenate(rows, axis=0))
    print(f"[demo] preview strip: Cycles (top) vs ground truth (bottom), held-out views {picks}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
