"""Orbital-video footage, Diffusion4D style: one video in which every frame has its own
camera and time.

Frame i of T is at time ``i / (T − 1)`` seen from a camera at azimuth ``i · step`` degrees
(15° by default, Diffusion4D's 24-frame orbit), elevation 0, at the scene's camera
distance, looking at the object centre. Optionally a second, static orbit: the same
azimuths, all at time 0 (Diffusion4D's orbit of the first pose). Held-out test cameras
(the same ones as :func:`samples.make_scene.make_scene` uses) see every time, so results
score exactly like the multi-view samples.

Written in the transforms format (``transforms_train.json`` frames ``./train/o_<i>`` and
``./train/s_<i>``, ``transforms_test.json``), so reconstruction consumes it unchanged.

Usage: ``python -m samples.orbital --scene wobble --out DIR [--frames 24] [--step-deg 15]
[--static-orbit] [--size 112]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time as _time
from pathlib import Path

import numpy as np

from backend.cameras import look_at_c2w
from protocol.formats.time_grid import frame_times
from protocol.formats.transforms import frame_record, transforms_file_name, write_transforms
from samples import SCENES
from samples.make_scene import (CAMERA_DISTANCE, DEFAULT_SAMPLES, DEFAULT_SIZE, _alpha_stats, _code_hash, _log,
                                _quiet_stdout, _Scene, _setup_render, _strip_png_metadata, camera_positions,
                                run_sample_module)

ORBITAL_VERSION = 1


def orbit_positions(n_frames: int, step_deg: float, radius: float) -> np.ndarray:
    """``[n_frames, 3]`` camera centres at azimuth ``i · step_deg``, elevation 0 (metres)."""
    az = np.radians(np.arange(n_frames) * step_deg)
    return np.stack([radius * np.cos(az), radius * np.sin(az), np.zeros(n_frames)], axis=1)


def make_orbital(name: str, out_dir, size: int = DEFAULT_SIZE, n_frames: int = 24, step_deg: float = 15.0,
                 static_orbit: bool = False, n_test: int = 2, samples: int = DEFAULT_SAMPLES,
                 force: bool = False) -> Path:
    """Render orbital footage of a sample scene with Cycles on the CPU (cached).

    Args:
        name: a scene of :data:`samples.SCENES`.
        out_dir: output folder.
        size: square image size in pixels.
        n_frames: frames T of the orbit (>= 2).
        step_deg: azimuth advance per frame, degrees.
        static_orbit: also render the static orbit of the first pose (time 0).
        n_test: held-out cameras rendered at every time.
        samples: Cycles samples per pixel.
        force: re-render even when ``sample.json`` matches.

    Returns:
        ``Path(out_dir)``.

    Raises:
        ValueError: unknown scene or out-of-range parameters.
    """
    if name not in SCENES:
        raise ValueError(f"unknown scene {name!r}; choose one of {SCENES}")
    if n_frames < 2 or n_test < 0 or not 8 <= size <= 1024:
        raise ValueError("need n_frames >= 2, n_test >= 0 and 8 <= size <= 1024")
    out_dir = Path(out_dir)
    params = {"layout": "orbital", "version": ORBITAL_VERSION, "code_sha256": _code_hash(), "scene": name,
              "size": int(size), "n_frames": int(n_frames), "step_deg": float(step_deg),
              "static_orbit": bool(static_orbit), "n_test": int(n_test), "samples": int(samples)}
    stamp_path = out_dir / "sample.json"
    if not force and stamp_path.is_file() and json.loads(stamp_path.read_text()).get("params") == params:
        _log(f"[samples] {name} orbital: cached in {out_dir}")
        return out_dir

    import bpy
    from mathutils import Matrix

    t_start = _time.perf_counter()
    for split in ("train", "test"):
        (out_dir / split).mkdir(parents=True, exist_ok=True)
        for old in (out_dir / split).glob("*.png"):
            old.unlink()
    stamp_path.unlink(missing_ok=True)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene, cam = _setup_render(bpy, int(size), int(samples), False)
    built = _Scene(bpy, name)
    radius = CAMERA_DISTANCE[name]
    orbit = orbit_positions(n_frames, step_deg, radius)
    _, test_pos = camera_positions(1, n_test, radius)
    times = frame_times(n_frames)

    def render(position, path: Path) -> list:
        cam.matrix_world = Matrix(look_at_c2w(position).tolist())
        bpy.context.view_layer.update()
        scene.render.filepath = str(path.resolve())
        with _quiet_stdout(True):
            bpy.ops.render.render(write_still=True)
        _strip_png_metadata(path.resolve())
        return [list(map(float, row)) for row in cam.matrix_world]

    train, test = [], []
    for i, t in enumerate(times):
        built.set_time(t)
        c2w = render(orbit[i], out_dir / "train" / f"o_{i:03d}.png")
        train.append(frame_record(f"./train/o_{i:03d}", c2w, t, camera_index=i, time_index=i))
        if static_orbit and i == 0:
            for j in range(n_frames):
                c2w = render(orbit[j], out_dir / "train" / f"s_{j:03d}.png")
                train.append(frame_record(f"./train/s_{j:03d}", c2w, 0.0, camera_index=j, time_index=0))
        for j, p in enumerate(test_pos):
            c2w = render(p, out_dir / "test" / f"r_{j:03d}_{i:03d}.png")
            test.append(frame_record(f"./test/r_{j:03d}_{i:03d}", c2w, t, camera_index=j, time_index=i))
    angle_x = float(cam.data.angle_x)
    focal = 0.5 * size / math.tan(0.5 * angle_x)
    for split, frames in (("train", train), ("test", test)):
        write_transforms(out_dir / transforms_file_name(split), frames, camera_angle_x=angle_x,
                         intrinsics={"w": int(size), "h": int(size), "fl_x": focal, "fl_y": focal,
                                     "cx": size / 2.0, "cy": size / 2.0})
    pngs = sorted((out_dir / "train").glob("*.png")) + sorted((out_dir / "test").glob("*.png"))
    stats = _alpha_stats(pngs)
    stamp = {"params": params, "bpy_version": bpy.app.version_string, "camera_distance_m": radius,
             "render_seconds": round(_time.perf_counter() - t_start, 2), "n_images": len(pngs), **stats}
    stamp_path.write_text(json.dumps(stamp, indent=1))
    _log(f"[samples] {name} orbital: {len(pngs)} images in {stamp['render_seconds']}s -> {out_dir}")
    return out_dir


def make_orbital_subprocess(name: str, out_dir, size: int = DEFAULT_SIZE, n_frames: int = 24,
                            step_deg: float = 15.0, static_orbit: bool = False, n_test: int = 2,
                            samples: int = DEFAULT_SAMPLES, force: bool = False,
                            timeout: float | None = None) -> Path:
    """Like :func:`make_orbital`, but renders in a fresh Python interpreter (same cache).

    Raises:
        subprocess.CalledProcessError: if rendering fails.
        subprocess.TimeoutExpired: if ``timeout`` (seconds) passes.
    """
    args = ["--scene", name, "--out", str(out_dir), "--size", str(size), "--frames", str(n_frames),
            "--step-deg", str(step_deg), "--test-cams", str(n_test), "--samples", str(samples)]
    if static_orbit:
        args.append("--static-orbit")
    if force:
        args.append("--force")
    run_sample_module("samples.orbital", args, timeout)
    return Path(out_dir)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m samples.orbital``)."""
    ap = argparse.ArgumentParser(prog="python -m samples.orbital", description=__doc__.split("\n")[0])
    ap.add_argument("--scene", default="wobble", choices=SCENES)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=DEFAULT_SIZE)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--step-deg", type=float, default=15.0)
    ap.add_argument("--static-orbit", action="store_true")
    ap.add_argument("--test-cams", type=int, default=2)
    ap.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args(argv)
    make_orbital(a.scene, a.out, a.size, a.frames, a.step_deg, a.static_orbit, a.test_cams, a.samples, a.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
