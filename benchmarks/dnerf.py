"""D-NeRF benchmark: gen4d's reconstruction on the field's dynamic-scene data set.

Protocol (``../shared/datasets/dnerf/README.md``): train on each scene's ``train`` split
(one camera per time), score every ``test`` image (``--split val`` to tune) composited on
white: PSNR and SSIM (11×11 Gaussian window, σ 1.5, the mean of the SSIM map; the field's
figure), and the object-region PSNR of :mod:`backend.eval.metrics`. 400 px is the 800-px
RGBA area-downscaled on straight alpha, as D-NeRF's loader does (:mod:`.dnerf_data`).
LPIPS is reported only where its network weights are present; they cannot be downloaded
here, so the column says ``n/a``, never a made-up figure.

Per scene: training wall time, iterations per second, peak memory (host peak RSS of the
fit's own process on the CPU; CUDA max allocated on a GPU), Gaussian count and the
saved model's size on disk (``model.pt``, what a result folder keeps besides its PLYs).

Each scene is fitted in its own spawned process, with ``--threads`` torch and Numba
threads (the default is every core), one scene after another.

Writes ``benchmarks/results/dnerf_<tag>.json`` (rows), ``dnerf_<tag>.md`` (a table
beside the published numbers) and ``dnerf_<tag>.png`` (per-scene PSNR against the
anchors; PSNR against training time).

Usage::

    python benchmarks/dnerf.py --preset standard --resolution 400 [--scenes lego,hook]
        [--set optimization.iterations=3000] [--split test|val] [--tag NAME] [--save-result DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import resource
import signal
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: Published means over the 8 scenes (PSNR on white; SSIM / LPIPS where the paper gives
#: them), for the table and the figure: (method, resolution, PSNR, SSIM, LPIPS, training time).
PUBLISHED = [
    ("D-NeRF", 400, 30.50, 0.95, 0.07, None),
    ("TiNeuVox-B", 400, 32.67, 0.97, 0.04, "28 min"),
    ("K-Planes", 400, 31.61, 0.97, None, None),
    ("HexPlane", 400, 31.04, 0.97, 0.04, None),
    ("4DGaussians", 800, 34.05, 0.98, 0.02, "8 min, RTX 3090"),
    ("4DGS (Yang et al.)", 800, 34.09, None, None, None),
    ("Deformable-3DGS", 800, 40.43, None, None, None),
    ("Grid4D", 800, 39.91, None, None, None),
    ("SC-GS", 800, 40.65, None, None, None),
]

#: D-NeRF's per-scene test PSNR at 400 px (Pumarola et al. 2021, Table 2).
DNERF_PER_SCENE = {"bouncingballs": 38.93, "hellwarrior": 25.02, "hook": 29.25, "jumpingjacks": 32.80,
                   "lego": 21.64, "mutant": 31.29, "standup": 32.79, "trex": 31.75}


def _parse_sets(items: list[str]) -> dict:
    """``KEY=VALUE`` strings → options (VALUE parsed as JSON when it is JSON)."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _configure_threads(threads: int) -> None:
    """Give torch and Numba ``threads`` threads in this process (before Numba is imported)."""
    os.environ["NUMBA_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def fit_scene(job: dict) -> dict:
    """Fit one scene and score it (runs in a fresh process; see :func:`main`).

    Args:
        job: ``scene``, ``data_root``, ``resolution``, ``preset``, ``options``, ``split``,
            ``threads``, ``device``.

    Returns:
        The scene's row (metrics, timings, sizes; per-image PSNR under ``psnr_per_image``).
    """
    _configure_threads(job["threads"])
    import numpy as np
    import torch

    from backend.eval.metrics import score_images
    from backend.pipeline.context import JobContext
    from backend.pipeline.ingest import resize_footage_images
    from backend.pipeline.reconstruct import reconstruct
    from backend.render.frames import render_rgba
    from benchmarks.dnerf_data import load_split
    from protocol.presets import reconstruct_config

    scene_dir = Path(job["data_root"]) / job["scene"]
    cfg = reconstruct_config(job["preset"], job["options"])
    train = load_split(scene_dir, "train", job["resolution"])
    if max(train.width, train.height) > cfg.data.max_image_size:  # what the pipeline's ingest does
        images, Ks = resize_footage_images(train.images, train.Ks, cfg.data.max_image_size)
        train = dataclasses.replace(train, images=images, Ks=Ks)
    device = job["device"]
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    model, stats = reconstruct(train, cfg, JobContext(), device=device)
    train_seconds = time.perf_counter() - t0
    peak_cuda = torch.cuda.max_memory_allocated() / 2 ** 20 if device == "cuda" else None
    model = model.cpu()
    every = max(1, len(train) // 20)  # ~20 training views: underfitting shows here
    with torch.no_grad():
        sub = train.select(torch.arange(0, len(train), every))
        train_pred = render_rgba(model, sub.viewmats, sub.Ks, sub.times, sub.width, sub.height)
    train_psnr = float(np.mean(score_images(train_pred, sub.images)["psnr"]))
    del train, sub, train_pred
    test = load_split(scene_dir, job["split"], job["resolution"])
    t1 = time.perf_counter()
    with torch.no_grad():
        pred = render_rgba(model, test.viewmats, test.Ks, test.times, test.width, test.height)
    render_seconds = time.perf_counter() - t1
    scores = score_images(pred, test.images)
    if job.get("save_images"):
        _save_strip(pred, test.images, Path(job["save_images"]), job["scene"], scores["psnr"])
    if job.get("save_result"):  # an asset the add-on imports (benchmarks/blender_fidelity.py --dnerf)
        from backend.pipeline.export import export_result

        from protocol.formats.transforms import read_transforms

        # one output frame per training time: the scene's own frame rate
        frames = len({f.time for f in read_transforms(scene_dir / "transforms_train.json").frames})
        export_result(model, Path(job["save_result"]) / job["scene"], frames, 24.0,
                      {"job_type": "footage", "source": f"D-NeRF {job['scene']} train, {job['resolution']} px",
                       "preset": job["preset"], "options": job["options"]}, JobContext(), stats)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        torch.save(model.state(), path)
        size_mb = path.stat().st_size / 2 ** 20
    mean = lambda xs: float(np.mean(xs))  # noqa: E731
    return {
        "scene": job["scene"], "resolution": job["resolution"], "split": job["split"], "preset": job["preset"],
        "options": job["options"], "device": device, "threads": job["threads"],
        "psnr": mean(scores["psnr"]), "psnr_train_views": train_psnr, "ssim": mean(scores["ssim"]), "psnr_object": mean(scores["psnr_object"]),
        "lpips": None, "train_seconds": train_seconds, "iterations": stats["iterations"],
        "planned_iterations": stats.get("planned_iterations", stats["iterations"]),
        "it_per_s": stats["it_per_s"], "n_gaussians": stats["n_gaussians"], "model_mb": size_mb,
        "peak_mem_mb": peak_cuda if peak_cuda is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_mem_kind": "cuda_max_allocated" if peak_cuda is not None else "host_peak_rss",
        "render_seconds_per_image": render_seconds / len(test), "n_test_images": len(test),
        "psnr_per_image": [round(p, 3) for p in scores["psnr"]], "final_loss": stats["final_loss"],
    }


def _save_strip(pred, gt, path: Path, scene: str, psnrs: list[float], n: int = 4) -> None:
    """Save ground truth (top) over render (bottom) of ``n`` test images, on white, as PNG."""
    import imageio.v3 as iio
    import numpy as np

    from benchmarks.dnerf_data import on_white

    idx = np.linspace(0, len(pred) - 1, n).round().astype(int)
    top = np.concatenate([on_white(gt[i]).numpy() for i in idx], axis=1)
    bottom = np.concatenate([on_white(pred[i]).numpy() for i in idx], axis=1)
    strip = (np.clip(np.concatenate([top, bottom], axis=0), 0, 1) * 255).round().astype(np.uint8)
    path.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path / f"{scene}_test.png", strip)
    (path / f"{scene}_test.txt").write_text(" ".join(f"{psnrs[i]:.2f}" for i in idx) + "\n")


def _steps(row: dict) -> str:
    """Steps run, and the planned steps when a time limit or budget ended the fit first."""
    planned = row.get("planned_iterations", row["iterations"])
    return str(row["iterations"]) if planned == row["iterations"] else f"{row['iterations']} of {planned}"


def markdown_table(rows: list[dict]) -> str:
    """Per-scene rows and the mean, then the published means."""
    head = ("| scene | res | PSNR | SSIM | LPIPS | PSNR obj | D-NeRF PSNR | train s | steps | it/s | peak MB | N | "
            "model MB |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    lines = []
    for r in rows:
        lines.append(f"| {r['scene']} | {r['resolution']} | {r['psnr']:.2f} | {r['ssim']:.4f} | n/a | "
                     f"{r['psnr_object']:.2f} | {DNERF_PER_SCENE.get(r['scene'], float('nan')):.2f} | "
                     f"{r['train_seconds']:.0f} | {_steps(r)} | {r['it_per_s']:.2f} | {r['peak_mem_mb']:.0f} | "
                     f"{r['n_gaussians']} | "
                     f"{r['model_mb']:.1f} |")
    if rows:
        m = lambda k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
        lines.append(f"| **mean of {len(rows)}** | | **{m('psnr'):.2f}** | {m('ssim'):.4f} | n/a | "
                     f"{m('psnr_object'):.2f} | "
                     f"{sum(DNERF_PER_SCENE[r['scene']] for r in rows) / len(rows):.2f} | {m('train_seconds'):.0f} | | "
                     f"{m('it_per_s'):.2f} | {m('peak_mem_mb'):.0f} | {m('n_gaussians'):.0f} | {m('model_mb'):.1f} |")
    pub = ["", "Published means over the 8 scenes (each paper's own table; PSNR on white):", "",
           "| method | res | PSNR | SSIM | LPIPS | training time (GPU) |", "| --- | ---: | ---: | ---: | ---: | --- |"]
    for name, res, p, s, lp, t in PUBLISHED:
        pub.append(f"| {name} | {res} | {p:.2f} | {s if s is not None else ''} | {lp if lp is not None else ''} | "
                   f"{t or ''} |")
    return head + "\n".join(lines) + "\n" + "\n".join(pub) + "\n"


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Left: per-scene PSNR beside D-NeRF's. Right: PSNR against training time, with the
    published means as horizontal lines at this resolution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2), dpi=110)
    scenes = [r["scene"] for r in rows]
    x = np.arange(len(rows))
    ax1.bar(x - 0.2, [r["psnr"] for r in rows], 0.4, label="gen4d")
    ax1.bar(x + 0.2, [DNERF_PER_SCENE[s] for s in scenes], 0.4, label="D-NeRF (400 px, paper)")
    ax1.set_xticks(x, scenes, rotation=30, fontsize=8)
    ax1.set_ylabel("test PSNR on white (dB)")
    ax1.set_ylim(15, 45)
    ax1.legend(fontsize=8)
    ax1.grid(axis="y", alpha=0.3)
    res = rows[0]["resolution"] if rows else 400
    for r in rows:
        ax2.scatter(r["train_seconds"] / 60, r["psnr"], s=18)
        ax2.annotate(r["scene"], (r["train_seconds"] / 60, r["psnr"]), fontsize=7)
    for name, pres, p, *_ in PUBLISHED:
        if pres == res:
            ax2.axhline(p, ls="--", lw=0.8, color="grey")
            ax2.text(0.0, p + 0.1, name, fontsize=7, color="grey")
    ax2.set_xlabel("training time per scene (min)")
    ax2.set_ylabel("test PSNR (dB)")
    ax2.grid(alpha=0.3)
    fig.suptitle(title)
    fig.subplots_adjust(bottom=0.2, wspace=0.25)
    fig.savefig(path)


