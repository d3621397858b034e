"""Render deterministic multi-view sample footage of an animated object with Blender.

Usage::

    python -m samples.make_scene --scene wobble --out data/samples/wobble
    python -m samples.make_scene --scene articulated --out /tmp/art --size 128 --force

The scene is built procedurally with the ``bpy`` module (factory-empty scene, no
external assets), rendered with Cycles on the CPU, and written in the NeRF-synthetic /
D-NeRF format::

    OUT/transforms_train.json   camera_angle_x, w, h, fl_x, fl_y, cx, cy, frames[]
    OUT/transforms_test.json
    OUT/train/r_CCC_TTT.png     camera CCC at time index TTT (RGBA 8-bit, straight alpha)
    OUT/test/r_CCC_TTT.png
    OUT/preview_grid.png        a few cameras x a few times, composited on white
    OUT/sample.json             cache stamp (parameters, version, coverage statistics)

Conventions (see docs/design.md, "Conventions"):

* world frame is Blender's: Z up, right-handed, metres; the object is centred on the
  world origin, which every camera looks at;
* ``transform_matrix`` is camera-to-world exactly as Blender's ``camera.matrix_world``
  (the camera looks down its -Z axis, +Y is up in the image);
* every camera sees every time step; frame ``i`` of ``T`` has ``time = i / (T - 1)``;
* each frame entry also carries ``camera_index`` and ``time_index`` (extra keys).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import time as _time
from pathlib import Path

import numpy as np

from backend.cameras import look_at_c2w
from protocol.formats.compositing import composite_over
from protocol.formats.time_grid import frame_times
from protocol.formats.transforms import frame_record, transforms_file_name, write_transforms
from samples import SCENES

#: Bump when anything that changes the rendered bytes changes; invalidates caches.
VERSION = 4

DEFAULT_SIZE = 112
DEFAULT_TRAIN = 14
DEFAULT_TEST = 2
DEFAULT_TIMES = 16
DEFAULT_SAMPLES = 32

#: Horizontal field of view of every camera, radians (a 50 mm lens on a 36 mm sensor).
CAMERA_ANGLE_X = 2.0 * math.atan(18.0 / 50.0)
#: Distance from the cameras to the world origin (the object centre), metres.
CAMERA_DISTANCE = {"wobble": 2.2, "rigid": 2.15, "articulated": 2.1}
#: Elevation band of the training cameras, degrees.
ELEV_MIN_DEG, ELEV_MAX_DEG = -15.0, 60.0
#: Fixed Cycles seed.
SEED = 0

__all__ = [
    "SCENES",
    "VERSION",
    "make_scene",
    "make_scene_subprocess",
    "camera_positions",
    "main",
]


# ----------------------------------------------------------------------------- cameras


def _sph(az_deg: np.ndarray, el_deg: np.ndarray) -> np.ndarray:
    az, el = np.radians(az_deg), np.radians(el_deg)
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1)


def camera_positions(n_train: int, n_test: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic camera centres on a sphere around the origin.

    Training cameras follow a Fibonacci (golden-angle) spiral whose elevations are
    uniform in ``sin(elevation)`` between ``ELEV_MIN_DEG`` (-15 deg) and ``ELEV_MAX_DEG``
    (+60 deg), so they cover several elevation rings evenly. Test cameras are held-out
    views: they are picked greedily from a grid of candidate directions inside the band
    (elevation 0..45 deg) as the directions farthest (in angle) from all training cameras
    and from the previously picked test cameras, i.e. between training cameras.

    Args:
        n_train: number of training cameras (>= 1).
        n_test: number of test cameras (>= 0).
        radius: distance of every camera from the origin, metres.

    Returns:
        ``(train, test)`` float64 arrays of shape ``[n_train, 3]`` and ``[n_test, 3]``
        (world coordinates, metres).
    """
    golden = math.pi * (3.0 - math.sqrt(5.0))
    i = np.arange(n_train, dtype=np.float64)
    s0, s1 = math.sin(math.radians(ELEV_MIN_DEG)), math.sin(math.radians(ELEV_MAX_DEG))
    z = s0 + (s1 - s0) * (i + 0.5) / n_train
    el = np.degrees(np.arcsin(z))
    az = np.degrees(i * golden) + 15.0
    train = _sph(az, el)

    cand_az, cand_el = np.meshgrid(np.arange(0.0, 360.0, 2.5), np.arange(0.0, 45.01, 2.5))
    cand = _sph(cand_az.ravel(), cand_el.ravel())
    chosen: list[np.ndarray] = []
    for _ in range(n_test):
        ref = np.concatenate([train] + [c[None] for c in chosen], 0)
        min_ang = np.arccos(np.clip(cand @ ref.T, -1.0, 1.0)).min(1)
        chosen.append(cand[int(np.argmax(min_ang))])
    test = np.stack(chosen, 0) if chosen else np.zeros((0, 3))
    return train * radius, test * radius


