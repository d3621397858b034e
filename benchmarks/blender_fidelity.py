"""Blender fidelity: how close a Cycles / Eevee render of an imported asset comes to the
backend's own render of it, and to the ground truth (issue 15).

For a fitted result folder (default: the demo's, ``out/demo/result``) and its footage's
held-out cameras (``transforms_test.json``, every ``--every``-th time):

1. the backend's render (:func:`backend.render.frames.render_rgba` of ``model.pt`` at each
   camera and at the time of the asset frame Blender shows for it, as ``backend render``
   does) and the ground truth (the largest gap between the two times is reported);
2. in a Blender subprocess per engine (``benchmarks/blender_fidelity_render.py``): the
   result imported with the add-on's importer and rendered at the same cameras and clip
   frames, film transparent, at the footage's resolution, for each configuration of a
   small settings sweep (Cycles samples, pixel filter, view transform, transparent
   bounces; Eevee samples) and for the add-on's "Prepare Scene for Splats" settings;
3. scores (:func:`backend.eval.fidelity.compare_renders`, everything composited on white):
   each Blender render vs the backend's and vs ground truth, the backend's vs ground
   truth: PSNR full / object region, mean colour bias and alpha bias in the object region.

Writes ``benchmarks/results/blender_fidelity_<asset>.json`` and ``.md``, and a picture
``.png`` (rows: the views Eevee rendered, ``--eevee-views`` per camera; columns: ground
truth | backend | Cycles | Eevee | 4×|Cycles − backend|, on white). Eevee (software GL on
the CPU here) renders only those views: its rows are scored over them alone. ``--hd`` also times one Cycles frame at
1920×1080 with the recommended settings.

Usage: ``python benchmarks/blender_fidelity.py [--result DIR] [--footage DIR] [--asset demo]
[--every 4] [--only NAME ...] [--hd]``; for a D-NeRF asset
``--dnerf jumpingjacks --resolution 400 --result DIR/jumpingjacks --asset dnerf_jumpingjacks``. Blender renders on the CPU: run it under the CPU lock.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.errors import BadInputError  # noqa: E402
from backend.eval.fidelity import compare_renders  # noqa: E402
from backend.pipeline.export import load_model  # noqa: E402
from backend.pipeline.ingest import load_footage  # noqa: E402
from backend.render.frames import render_rgba  # noqa: E402
from protocol.formats import TRANSFORMS_TEST, composite_over, read_manifest, read_transforms  # noqa: E402

WORKER = ROOT / "benchmarks" / "blender_fidelity_render.py"

#: name → (engine, settings on top of the worker's BASE, apply "Prepare Scene" first).
#: BASE: CPU, no denoising, no adaptive sampling, film transparent, Standard view,
#: 256 transparent bounces. ``prepared`` rows are what the add-on's operator sets.
CONFIGS: dict[str, tuple[str, dict, bool]] = {
    "cycles_32": ("CYCLES", {"cycles.samples": 32}, False),
    "cycles_128": ("CYCLES", {"cycles.samples": 128}, False),
    "cycles_128_filter0.01": ("CYCLES", {"cycles.samples": 128, "cycles.filter_width": 0.01}, False),
    "cycles_128_agx": ("CYCLES", {"cycles.samples": 128, "view_settings.view_transform": "AgX"}, False),
    "cycles_128_bounces32": ("CYCLES", {"cycles.samples": 128, "cycles.transparent_max_bounces": 32}, False),
    "cycles_128_bounces8": ("CYCLES", {"cycles.samples": 128, "cycles.transparent_max_bounces": 8}, False),
    "cycles_1024": ("CYCLES", {"cycles.samples": 1024}, False),
    "cycles_prepared": ("CYCLES", {}, True),
    "eevee_16": ("BLENDER_EEVEE", {"eevee.taa_render_samples": 16}, False),
    "eevee_prepared": ("BLENDER_EEVEE", {}, True),
}


def run_worker(spec: dict, work: Path) -> dict:
    """Run the Blender worker on ``spec`` in a subprocess; its ``RESULT`` dict.

    Raises:
        RuntimeError: the worker crashed or printed no result (its output tail included).
    """
    path = work / f"spec_{len(list(work.glob('spec_*.json')))}.json"
    path.write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, str(WORKER), str(path)], capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT: ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"Blender worker failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT: "):])


def _shown(path: Path) -> str:
    """``path`` as the report shows it: relative to the repository when inside it (no machine's
    absolute paths in committed results)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def read_rgba(path: Path) -> torch.Tensor:
    """An RGBA PNG as ``[H, W, 4]`` float32 in [0, 1]."""
    return torch.from_numpy(iio.imread(path).astype(np.float32) / 255.0)


