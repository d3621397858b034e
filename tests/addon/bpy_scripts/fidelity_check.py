"""Run in a fresh process: import a result, render it with Cycles (CPU) at a camera and at
two clip frames, and render the same Gaussians with the backend's rasterizer at the same
camera. Writes PNGs (Cycles, rasterizer, and a side-by-side with the difference) into the
work folder and prints ``RESULT: {json}`` with PSNRs (tests/addon/test_addon_fidelity.py).

argv: work folder, render engine (``CYCLES`` or an Eevee engine id), image size.
"""

import json
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
import bpy  # noqa: E402
import imageio.v3 as iio  # noqa: E402
import torch  # noqa: E402
from mathutils import Matrix  # noqa: E402

from backend.cameras import c2w_blender_to_viewmat, intrinsics_from_fov, look_at_c2w  # noqa: E402
from backend.gaussians.ply import read_gaussians_ply  # noqa: E402
from backend.render import rasterize, sh0_to_rgb  # noqa: E402
from blender_addon.importer import import_result  # noqa: E402
from samples.synthetic_result import write_result  # noqa: E402

work, engine, SIZE = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
SH_DEGREE = int(sys.argv[4]) if len(sys.argv) > 4 else 0
FOV = math.radians(40.0)
EYE = (0.6, -3.2, 0.9)


def on_white(rgba: np.ndarray) -> np.ndarray:
    """Straight-alpha RGBA in [0, 1] composited over white: ``[H, W, 3]``."""
    return rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(np.mean((a - b) ** 2), 1e-12)))


def blender_render(name: str, frame: int) -> np.ndarray:
    scene = bpy.context.scene
    scene.frame_set(frame)
    scene.render.filepath = str(work / f"{name}.png")
    bpy.ops.render.render(write_still=True)
    return iio.imread(scene.render.filepath).astype(np.float32) / 255.0


def rasterizer_render(ply: Path, c2w: np.ndarray, use_sh: bool = True) -> np.ndarray:
    """The backend rasterizer's image; colours from gsplat's reference SH evaluation
    (``_spherical_harmonics``, direction camera → centre) when the PLY has SH above 0."""
    from gsplat.cuda._torch_impl import _spherical_harmonics

    g = read_gaussians_ply(ply)
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in g.items() if isinstance(v, np.ndarray)}
    degree = int(round(t["sh"].shape[1] ** 0.5)) - 1
    if degree > 0 and use_sh:
        dirs = t["means"] - torch.from_numpy(np.asarray(c2w[:3, 3], np.float32))
        colors_in = torch.clamp_min(_spherical_harmonics(degree, dirs, t["sh"]) + 0.5, 0.0)
    else:
        colors_in = sh0_to_rgb(t["sh"][:, 0])
    colors, alphas, _ = rasterize(
        t["means"][None], t["quats"][None], t["log_scales"].exp()[None], torch.sigmoid(t["opacity_logits"])[None],
        colors_in[None], c2w_blender_to_viewmat(c2w)[None],
        intrinsics_from_fov(FOV, SIZE, SIZE)[None], SIZE, SIZE, backgrounds=torch.ones(1, 3))
    return colors[0].clamp(0, 1).numpy()


res = {"engine": engine}
means = write_result(work / "result", n=250, frames=3, spread=0.25, log_scale=math.log(0.035), opacity=1.5,
                     jitter=0.4, sh_degree=SH_DEGREE)
for obj in list(bpy.data.objects):
    bpy.data.objects.remove(obj)
scene = bpy.context.scene
scene.frame_start, scene.frame_end = 1, 3
asset = import_result(work / "result", name="asset", cache_dir=work / "cache")

c2w = look_at_c2w(EYE)
cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
scene.collection.objects.link(cam)
cam.matrix_world = Matrix(c2w.tolist())
cam.data.sensor_fit, cam.data.angle = "HORIZONTAL", FOV
cam.data.clip_start = 0.01
scene.camera = cam
scene.render.engine = engine
scene.render.resolution_x = scene.render.resolution_y = SIZE
scene.render.resolution_percentage = 100
scene.render.film_transparent = True
scene.render.image_settings.file_format = "PNG"
scene.render.image_settings.color_mode = "RGBA"
scene.view_settings.view_transform = "Standard"
scene.view_settings.look = "None"
if engine == "CYCLES":
    scene.cycles.device, scene.cycles.samples = "CPU", 16
    scene.cycles.use_denoising = False
    scene.cycles.transparent_max_bounces = 128  # what GEN4D_OT_set_cycles_bounces does
    scene.cycles.filter_width = 0.01  # sample at pixel centres, like the rasterizer
else:
    scene.eevee.taa_render_samples = 16

frame0 = on_white(blender_render("blender_frame0", 1))
frame2 = on_white(blender_render("blender_frame2", 3))
res["frames_differ_mean_abs"] = float(np.abs(frame0 - frame2).mean())
res["non_white_fraction"] = float((np.abs(frame0 - 1.0).max(-1) > 0.05).mean())

if engine == "CYCLES":
    reference = rasterizer_render(work / "result" / "frames" / "frame_0000.ply", c2w)
    iio.imwrite(work / "rasterizer_frame0.png", (reference * 255).round().astype(np.uint8))
    res["psnr_vs_rasterizer"] = psnr(frame0, reference)
    covered = np.abs(reference - 1.0).max(-1) > 0.02
    res["psnr_vs_rasterizer_object"] = psnr(frame0[covered], reference[covered])
    if SH_DEGREE > 0:  # the view-dependent terms matter: DC-only colours match worse
        dc_only = rasterizer_render(work / "result" / "frames" / "frame_0000.ply", c2w, use_sh=False)
        res["psnr_vs_rasterizer_dc_only"] = psnr(frame0, dc_only)
    diff = np.clip(np.abs(frame0 - reference) * 4.0, 0, 1)
    strip = np.concatenate([frame0, reference, 1.0 - diff], axis=1)
    iio.imwrite(work / "side_by_side.png", (strip * 255).round().astype(np.uint8))
print("RESULT: " + json.dumps(res))