def _make_material(bpy, name: str, coords: str, cell_scale: float, checker_scale: float,
                   palette_shift: float = 0.0):
    """Diffuse material: coloured Voronoi cells times a light/dark 3D checker.

    ``coords`` is ``"rest"`` (a point attribute holding the undeformed positions, so the
    texture sticks to a deforming surface) or ``"object"`` (object-space coordinates,
    for rigid parts).
    """
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nt = mat.node_tree
    nt.nodes.clear()
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    bsdf = nt.nodes.new("ShaderNodeBsdfDiffuse")
    bsdf.inputs["Roughness"].default_value = 1.0
    if coords == "rest":
        src = nt.nodes.new("ShaderNodeAttribute")
        src.attribute_type = "GEOMETRY"
        src.attribute_name = "rest"
        vec = src.outputs["Vector"]
    else:
        src = nt.nodes.new("ShaderNodeTexCoord")
        vec = src.outputs["Object"]
    vor = nt.nodes.new("ShaderNodeTexVoronoi")
    vor.inputs["Scale"].default_value = cell_scale
    vor.inputs["Randomness"].default_value = 0.8
    nt.links.new(vec, vor.inputs["Vector"])
    ramp = nt.nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.interpolation = "CONSTANT"
    colours = [
        (0.90, 0.10, 0.08),  # red
        (0.98, 0.75, 0.05),  # yellow
        (0.10, 0.55, 0.10),  # green
        (0.08, 0.25, 0.85),  # blue
        (0.85, 0.85, 0.85),  # white
        (0.60, 0.10, 0.60),  # purple
    ]
    k = len(colours)
    els = ramp.color_ramp.elements
    # The Voronoi "Color" is a random colour per cell; its red channel is uniform in
    # [0, 1], so equally spaced constant stops give every palette colour equally often.
    els[0].position, els[1].position = 0.0, 1.0 / k
    for j in range(2, k):
        els.new(j / k)
    for j, e in enumerate(sorted(els, key=lambda e: e.position)):
        r, g, b = colours[(j + int(palette_shift)) % k]
        # Colour stops are scene-linear; the PNGs are sRGB (Standard view transform).
        e.color = (r ** 2.2, g ** 2.2, b ** 2.2, 1.0)
    sep = nt.nodes.new("ShaderNodeSeparateColor")
    nt.links.new(vor.outputs["Color"], sep.inputs["Color"])
    nt.links.new(sep.outputs["Red"], ramp.inputs[0])
    dark = nt.nodes.new("ShaderNodeHueSaturation")
    dark.inputs["Value"].default_value = 0.35
    nt.links.new(ramp.outputs["Color"], dark.inputs["Color"])
    chk = nt.nodes.new("ShaderNodeTexChecker")
    chk.inputs["Scale"].default_value = checker_scale
    nt.links.new(vec, chk.inputs["Vector"])
    nt.links.new(ramp.outputs["Color"], chk.inputs["Color1"])
    nt.links.new(dark.outputs["Color"], chk.inputs["Color2"])
    nt.links.new(chk.outputs["Color"], bsdf.inputs["Color"])
    nt.links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    return mat