def on_white_u8(rgba: torch.Tensor) -> np.ndarray:
    """``[H, W, 4]`` straight RGBA over white as uint8 RGB."""
    return (composite_over(rgba, 1.0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)


def picture(path: Path, gt, backend, cycles, eevee, rows: list[int]) -> None:
    """Rows ``rows`` of: GT | backend | Cycles | Eevee | 4×|Cycles − backend| (on white)."""
    lines = []
    for i in rows:  # every image batch is indexed by view
        cols = [on_white_u8(x[i]) for x in (gt, backend, cycles, eevee) if x is not None]
        diff = np.abs(cols[2].astype(np.float32) - cols[1].astype(np.float32)) * 4.0
        cols.append((255 - np.clip(diff, 0, 255)).astype(np.uint8))
        lines.append(np.concatenate(cols, axis=1))
    iio.imwrite(path, np.concatenate(lines, axis=0))


def markdown(report: dict) -> str:
    """The report as a Markdown table."""
    out = [f"# Blender fidelity: {report['asset']}", "",
           f"Result `{report['result']}`, footage `{report['footage']}`: {report['views']} held-out views "
           f"(test cameras, every {report['every']}th time), {report['width']}x{report['height']} px, film "
           "transparent, composited on white. Object region: either image's alpha > 0.5, dilated 4 px. "
           "Bias: mean (render − reference) in the object region, in 1/255 (colour on white; alpha). "
           f"Backend vs ground truth: **{report['backend_vs_gt']['psnr']:.2f} / "
           f"{report['backend_vs_gt']['psnr_object']:.2f} dB**.", "",
           "| render | vs backend, full / object (dB) | colour bias | alpha bias | alpha area | "
           "vs ground truth, full / object (dB) | views | s / view |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in report["configs"].items():
        b, g = row["vs_backend"], row["vs_gt"]
        out.append(f"| {name} | {b['psnr']:.2f} / {b['psnr_object']:.2f} | {b['colour_bias']:+.1f} | "
                   f"{b['alpha_bias']:+.1f} | {b['alpha_area_ratio']:.3f} | {g['psnr']:.2f} / {g['psnr_object']:.2f} | "
                   f"{len(row['views'])} | {row['seconds_per_view']:.2f} |")
    if "hd" in report:
        hd = report["hd"]
        out += ["", f"One Cycles frame at 1920x1080, recommended settings, samples {hd['samples']}: "
                    f"{hd['seconds']:.1f} s (CPU, 2 cores shared)."]
    out += ["", f"Settings: {report['settings_note']}", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--result", type=Path, default=ROOT / "out" / "demo" / "result")
    parser.add_argument("--footage", type=Path, default=ROOT / "data" / "samples" / "wobble")
    parser.add_argument("--asset", default="demo")
    parser.add_argument("--dnerf", metavar="SCENE", default=None,
                        help="the footage is D-NeRF scene SCENE (read as benchmarks/dnerf.py reads it, at "
                             "--resolution px); --result is its fitted asset (benchmarks/dnerf.py --save-result)")
    parser.add_argument("--dnerf-data", type=Path, default=None, help="the D-NeRF folder (default: ../shared/...)")
    parser.add_argument("--resolution", type=int, default=400, help="D-NeRF image side (px)")
    parser.add_argument("--every", type=int, default=4, help="every n-th held-out time")
    parser.add_argument("--only", nargs="*", choices=sorted(CONFIGS), help="configurations to run (default: all)")
    parser.add_argument("--eevee-views", type=int, default=1,
                        help="Eevee renders only the first N times of each held-out camera (software Eevee on "
                             "the CPU takes about 1 min per view at 16 samples, 4 at 64)")
    parser.add_argument("--hd", action="store_true", help="also time one 1920x1080 Cycles frame")
    parser.add_argument("--hd-only", action="store_true",
                        help="only time the 1920x1080 frame and add it to the existing report")
    parser.add_argument("--hd-samples", type=int, default=None,
                        help="Cycles samples for the 1920x1080 frame (default: the recommended settings')")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if not (args.result / "model.pt").is_file():
        raise BadInputError(f"no model.pt in {args.result}: run `bash scripts/demo.sh` or pass --result")

    manifest = read_manifest(args.result)
    if args.dnerf:
        from benchmarks.dnerf_data import DEFAULT_ROOT, load_split

        args.footage = (args.dnerf_data or DEFAULT_ROOT) / args.dnerf
        test = load_split(args.footage, "test", args.resolution)
    else:
        test = load_footage(args.footage, "test")
    doc = read_transforms(args.footage / TRANSFORMS_TEST)
    times = np.asarray(manifest.times)
    pick, views = [], []
    for i, frame in enumerate(doc.frames):
        t_index = frame.fields.get("time_index", i)
        if t_index % args.every:
            continue
        clip = int(np.abs(times - frame.time).argmin())
        pick.append(i)
        views.append({"name": f"v{i:03d}", "c2w": frame.c2w.tolist(), "frame": clip,
                      "camera": frame.fields.get("camera_index", 0), "time_gap": float(abs(times[clip] - frame.time))})
    idx = torch.tensor(pick)
    gt = test.images[idx]
    model = load_model(args.result)
    # at the asset's frame time, as Blender shows it (the gap to the footage's time is reported)
    clip_times = torch.tensor([float(times[v["frame"]]) for v in views], dtype=torch.float32)
    backend = render_rgba(model, test.viewmats[idx], test.Ks[idx], clip_times, test.width, test.height)

    names = args.only or list(CONFIGS)
    report = {"asset": args.asset, "result": _shown(args.result), "footage": _shown(args.footage), "every": args.every,
              "views": len(views), "width": test.width, "height": test.height,
              "max_time_gap": max(v["time_gap"] for v in views),
              "backend_vs_gt": compare_renders(backend, gt), "configs": {},
              "settings_note": "BASE (every row): CPU, denoising off, adaptive sampling off, film transparent, "
                               "Standard view, 256 transparent bounces; rows change the named setting; "
                               "`*_prepared` = the add-on's Prepare Scene for Splats settings"}
    renders = {}
    with tempfile.TemporaryDirectory(prefix="gen4d_fidelity_") as tmp:
        work = Path(tmp)
        for engine in () if args.hd_only else ("CYCLES", "BLENDER_EEVEE"):
            group = [n for n in names if CONFIGS[n][0] == engine]
            if not group:
                continue
            sub = list(range(len(views)))
            if engine != "CYCLES":
                per_cam: dict = {}
                sub = [j for j, v in enumerate(views)
                       if per_cam.setdefault(v["camera"], []).append(j) or len(per_cam[v["camera"]]) <= args.eevee_views]
            eng_views = [views[j] for j in sub]
            spec = {"result": str(args.result.resolve()), "cache": str(work / "cache"), "out": str(work / "renders"),
                    "width": test.width, "height": test.height, "angle_x": doc.camera_angle_x, "views": eng_views,
                    "configs": [{"name": n, "engine": engine, "settings": CONFIGS[n][1], "prepare": CONFIGS[n][2]}
                                for n in group]}
            t0 = time.perf_counter()
            res = run_worker(spec, work)
            print(f"[blender_fidelity] {engine}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            for n in group:
                img = torch.stack([read_rgba(work / "renders" / n / f"{v['name']}.png") for v in eng_views])
                renders[n] = (sub, img)
                secs = res[n]["seconds_per_view"]
                report["configs"][n] = {"engine": engine, "settings": CONFIGS[n][1], "prepare": CONFIGS[n][2],
                                        "prepare_changes": res[n]["prepare_changes"],
                                        "views": [v["name"] for v in eng_views],
                                        "vs_backend": compare_renders(img, backend[sub]),
                                        "vs_gt": compare_renders(img, gt[sub]),
                                        "seconds_per_view": float(np.median(secs[1:] if len(secs) > 1 else secs))}
                row = report["configs"][n]
                print(f"[blender_fidelity] {n}: vs backend {row['vs_backend']['psnr']:.2f} / "
                      f"{row['vs_backend']['psnr_object']:.2f} dB, bias {row['vs_backend']['colour_bias']:+.1f}; "
                      f"vs GT {row['vs_gt']['psnr']:.2f} / {row['vs_gt']['psnr_object']:.2f} dB", file=sys.stderr)
        if args.hd or args.hd_only:
            c2w = views[0]["c2w"]
            spec = {"result": str(args.result.resolve()), "cache": str(work / "cache"), "out": str(work / "hd"),
                    "width": 1920, "height": 1080, "angle_x": doc.camera_angle_x,
                    "views": [{"name": "hd", "c2w": c2w, "frame": views[0]["frame"]}],
                    "configs": [{"name": "hd", "engine": "CYCLES", "prepare": True,
                                 "settings": {"cycles.samples": args.hd_samples} if args.hd_samples else {}}]}
            res = run_worker(spec, work)
            report["hd"] = {"seconds": res["hd"]["seconds_per_view"][0], "config": "cycles_prepared",
                            "samples": args.hd_samples or "recommended"}

    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"blender_fidelity_{args.asset}"
    if args.hd_only:  # keep the existing figures, add the timing
        report = {**json.loads(stem.with_suffix(".json").read_text()), "hd": report["hd"]}
        stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
        stem.with_suffix(".md").write_text(markdown(report))
        print(json.dumps(report["hd"]))
        return 0
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))
    cyc = renders.get("cycles_prepared", next((v for k, v in renders.items() if k.startswith("cycles")), None))
    eev = renders.get("eevee_prepared", next((v for k, v in renders.items() if k.startswith("eevee")), None))
    if cyc is not None:  # rows: the views Eevee rendered too (all views without Eevee)
        rows = eev[0] if eev is not None else cyc[0]
        pos = {j: k for k, j in enumerate(cyc[0])}
        eev_full = None
        if eev is not None:
            eev_full = torch.ones_like(backend)
            eev_full[torch.tensor(eev[0])] = eev[1]
        picture(stem.with_suffix(".png"), gt, backend, cyc[1][[pos[j] for j in cyc[0]]], eev_full, rows)
    print(json.dumps({"backend_vs_gt": report["backend_vs_gt"]["psnr"],
                      **{n: r["vs_backend"]["psnr"] for n, r in report["configs"].items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
