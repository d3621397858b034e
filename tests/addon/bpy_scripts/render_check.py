"""Run in a fresh process: render imported assets with Cycles (CPU, 64 px) and print
``RESULT: {json}`` with alpha statistics (tests/addon/test_addon_render.py)."""

import json
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bpy  # noqa: E402

from blender_addon.importer import evaluated_centres, import_result  # noqa: E402
from blender_addon.importer.nodes import VIEWPORT_FRACTION_INPUT, input_identifier  # noqa: E402
from samples.synthetic_result import write_result  # noqa: E402

work = Path(sys.argv[1])
SIZE = 64


def render(name):
    scene = bpy.context.scene
    scene.render.filepath = str(work / f"{name}.png")
    bpy.ops.render.render(write_still=True)
    img = bpy.data.images.load(scene.render.filepath)
    px = np.empty(SIZE * SIZE * 4, np.float32)
    img.pixels.foreach_get(px)
    return px.reshape(SIZE, SIZE, 4)


for obj in list(bpy.data.objects):
    bpy.data.objects.remove(obj)
scene = bpy.context.scene
cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
scene.collection.objects.link(cam)
cam.location, cam.rotation_euler = (0.0, -5.0, 0.0), (math.pi / 2, 0.0, 0.0)
cam.data.type, cam.data.ortho_scale = "ORTHO", 2.0
scene.camera = cam
scene.render.engine = "CYCLES"
scene.cycles.device, scene.cycles.samples = "CPU", 4
scene.cycles.use_denoising = False
scene.cycles.transparent_max_bounces = 64  # what GEN4D_OT_set_cycles_bounces does
scene.render.resolution_x = scene.render.resolution_y = SIZE
scene.render.resolution_percentage = 100
scene.render.film_transparent = True
scene.render.image_settings.color_mode = "RGBA"
scene.view_settings.view_transform = "Standard"

res = {}
write_result(work / "cloud", n=200, frames=3)
cloud = import_result(work / "cloud", name="cloud", cache_dir=work / "cache_cloud")
px = render("cloud")
res["cloud_alpha_max"] = float(px[..., 3].max())
res["cloud_pixels_over_half"] = int((px[..., 3] > 0.5).sum())
res["cloud_rgb_mean"] = px[px[..., 3] > 0.5, :3].mean(0).tolist() if res["cloud_pixels_over_half"] else None
# Viewport Display 0: the viewport shows no splat, a render still draws every one.
mod = cloud.modifiers["gen4d"]
mod[input_identifier(mod.node_group, VIEWPORT_FRACTION_INPUT)] = 0.0
cloud.update_tag()
res["viewport_count_at_display_0"] = int(len(evaluated_centres(cloud)))
px_hidden = render("cloud_display_0")
res["display_0_render_max_diff"] = float(np.abs(px_hidden - px).max())
bpy.data.objects.remove(cloud)

# One isolated Gaussian, sigma 0.1 m, opacity ~1: the alpha profile should be Gaussian.
write_result(work / "one", n=1, frames=1, spread=0.0, log_scale=math.log(0.1), opacity=8.0,
             jitter=0.0)
one = import_result(work / "one", name="one", cache_dir=work / "cache_one")
scene.cycles.samples = 16
px = render("one")
row = px[SIZE // 2 - 1:SIZE // 2 + 1, :, 3].mean(0)  # the two central rows, left to right
res["one_row"] = [round(float(a), 3) for a in row]
x = (np.arange(SIZE) + 0.5 - SIZE / 2) * (2.0 / SIZE)  # metres from the centre
keep = row > 0.05
coef = np.polyfit(x[keep] ** 2, np.log(row[keep]), 1)  # log a = c - x^2 / (2 sigma^2)
fit = np.polyval(coef, x[keep] ** 2)
res["one_sigma_fit"] = float(np.sqrt(-0.5 / coef[0])) if coef[0] < 0 else None
res["one_fit_r2"] = float(1 - ((np.log(row[keep]) - fit) ** 2).sum()
                          / ((np.log(row[keep]) - np.log(row[keep]).mean()) ** 2).sum())
res["one_peak"] = float(row.max())
print("RESULT: " + json.dumps(res))