def _mesh_object(bpy, name: str, verts: np.ndarray, faces, mat, smooth: bool):
    me = bpy.data.meshes.new(name)
    me.from_pydata([tuple(v) for v in verts.tolist()], [], [tuple(f) for f in faces])
    me.update()
    if smooth:
        me.polygons.foreach_set("use_smooth", np.ones(len(me.polygons), dtype=bool))
    me.materials.append(mat)
    ob = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(ob)
    return ob


def _box(size, offset=(0.0, 0.0, 0.0), subdiv: int = 1):
    """Vertices/faces of an axis-aligned box (optionally with subdivided faces)."""
    import itertools

    sx, sy, sz = (s / 2 for s in size)
    v = np.array(list(itertools.product([-1, 1], repeat=3)), np.float64) * [sx, sy, sz]
    v += offset
    f = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    return v, f


def _capsule(radius: float, height: float, n_seg: int = 40, n_cap: int = 8, n_body: int = 24):
    """Capsule along Z centred on the origin; returns (verts [N,3], faces)."""
    body = height - 2 * radius
    prof = []  # (rho, z) from bottom pole to top pole, excluding the poles
    for i in range(1, n_cap + 1):
        a = -math.pi / 2 + (math.pi / 2) * i / n_cap
        prof.append((radius * math.cos(a), -body / 2 + radius * math.sin(a)))
    for i in range(1, n_body):
        prof.append((radius, -body / 2 + body * i / n_body))
    for i in range(0, n_cap):
        a = (math.pi / 2) * i / n_cap
        prof.append((radius * math.cos(a), body / 2 + radius * math.sin(a)))
    ang = 2 * math.pi * np.arange(n_seg) / n_seg
    verts = [(0.0, 0.0, -height / 2)]
    for rho, z in prof:
        for a in ang:
            verts.append((rho * math.cos(a), rho * math.sin(a), z))
    verts.append((0.0, 0.0, height / 2))
    verts = np.array(verts)
    nr, top = len(prof), len(verts) - 1
    faces = []
    for s in range(n_seg):
        faces.append((0, 1 + (s + 1) % n_seg, 1 + s))
    for r in range(nr - 1):
        a0, a1 = 1 + r * n_seg, 1 + (r + 1) * n_seg
        for s in range(n_seg):
            s1 = (s + 1) % n_seg
            faces.append((a0 + s, a0 + s1, a1 + s1, a1 + s))
    last = 1 + (nr - 1) * n_seg
    for s in range(n_seg):
        faces.append((last + s, last + (s + 1) % n_seg, top))
    return verts, faces


WOBBLE_RADIUS, WOBBLE_HEIGHT = 0.27, 1.25


def wobble_deform(rest: np.ndarray, t: float) -> np.ndarray:
    """Deformed vertex positions of the ``wobble`` capsule at normalized time ``t``.

    The capsule stands on its (fixed) bottom end and bends along a circular arc whose
    curvature and bending direction change over the clip, twists about its axis, and a
    bulge travels up the body. Units are metres; ``rest`` is ``[N, 3]`` (undeformed,
    centred on the origin, axis along Z); returns a new ``[N, 3]`` float64 array.
    """
    h = WOBBLE_HEIGHT
    x, y, z = rest[:, 0], rest[:, 1], rest[:, 2]
    s = (z + h / 2) / h  # 0 at the bottom pole, 1 at the top pole
    # Bulge travelling upward and a twist growing toward the top.
    centre = 0.15 + 0.7 * t
    bulge = 1.0 + 0.45 * math.sin(math.pi * t + 0.3) * np.exp(-(((s - centre) / 0.14) ** 2))
    tw = 0.9 * math.sin(2 * math.pi * 0.5 * t) * s
    c, sn = np.cos(tw), np.sin(tw)
    x, y = (x * c - y * sn) * bulge, (x * sn + y * c) * bulge
    # Arc bend in direction phi with curvature kappa (per metre of length).
    kappa = 0.75 * math.sin(2 * math.pi * 0.55 * t - 0.55)
    phi = math.radians(20.0 + 100.0 * t)
    d = x * math.cos(phi) + y * math.sin(phi)  # along the bend direction
    e = -x * math.sin(phi) + y * math.cos(phi)
    zl = z + h / 2  # length along the axis from the bottom
    if abs(kappa) > 1e-6:
        rad = 1.0 / kappa
        th = zl / rad
        d2 = rad - (rad - d) * np.cos(th)
        z2 = (rad - d) * np.sin(th)
    else:
        d2, z2 = d, zl
    out = np.empty_like(rest)
    out[:, 0] = d2 * math.cos(phi) - e * math.sin(phi)
    out[:, 1] = d2 * math.sin(phi) + e * math.cos(phi)
    out[:, 2] = z2 - h / 2
    return out


