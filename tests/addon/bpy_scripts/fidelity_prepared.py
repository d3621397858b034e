"""Run in a fresh process: a tiny synthetic asset imported with the add-on's importer,
rendered by Cycles (CPU) with the "Prepare Scene for Splats" settings (samples lowered to
argv[3] to keep the test fast), compared with the backend rasterizer's render of the same
frame PLY at the same camera (the ``"blender"`` image formation, the fit's default) by
:func:`backend.eval.fidelity.compare_renders`. Prints
``RESULT: {json}`` (tests/addon/test_addon_blender_fidelity.py).

argv: work folder, image size (px), Cycles samples.
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
import imageio.v3 as iio  # noqa: E402
import torch  # noqa: E402

from backend.cameras import c2w_blender_to_viewmat, intrinsics_from_fov, look_at_c2w  # noqa: E402
from backend.eval.fidelity import compare_renders  # noqa: E402
from backend.gaussians.ply import read_gaussians_ply  # noqa: E402
from backend.render import rasterize, sh0_to_rgb  # noqa: E402
from backend.render.frames import premultiplied_to_straight  # noqa: E402
from blender_addon.importer import import_result  # noqa: E402
from samples.synthetic_result import write_result  # noqa: E402

work, SIZE, SAMPLES = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
FOV = math.radians(40.0)
EYE = (0.6, -3.2, 0.9)

bpy.ops.wm.read_factory_settings(use_empty=True)
write_result(work / "result", n=250, frames=2, spread=0.25, log_scale=math.log(0.035), opacity=1.5, jitter=0.4)
scene = bpy.context.scene
scene.frame_start, scene.frame_end = 1, 2
import_result(work / "result", name="asset", cache_dir=work / "cache")
c2w = look_at_c2w(EYE)
changes = add_render_camera(scene, c2w.tolist(), FOV, SAMPLES)
scene.render.resolution_x = scene.render.resolution_y = SIZE
scene.render.resolution_percentage = 100
scene.render.image_settings.file_format, scene.render.image_settings.color_mode = "PNG", "RGBA"
scene.frame_set(1)
scene.render.filepath = str(work / "cycles.png")
bpy.ops.render.render(write_still=True)
cycles = torch.from_numpy(iio.imread(scene.render.filepath).astype(np.float32) / 255.0)

g = read_gaussians_ply(work / "result" / "frames" / "frame_0000.ply")
t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in g.items() if isinstance(v, np.ndarray)}
colors, alphas, _ = rasterize(t["means"][None], t["quats"][None], t["log_scales"].exp()[None],
                              torch.sigmoid(t["opacity_logits"])[None], sh0_to_rgb(t["sh"][:, 0])[None],
                              c2w_blender_to_viewmat(c2w)[None], intrinsics_from_fov(FOV, SIZE, SIZE)[None], SIZE, SIZE,
                              image_formation="blender")
backend = premultiplied_to_straight(colors, alphas)
res = compare_renders(cycles[None], backend)
res["changes"] = changes
res["non_white_fraction"] = float((cycles[..., 3] > 0.05).float().mean())
print("RESULT: " + json.dumps(res))
