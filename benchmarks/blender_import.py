"""Blender import speed: a 200k-Gaussian × 30-frame result through the add-on's importer.

Measured in one ``bpy`` process (the bpy module, headless):

- ``import_s``: :func:`blender_addon.importer.import_result` (cache files linked, node tree
  and material built) plus the first evaluation of the object at frame 0, i.e. until the
  artist sees the asset.
- ``frame_switch_ms``: median wall time of ``scene.frame_set(f)`` followed by evaluating
  the object (the Import PLY node reads the frame's file), over every frame visited for
  the first time (cold: each file read once). ``frame_switch_warm_ms`` repeats the visits
  (Blender keeps imported files cached); ``frame_switch_blend_ms`` then visits every
  half frame (subframe 0.5: positions and rotations of two cached frames blended).
- ``peak_rss_mb``: peak resident memory of the process (``ru_maxrss``), bpy included.

The synthetic result (:mod:`samples.synthetic_result`, about 12 MB of PLY per frame) is
written to a temporary folder and deleted afterwards. Prints a short report, writes
``benchmarks/results/blender_import.json``, and ends with one JSON line holding
``import_s``, ``frame_switch_ms`` and ``peak_rss_mb``.

The frames move every Gaussian and (``--spin``, default 0.2 rad per frame) turn it, so the
lean cache frames hold positions and rotations, as for a trajectory fit.

Usage: ``python benchmarks/blender_import.py [--gaussians 200000] [--frames 30] [--spin 0.2]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from samples.synthetic_result import write_result  # noqa: E402


def _evaluate(obj) -> int:
    """Evaluate ``obj`` and return its instance count (forces the Import PLY read)."""
    import bpy

    depsgraph = bpy.context.evaluated_depsgraph_get()
    geometry = obj.evaluated_get(depsgraph).evaluated_geometry()
    cloud = geometry.instances_pointcloud()
    return 0 if cloud is None else len(cloud.points)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gaussians", type=int, default=200_000)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--spin", type=float, default=0.2,
                        help="rotation per frame (rad) of every Gaussian, so rotations change over time as in a "
                             "trajectory fit (0: only positions move)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "blender_import.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gen4d_import_bench_") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        write_result(tmp / "result", n=args.gaussians, frames=args.frames, spin=args.spin)
        write_s = time.perf_counter() - t0

        import bpy  # imported after writing, so the bpy baseline is not in write_s

        from blender_addon.importer import import_result

        bpy.ops.wm.read_factory_settings(use_empty=True)
        scene = bpy.context.scene
        scene.frame_start, scene.frame_end = 1, args.frames
        scene.frame_set(1)
        t0 = time.perf_counter()
        obj = import_result(tmp / "result", name="bench", cache_dir=tmp / "cache")
        build_s = time.perf_counter() - t0
        count = _evaluate(obj)
        import_s = time.perf_counter() - t0
        if count != args.gaussians:
            print(f"error: evaluated {count} instances, expected {args.gaussians}", file=sys.stderr)
            return 1

        def switch(frame: int, subframe: float = 0.0) -> float:
            t = time.perf_counter()
            scene.frame_set(frame, subframe=subframe)
            n = _evaluate(obj)
            elapsed = (time.perf_counter() - t) * 1000.0
            if n != args.gaussians:
                raise RuntimeError(f"frame {frame}: {n} instances")
            return elapsed

        cold = [switch(f) for f in range(2, args.frames + 1)]
        warm = [switch(f) for f in range(1, args.frames + 1)]
        blend = [switch(f, 0.5) for f in range(1, args.frames)]
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    result = {
        "import_s": round(import_s, 3),
        "frame_switch_ms": round(statistics.median(cold), 1),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "frame_switch_warm_ms": round(statistics.median(warm), 1),
        "frame_switch_blend_ms": round(statistics.median(blend), 1),
        "frame_switch_max_ms": round(max(cold), 1),
        "build_s": round(build_s, 3),
        "write_result_s": round(write_s, 1),
        "gaussians": args.gaussians,
        "frames": args.frames,
        "spin": args.spin,
        "blender": bpy.app.version_string,
    }
    print(f"{args.gaussians} Gaussians x {args.frames} frames, Blender {bpy.app.version_string}")
    print(f"  import (build + first evaluation): {import_s:.2f} s (build {build_s * 1000:.0f} ms)")
    print(f"  frame switch, first visit: median {result['frame_switch_ms']} ms, max {result['frame_switch_max_ms']} ms")
    print(f"  frame switch, revisit:     median {result['frame_switch_warm_ms']} ms")
    print(f"  half-frame blend, cached:  median {result['frame_switch_blend_ms']} ms")
    print(f"  peak RSS: {peak_rss_mb:.0f} MB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("import_s", "frame_switch_ms", "peak_rss_mb")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