def _euler_matrix(rx: float, ry: float, rz: float, loc=(0.0, 0.0, 0.0)) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = (math.cos(rx), math.sin(rx), math.cos(ry), math.sin(ry),
                              math.cos(rz), math.sin(rz))
    rxm = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rym = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rzm = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = rzm @ rym @ rxm  # Blender 'XYZ' Euler order
    m[:3, 3] = loc
    return m


def rigid_pose(t: float) -> np.ndarray:
    """Object-to-world 4x4 of the ``rigid`` scene's object at normalized time ``t``."""
    loc = (0.18 * math.sin(2 * math.pi * 0.5 * t - 0.8), 0.12 * math.sin(2 * math.pi * t),
           0.10 * math.sin(2 * math.pi * 0.75 * t))
    return _euler_matrix(math.radians(25) * math.sin(2 * math.pi * 0.6 * t),
                         math.radians(15) * math.sin(2 * math.pi * 0.4 * t + 0.5),
                         math.radians(-40 + 120 * t), loc)


ARM_PIVOT = np.array([0.0, 0.0, 0.40])
ARM_L1, ARM_L2 = 0.46, 0.40


def articulated_poses(t: float) -> list[np.ndarray]:
    """Object-to-world 4x4 of the three ``articulated`` parts (base, upper, lower arm).

    The base turns slowly about Z; the upper arm hangs from a hinge at ``ARM_PIVOT`` and
    the lower arm from a hinge at the upper arm's end; both hinges rotate about the
    base's local Y axis (a double pendulum).
    """
    yaw = math.radians(-20 + 50 * t)
    th1 = 0.50 * math.sin(2 * math.pi * 0.7 * t + 0.4)
    th2 = 0.70 * math.sin(2 * math.pi * 0.7 * t + 1.6)
    base = _euler_matrix(0, 0, yaw, ARM_PIVOT)
    upper = base @ _euler_matrix(0, th1, 0)
    lower = upper @ _euler_matrix(0, th2, 0, (0, 0, -ARM_L1))
    return [base, upper, lower]


class _Scene:
    """The built Blender scene plus a ``set_time(t)`` that poses it."""

    def __init__(self, bpy, name: str):
        self.bpy, self.name = bpy, name
        self.objects = []
        if name == "wobble":
            v, f = _capsule(WOBBLE_RADIUS, WOBBLE_HEIGHT)
            mat = _make_material(bpy, "wobble", "rest", cell_scale=6.0, checker_scale=3.5)
            ob = _mesh_object(bpy, "wobble", v, f, mat, smooth=True)
            attr = ob.data.attributes.new("rest", "FLOAT_VECTOR", "POINT")
            attr.data.foreach_set("vector", v.astype(np.float32).ravel())
            self.rest = v
            self.objects = [ob]
        elif name == "rigid":
            v1, f1 = _box((0.78, 0.50, 0.40), offset=(0.0, 0.0, -0.07))
            v2, f2 = _box((0.26, 0.26, 0.26), offset=(0.20, 0.0, 0.26))
            v = np.concatenate([v1, v2])
            f = f1 + [tuple(i + len(v1) for i in q) for q in f2]
            mat = _make_material(bpy, "rigid", "object", cell_scale=4.5, checker_scale=3.0)
            self.objects = [_mesh_object(bpy, "rigid", v, f, mat, smooth=False)]
        elif name == "articulated":
            parts = [
                (_box((0.56, 0.34, 0.20)), "object", 1),
                # Arm boxes reach slightly past their hinge into the parent part (and
                # stay inside it at every angle used), so the joints show no gaps.
                (_box((0.28, 0.28, ARM_L1 + 0.09), offset=(0, 0, -ARM_L1 / 2 - 0.015)), "object", 3),
                (_box((0.24, 0.24, ARM_L2 + 0.08), offset=(0, 0, -ARM_L2 / 2 - 0.02)), "object", 5),
            ]
            for j, ((v, f), coords, shift) in enumerate(parts):
                mat = _make_material(bpy, f"part{j}", coords, cell_scale=6.0,
                                     checker_scale=4.5, palette_shift=shift)
                self.objects.append(_mesh_object(bpy, f"part{j}", v, f, mat, smooth=False))
        else:
            raise ValueError(f"unknown scene {name!r}; choose one of {SCENES}")

    def set_time(self, t: float) -> None:
        from mathutils import Matrix

        if self.name == "wobble":
            me = self.objects[0].data
            me.vertices.foreach_set(
                "co", wobble_deform(self.rest, t).astype(np.float32).ravel())
            me.update()
        elif self.name == "rigid":
            self.objects[0].matrix_world = Matrix(rigid_pose(t).tolist())
        else:
            for ob, m in zip(self.objects, articulated_poses(t)):
                ob.matrix_world = Matrix(m.tolist())


