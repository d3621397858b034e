"""Run in a fresh process: two splats on the camera's axis whose centre order differs from
the order in which a ray meets their icospheres, rendered by Cycles with the importer's
final-render shapes (camera-facing rectangles, the default) and with ``Camera-Facing Render``
off (the viewport's icospheres). Prints ``RESULT: {json}``
(tests/addon/test_addon_splat_shapes.py).

The scene (camera at ``(0, −4, 0)`` looking along +Y, 40° FOV, 64 px, 32 samples,
"Prepare Scene for Splats" settings):

* ``near``: blue, σ 0.15 m, opacity 0.9, centre at depth 4 (the origin);
* ``far``: red, σ 0.8 m, opacity 0.9, centre at depth 5; its icosphere's facets (at
  0.795·3σ) lie at depth ≈ 3.1, in front of ``near``'s surface (≈ 3.6).

The rasterizers sort by centre depth, so the centre pixel is mostly blue (near over far);
an icosphere render meets ``far`` first and shows it mostly red. Reported: the mean colour
(sRGB, 0–255) of the central 5×5 pixels of each render, and, where torch is importable
(bpy 5.0's environment), the backend rasterizer's render of the same splats
(``image_formation="blender"``) and its PSNR against each Cycles render.

argv: work folder.
"""

import json
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
import bpy  # noqa: E402
from scene_camera import add_render_camera  # noqa: E402

from backend.gaussians.ply import write_gaussians_ply  # noqa: E402
from blender_addon.importer import import_result  # noqa: E402
from blender_addon.importer.nodes import CAMERA_FACING_INPUT, input_identifier  # noqa: E402
from protocol.formats.manifest import Manifest, frame_file_name, write_manifest  # noqa: E402

work = Path(sys.argv[1])
SIZE, SAMPLES, FOV = 64, 32, math.radians(40.0)
C0 = 0.28209479177387814


def logit(p):
    return math.log(p / (1.0 - p))


means = np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)  # near (blue), far (red)
quats = np.tile(np.array([1.0, 0.0, 0.0, 0.0], np.float32), (2, 1))
log_scales = np.log(np.array([[0.15] * 3, [0.8] * 3], np.float32))
opacity = np.array([logit(0.9)] * 2, np.float32)
rgb = np.array([[0.1, 0.2, 0.9], [0.9, 0.15, 0.1]], np.float32)
sh = ((rgb - 0.5) / C0)[:, None, :].astype(np.float32)
result = work / "result"
write_gaussians_ply(result / frame_file_name(0), means, quats, log_scales, opacity, sh)
write_manifest(result, Manifest(frame_count=1, fps=24.0, sh_degree=0, gaussian_count=2,
                                frame_files=[frame_file_name(0)], spec={"job_type": "synthetic"}))

bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
obj = import_result(result, name="asset", cache_dir=work / "cache")
c2w = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, -4.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
add_render_camera(scene, c2w.tolist(), FOV, SAMPLES)
scene.render.resolution_x = scene.render.resolution_y = SIZE
scene.render.resolution_percentage = 100
scene.render.image_settings.file_format, scene.render.image_settings.color_mode = "PNG", "RGBA"
modifier = next(m for m in obj.modifiers if m.type == "NODES")
facing_id = input_identifier(modifier.node_group, CAMERA_FACING_INPUT)

renders = {}
for name, facing in (("facing", True), ("icosphere", False)):
    modifier[facing_id] = facing
    obj.update_tag()
    scene.render.filepath = str(work / f"{name}.png")
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(scene.render.filepath)
    pixels = np.array(image.pixels[:], np.float32).reshape(SIZE, SIZE, 4)[::-1]  # top row first
    renders[name] = pixels
c = SIZE // 2
res = {"blender": ".".join(map(str, bpy.app.version)),
       "centre_rgb": {k: (v[c - 2:c + 3, c - 2:c + 3, :3].mean((0, 1)) * 255).tolist() for k, v in renders.items()}}

try:
    import torch
except ImportError:
    torch = None
if torch is not None:
    from backend.cameras import c2w_blender_to_viewmat, intrinsics_from_fov
    from backend.eval.fidelity import compare_renders
    from backend.render import rasterize, sh0_to_rgb
    from backend.render.frames import premultiplied_to_straight

    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))[None]  # noqa: E731
    colors, alphas, _ = rasterize(t(means), t(quats), t(log_scales).exp(), torch.sigmoid(t(opacity)),
                                  sh0_to_rgb(t(sh[:, 0])), c2w_blender_to_viewmat(torch.tensor(c2w))[None],
                                  intrinsics_from_fov(FOV, SIZE, SIZE)[None], SIZE, SIZE, image_formation="blender")
    backend = premultiplied_to_straight(colors, alphas)
    res["centre_rgb"]["backend"] = (backend[0, c - 2:c + 3, c - 2:c + 3, :3].mean((0, 1)) * 255).tolist()
    # Blender's PNG: straight sRGB colour, as the images.load pixels above (8-bit quantized)
    res["psnr_vs_backend"] = {k: compare_renders(torch.from_numpy(v.copy())[None], backend)["psnr"]
                              for k, v in renders.items()}
print("RESULT: " + json.dumps(res))
