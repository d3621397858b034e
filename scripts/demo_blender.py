"""Demo step 5-6, run in its own process: import a result with the add-on's importer into
a new .blend, and render a preview strip with Cycles on the CPU.

The strip's top row is the imported asset rendered by Cycles at a held-out camera over
several frames; the bottom row is the Blender ground truth at the same camera and times.

Usage: ``python scripts/demo_blender.py --result DIR --footage DIR --out DIR``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402
import imageio.v3 as iio  # noqa: E402
import numpy as np  # noqa: E402
from mathutils import Matrix  # noqa: E402

from blender_addon.importer import frame_data_path, import_result  # noqa: E402
from protocol.formats import (TRANSFORMS_TEST, composite_over, read_manifest, read_transforms,  # noqa: E402
                              resolve_image_path)


def setup_camera(scene, c2w, angle_x: float, size: int) -> None:
    """A camera at a Blender c2w with the footage's horizontal FOV."""
    cam_data = bpy.data.cameras.new("heldout_camera")
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.angle = angle_x
    cam = bpy.data.objects.new("heldout_camera", cam_data)
    scene.collection.objects.link(cam)
    cam.matrix_world = Matrix(c2w)
    scene.camera = cam
    scene.render.resolution_x = size
    scene.render.resolution_y = size
    scene.render.resolution_percentage = 100


def on_white(rgba: np.ndarray) -> np.ndarray:
    """uint8 straight-alpha RGBA ``[H, W, 4]`` over white, as uint8 RGB."""
    rgb = composite_over(rgba.astype(np.float32) / 255.0, 1.0)
    return (rgb * 255).round().astype(np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--footage", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=6, help="frames in the strip")
    parser.add_argument("--samples", type=int, default=32)
    args = parser.parse_args()
    out = args.out.resolve()

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    blend_path = out / "demo.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend_path))  # so the cache sits beside the .blend
    manifest = read_manifest(args.result)
    frame_count = manifest.frame_count
    scene.frame_start = 1
    scene.frame_end = frame_count
    scene.render.fps = int(round(manifest.fps))
    obj = import_result(args.result, name="gen4d_demo")
    assert frame_data_path(obj)

    test = read_transforms(args.footage / TRANSFORMS_TEST)
    camera_of = lambda f: f.fields.get("camera_index", 0)  # noqa: E731
    first_cam = [f for f in test.frames if camera_of(f) == camera_of(test.frames[0])]
    size = 2 * iio.imread(resolve_image_path(args.footage, first_cam[0].file_path)).shape[1]
    setup_camera(scene, first_cam[0].c2w.tolist(), test.camera_angle_x, size)

    world = bpy.data.worlds.new("demo_world")
    world.color = (1.0, 1.0, 1.0)
    scene.world = world
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = args.samples
    scene.cycles.use_denoising = False
    scene.cycles.transparent_max_bounces = 256  # splats are layered transparent surfaces
    scene.cycles.max_bounces = 256
    scene.render.film_transparent = True
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    bpy.ops.wm.save_mainfile()

    picks = np.linspace(0, frame_count - 1, args.frames).round().astype(int)
    renders, truths = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in picks:
            scene.frame_set(int(i) + scene.frame_start)
            scene.render.filepath = str(Path(tmp) / f"f{i:04d}.png")
            bpy.ops.render.render(write_still=True)
            renders.append(on_white(iio.imread(scene.render.filepath)))
            t = manifest.times[i]
            frame = min(first_cam, key=lambda f: abs(f.time - t))
            gt = iio.imread(resolve_image_path(args.footage, frame.file_path))
            gt = np.repeat(np.repeat(gt, size // gt.shape[0], axis=0), size // gt.shape[1], axis=1)
            truths.append(on_white(gt))
    strip = np.concatenate([np.concatenate(renders, axis=1), np.concatenate(truths, axis=1)], axis=0)
    iio.imwrite(out / "preview.png", strip)
    print(f"[demo] preview strip: Cycles (top) vs ground truth (bottom), frames {picks.tolist()}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