def _setup_render(bpy, size: int, samples: int, denoise: bool):
    scene = bpy.context.scene
    r = scene.render
    r.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.seed = SEED
    scene.cycles.use_animated_seed = False
    scene.cycles.use_denoising = bool(denoise)
    if denoise:
        scene.cycles.denoiser = "OPENIMAGEDENOISE"
        scene.cycles.denoising_use_gpu = False
    scene.cycles.max_bounces = 3
    scene.cycles.diffuse_bounces = 2
    scene.cycles.glossy_bounces = 0
    scene.cycles.transmission_bounces = 0
    scene.cycles.transparent_max_bounces = 2
    scene.cycles.volume_bounces = 0
    scene.cycles.caustics_reflective = False
    scene.cycles.caustics_refractive = False
    r.resolution_x = r.resolution_y = size
    r.resolution_percentage = 100
    r.pixel_aspect_x = r.pixel_aspect_y = 1.0
    r.film_transparent = True
    r.use_persistent_data = True
    r.use_compositing = False
    r.use_sequencer = False
    r.image_settings.file_format = "PNG"
    r.image_settings.color_mode = "RGBA"
    r.image_settings.color_depth = "8"
    r.image_settings.compression = 15
    # No metadata text chunks (date, render time, ...): they would make files differ.
    for prop in r.bl_rna.properties.keys():
        if prop.startswith("use_stamp"):
            setattr(r, prop, False)
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.display_settings.display_device = "sRGB"
    scene.frame_start = scene.frame_end = scene.frame_current = 1

    # Constant lighting: soft grey world plus one sun.
    world = bpy.data.worlds.new("world")
    world.use_nodes = True
    bg = world.node_tree.nodes["Background"]
    bg.inputs["Color"].default_value = (0.55, 0.55, 0.55, 1.0)
    bg.inputs["Strength"].default_value = 1.0
    scene.world = world
    sun_data = bpy.data.lights.new("sun", "SUN")
    sun_data.energy = 2.2
    sun_data.angle = math.radians(20.0)
    sun = bpy.data.objects.new("sun", sun_data)
    sun.rotation_euler = (math.radians(40), math.radians(10), math.radians(30))
    scene.collection.objects.link(sun)

    cam_data = bpy.data.cameras.new("camera")
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.sensor_width = 36.0
    cam_data.angle_x = CAMERA_ANGLE_X
    cam_data.clip_start, cam_data.clip_end = 0.05, 100.0
    cam = bpy.data.objects.new("camera", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    return scene, cam


_PNG_SIG = b"\x89PNG\r\n\x1a\n"


def _strip_png_metadata(path: Path) -> None:
    """Drop text/time chunks (Cycles writes render times there) so reruns give equal bytes."""
    data = path.read_bytes()
    if not data.startswith(_PNG_SIG):
        raise ValueError(f"{path} is not a PNG")
    out, i = [_PNG_SIG], len(_PNG_SIG)
    while i < len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        kind = data[i + 4:i + 8]
        if kind not in (b"tEXt", b"zTXt", b"iTXt", b"tIME"):
            out.append(data[i:i + 12 + n])
        i += 12 + n
    path.write_bytes(b"".join(out))


@contextlib.contextmanager
def _quiet_stdout(enabled: bool = True):
    """Silence Blender's C-level render log lines on fd 1 (Python prints are flushed)."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


# ----------------------------------------------------------------------------- outputs


def _alpha_stats(paths: list[Path]) -> dict:
    import imageio.v3 as iio

    cov, margin = [], 10**9
    for p in paths:
        a = iio.imread(p)[..., 3]
        cov.append(float((a > 127).mean()))
        ys, xs = np.nonzero(a)
        if len(ys):
            h, w = a.shape
            margin = min(margin, int(ys.min()), int(xs.min()), h - 1 - int(ys.max()),
                         w - 1 - int(xs.max()))
    cov = np.array(cov)
    return {"coverage_mean": round(float(cov.mean()), 4), "coverage_min": round(float(cov.min()), 4),
            "coverage_max": round(float(cov.max()), 4), "min_margin_px": int(margin)}


def _preview_grid(out_dir: Path, n_train: int, n_test: int, n_times: int) -> Path:
    """Composite a few cameras (rows) x a few times (columns) on white; write PNG."""
    import imageio.v3 as iio

    cams = [("train", c) for c in np.unique(np.linspace(0, n_train - 1, min(n_train, 4)).round().astype(int))]
    if n_test:
        cams.append(("test", 0))
    times = np.unique(np.linspace(0, n_times - 1, min(n_times, 5)).round().astype(int))
    rows = []
    for split, c in cams:
        row = []
        for ti in times:
            im = iio.imread(out_dir / split / f"r_{c:03d}_{ti:03d}.png").astype(np.float32) / 255.0
            rgb = composite_over(im, 1.0)
            rgb = np.pad(rgb, ((2, 2), (2, 2), (0, 0)), constant_values=0.85)
            row.append(rgb)
        rows.append(np.concatenate(row, 1))
    grid = np.concatenate(rows, 0)
    grid = np.repeat(np.repeat(grid, 2, 0), 2, 1)  # 2x nearest for people
    path = out_dir / "preview_grid.png"
    iio.imwrite(path, (grid * 255.0 + 0.5).astype(np.uint8))
    return path


def _code_hash() -> str:
    """Hash of this file, so any change to the scene code invalidates cached footage."""
    import hashlib

    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def _params(name, size, n_train, n_test, n_times, samples, denoise) -> dict:
    return {"version": VERSION, "code_sha256": _code_hash(), "scene": name, "size": int(size), "n_train": int(n_train),
            "n_test": int(n_test), "n_times": int(n_times), "samples": int(samples),
            "denoise": bool(denoise)}


def _cache_hit(out_dir: Path, params: dict) -> bool:
    stamp = out_dir / "sample.json"
    try:
        old = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    if old.get("params") != params:
        return False
    return all((out_dir / f).is_file() for f in
               ("transforms_train.json", "transforms_test.json", "preview_grid.png"))


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_scene(name: str, out_dir, size: int = DEFAULT_SIZE, n_train: int = DEFAULT_TRAIN,
               n_test: int = DEFAULT_TEST, n_times: int = DEFAULT_TIMES,
               force: bool = False, samples: int = DEFAULT_SAMPLES,
               denoise: bool = False, quiet: bool = True) -> Path:
    """Build scene ``name`` with ``bpy``, render every camera at every time, write footage.

    Runs in this process: it calls ``bpy.ops.wm.read_factory_settings(use_empty=True)``,
    which discards whatever ``bpy`` data the process had. Use
    :func:`make_scene_subprocess` to keep the caller's ``bpy`` state.

    Args:
        name: ``"wobble"`` (non-rigid; the demo scene), ``"rigid"`` or ``"articulated"``.
        out_dir: output folder (created). Files written: ``transforms_train.json``,
            ``transforms_test.json``, ``train/r_CCC_TTT.png``, ``test/r_CCC_TTT.png``,
            ``preview_grid.png`` and the ``sample.json`` cache stamp (written last).
        size: image width = height in pixels (the footage is square). 96-128 is the
            intended range; 8-1024 is accepted (tests use tiny images).
        n_train: number of training cameras (>= 1), spread over elevations -15..+60 deg.
        n_test: number of held-out test cameras (>= 0), between training cameras.
        n_times: number of time steps T (>= 2); time step i has ``time = i / (T - 1)``.
        force: re-render even if ``sample.json`` matches these parameters.
        samples: Cycles samples per pixel (fixed seed, so renders are deterministic).
        denoise: apply OpenImageDenoise on the CPU (off by default: it smooths the
            texture and costs time).
        quiet: silence Blender's per-render log lines on stdout.

    Returns:
        ``Path(out_dir)``.

    Raises:
        ValueError: unknown scene name or out-of-range parameters.
        ImportError: if ``bpy`` is not importable.
    """
    if name not in SCENES:
        raise ValueError(f"unknown scene {name!r}; choose one of {SCENES}")
    if not (8 <= int(size) <= 1024):
        raise ValueError(f"size must be in [8, 1024] px, got {size}")
    if n_train < 1 or n_test < 0 or n_times < 2 or samples < 1:
        raise ValueError("need n_train >= 1, n_test >= 0, n_times >= 2, samples >= 1")
    out_dir = Path(out_dir)
    params = _params(name, size, n_train, n_test, n_times, samples, denoise)
    if not force and _cache_hit(out_dir, params):
        _log(f"[samples] {name}: cached in {out_dir} (sample.json matches; use --force)")
        return out_dir

    import bpy  # noqa: PLC0415  (heavy; only when rendering)

    t_start = _time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sample.json").unlink(missing_ok=True)
    for split in ("train", "test"):
        shutil.rmtree(out_dir / split, ignore_errors=True)
        (out_dir / split).mkdir()

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene, cam = _setup_render(bpy, int(size), int(samples), denoise)
    built = _Scene(bpy, name)

    from mathutils import Matrix

    radius = CAMERA_DISTANCE[name]
    train_pos, test_pos = camera_positions(n_train, n_test, radius)
    cams = [("train", j, p) for j, p in enumerate(train_pos)] + \
           [("test", j, p) for j, p in enumerate(test_pos)]
    c2w: dict[tuple[str, int], list] = {}
    for split, j, p in cams:
        cam.matrix_world = Matrix(look_at_c2w(p).tolist())
        bpy.context.view_layer.update()
        c2w[(split, j)] = [list(map(float, row)) for row in cam.matrix_world]

    times = frame_times(n_times)
    for ti, t in enumerate(times):
        t0 = _time.perf_counter()
        built.set_time(t)
        for split, j, _ in cams:
            cam.matrix_world = Matrix(c2w[(split, j)])
            png = (out_dir / split / f"r_{j:03d}_{ti:03d}.png").resolve()
            scene.render.filepath = str(png)
            with _quiet_stdout(quiet):
                bpy.ops.render.render(write_still=True)
            _strip_png_metadata(png)
        _log(f"[samples] {name}: time {ti + 1}/{n_times} (t={t:.3f}) {len(cams)} views "
             f"in {_time.perf_counter() - t0:.1f}s")

    angle_x = float(cam.data.angle_x)
    focal = 0.5 * size / math.tan(0.5 * angle_x)
    for split in ("train", "test"):
        frames = []
        for s, j, _ in cams:
            if s != split:
                continue
            for ti, t in enumerate(times):
                frames.append(frame_record(f"./{split}/r_{j:03d}_{ti:03d}", c2w[(split, j)], t, camera_index=j,
                                            time_index=ti))
        write_transforms(out_dir / transforms_file_name(split), frames, camera_angle_x=angle_x,
                         intrinsics={"w": int(size), "h": int(size), "fl_x": focal, "fl_y": focal,
                                     "cx": size / 2.0, "cy": size / 2.0})

    _preview_grid(out_dir, n_train, n_test, n_times)
    pngs = sorted((out_dir / "train").glob("*.png")) + sorted((out_dir / "test").glob("*.png"))
    stats = _alpha_stats(pngs)
    elapsed = _time.perf_counter() - t_start
    stamp = {"params": params, "bpy_version": bpy.app.version_string,
             "camera_distance_m": radius, "scene_centre": [0.0, 0.0, 0.0],
             "render_seconds": round(elapsed, 2), "n_images": len(pngs), **stats}
    (out_dir / "sample.json").write_text(json.dumps(stamp, indent=1))
    _log(f"[samples] {name}: {len(pngs)} images in {elapsed:.1f}s -> {out_dir} "
         f"(object coverage mean {stats['coverage_mean']:.1%}, "
         f"range {stats['coverage_min']:.1%}..{stats['coverage_max']:.1%}, "
         f"min margin {stats['min_margin_px']} px)")
    return out_dir


def make_scene_subprocess(name: str, out_dir, size: int = DEFAULT_SIZE,
                          n_train: int = DEFAULT_TRAIN, n_test: int = DEFAULT_TEST,
                          n_times: int = DEFAULT_TIMES, force: bool = False,
                          samples: int = DEFAULT_SAMPLES, denoise: bool = False,
                          timeout: float | None = None) -> Path:
    """Like :func:`make_scene`, but renders in a fresh Python interpreter.

    Use it from code (tests, benchmarks, the backend) that must not have its own ``bpy``
    state reset. The same cache applies. Progress goes to this process's stderr.

    Returns:
        ``Path(out_dir)``.

    Raises:
        subprocess.CalledProcessError: if rendering fails (non-zero exit status).
        subprocess.TimeoutExpired: if ``timeout`` (seconds) passes.
    """
    args = ["--scene", name, "--out", str(out_dir), "--size", str(size), "--train-cams", str(n_train),
            "--test-cams", str(n_test), "--times", str(n_times), "--samples", str(samples)]
    if force:
        args.append("--force")
    if denoise:
        args.append("--denoise")
    run_sample_module("samples.make_scene", args, timeout)
    return Path(out_dir)


def run_sample_module(module: str, args: list[str], timeout: float | None = None) -> None:
    """Run ``python -m <module> <args>`` in a fresh interpreter with the repo on
    ``PYTHONPATH`` (so its ``bpy`` state is its own); its stdout is discarded, its stderr
    (progress) is this process's.

    Raises:
        subprocess.CalledProcessError: on a non-zero exit status.
        subprocess.TimeoutExpired: if ``timeout`` (seconds) passes.
    """
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    subprocess.run([sys.executable, "-m", module, *args], check=True, cwd=str(root), env=env, timeout=timeout,
                   stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m samples.make_scene``); returns exit status."""
    ap = argparse.ArgumentParser(prog="python -m samples.make_scene", description=__doc__.split("\n")[0])
    ap.add_argument("--scene", default="wobble", choices=SCENES)
    ap.add_argument("--out", type=Path, default=None,
                    help="output folder (default: data/samples/SCENE)")
    ap.add_argument("--size", type=int, default=DEFAULT_SIZE, help="image size in px (square)")
    ap.add_argument("--train-cams", type=int, default=DEFAULT_TRAIN)
    ap.add_argument("--test-cams", type=int, default=DEFAULT_TEST)
    ap.add_argument("--times", type=int, default=DEFAULT_TIMES)
    ap.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="Cycles samples per pixel")
    ap.add_argument("--denoise", action="store_true", help="OpenImageDenoise on the CPU")
    ap.add_argument("--force", action="store_true", help="re-render even if cached")
    ap.add_argument("--verbose", action="store_true", help="keep Blender's render log on stdout")
    a = ap.parse_args(argv)
    out = a.out if a.out is not None else Path("data/samples") / a.scene
    try:
        make_scene(a.scene, out, size=a.size, n_train=a.train_cams, n_test=a.test_cams,
                   n_times=a.times, force=a.force, samples=a.samples, denoise=a.denoise,
                   quiet=not a.verbose)
    except ValueError as exc:
        ap.error(str(exc))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