def _stop_fits_on_sigterm() -> None:
    """A SIGTERM to the benchmark also ends the scene fit it spawned (otherwise the child
    keeps the cores busy and spoils the next timing on the machine)."""
    def stop(signum, frame):
        for child in multiprocessing.active_children():
            child.terminate()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from benchmarks.dnerf_data import DEFAULT_ROOT, SCENES

    parser.add_argument("--scenes", default=",".join(SCENES), help="comma-separated subset")
    parser.add_argument("--resolution", type=int, choices=(400, 800), default=400)
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="reconstruction option on top of the preset (repeatable; JSON values)")
    parser.add_argument("--split", choices=("test", "val"), default="test")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch/Numba threads of each fit")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--data", type=Path, default=DEFAULT_ROOT, help="the D-NeRF folder (8 scene folders)")
    parser.add_argument("--save-images", type=Path, default=None,
                        help="folder for a ground-truth-over-render strip of 4 test images per scene")
    parser.add_argument("--save-result", type=Path, default=None,
                        help="also write each fitted scene as a result folder <DIR>/<scene> (PLY frames, one per "
                             "training time, manifest, model.pt) that the add-on imports")
    parser.add_argument("--tag", default=None, help="output name (default: <preset>_<resolution>)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    import torch

    from protocol.presets import reconstruct_config

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    options = _parse_sets(args.set)
    reconstruct_config(args.preset, options)  # refuse a bad preset or option before any fit
    if not args.data.is_dir():
        parser.error(f"no D-NeRF data at {args.data}: pass --data")
    tag = args.tag or f"{args.preset}_{args.resolution}"
    _stop_fits_on_sigterm()
    rows = []
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"dnerf_{tag}"
    ctx = multiprocessing.get_context("spawn")
    for scene in args.scenes.split(","):
        job = {"scene": scene, "data_root": str(args.data), "resolution": args.resolution, "preset": args.preset,
               "options": options, "split": args.split, "threads": args.threads, "device": device,
               "save_images": str(args.save_images) if args.save_images else None,
               "save_result": str(args.save_result) if args.save_result else None}
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            row = pool.submit(fit_scene, job).result()
        rows.append(row)
        print(f"{scene:14s} {row['psnr']:6.2f} dB  (train views {row['psnr_train_views']:.2f})  SSIM {row['ssim']:.4f}  obj {row['psnr_object']:6.2f}  "
              f"{row['train_seconds']:6.0f} s  {row['it_per_s']:5.2f} it/s  N={row['n_gaussians']}  "
              f"peak {row['peak_mem_mb']:.0f} MB", flush=True)
        stem.with_suffix(".json").write_text(json.dumps(rows, indent=1))  # after every scene: a long run killed keeps its rows
    table = markdown_table(rows)
    stem.with_suffix(".md").write_text(table)
    plot(rows, stem.with_suffix(".png"), f"gen4d on D-NeRF ({tag}, {device}, {args.split} split)")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
