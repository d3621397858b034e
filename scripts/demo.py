"""The main job, end to end, on the bundled default input.

1. Renders the sample footage with Blender (cached after the first run).
2. Starts the backend as its own process.
3. Submits the job (and a static baseline) through the add-on's client code.
4. Waits with visible progress.
5. Imports the result with the add-on's importer into ``out/demo/demo.blend``.
6. Renders every held-out view with Cycles on the CPU at the ground truth's resolution and
   the add-on's "Prepare Scene for Splats" settings (``out/demo/cycles_preview/``), and a
   preview strip of them (``out/demo/preview.png``).
7. Scores both fits and the Cycles renders on the held-out cameras and writes
   ``out/demo/metrics.json`` (``dynamic``, ``static_baseline``, ``cycles_preview``: the same
   images, the same scores).
8. Prints the held-out PSNR as its last line.

Usage: ``python scripts/demo.py [--preset standard] [--out out/demo]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from protocol import BackendClient, load_key  # noqa: E402
from protocol.formats import TERMINAL_STATES, composite_over, read_manifest  # noqa: E402

READY_PREFIX = "gen4d backend listening on "


def log(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def start_backend(data_dir: Path, port: int) -> tuple[subprocess.Popen, str]:
    """Start ``python -m backend serve`` and wait for its 'listening' line."""
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    data_dir.mkdir(parents=True, exist_ok=True)
    log_file = open(data_dir / "server.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "backend", "serve", "--address", address, "--data-dir",
                             str(data_dir)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log_file)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if line.startswith(READY_PREFIX):
            return proc, address
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"backend did not start; see {data_dir / 'server.log'}")


def wait_for_jobs(client: BackendClient, jobs: dict[str, str], out: Path) -> dict[str, dict]:
    """Follow job events with a progress bar per job until each ends; returns the final events."""
    final: dict[str, dict] = {}
    bars: dict[str, tqdm] = {}
    stage_of: dict[str, str] = {}
    while len(final) < len(jobs):
        event = client.poll_event(timeout_s=1.0)
        if event is None or event.get("job_id") not in jobs:
            continue
        label = jobs[event["job_id"]]
        kind = event["type"]
        if kind == "progress":
            if stage_of.get(label) != event["stage"]:
                if label in bars:
                    bars[label].close()
                stage_of[label] = event["stage"]
                bars[label] = tqdm(total=event["total"], desc=f"{label}: {event['stage']}", unit="step",
                                   file=sys.stderr, dynamic_ncols=True)
            bar = bars[label]
            bar.n = event["step"]
            if event.get("loss") is not None:
                bar.set_postfix(loss=f"{event['loss']:.4f}", refresh=False)
            bar.refresh()
        elif kind == "preview":
            (out / f"live_preview_{label}.png").write_bytes(event["png"])
        elif kind in TERMINAL_STATES:
            if label in bars:
                bars[label].close()
            final[event["job_id"]] = event
            log(f"{label}: {kind}" + (f" [{event.get('code')}] {event.get('message')}" if kind == "failed" else ""))
    return final


def score_result(result_dir: Path, footage_dir: Path) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Held-out-camera scores over all times: full image and object region, on white."""
    from backend.eval.metrics import score_images, summarize
    from backend.pipeline.export import load_model
    from backend.pipeline.ingest import load_footage
    from backend.render.frames import render_rgba

    test = load_footage(footage_dir, "test")
    model = load_model(result_dir)
    pred = render_rgba(model, test.viewmats, test.Ks, test.times, test.width, test.height)
    return summarize(score_images(pred, test.images)), pred, test.images


def score_cycles_preview(preview_dir: Path, footage_dir: Path, backend_pred: torch.Tensor) -> dict:
    """Scores of the Cycles renders ``<preview_dir>/<index>.png`` (one per frame of
    ``transforms_test.json``, in order) against the ground truth, as :func:`score_result`
    scores the backend's, plus :func:`backend.eval.fidelity.compare_renders` against the
    backend's render (``vs_backend``: PSNR, colour and alpha bias) and the render settings."""
    import imageio.v3 as iio

    from backend.eval.fidelity import compare_renders
    from backend.eval.metrics import score_images, summarize
    from backend.pipeline.ingest import load_footage

    test = load_footage(footage_dir, "test")
    renders = torch.stack([torch.from_numpy(iio.imread(preview_dir / f"{i:04d}.png").astype(np.float32) / 255.0)
                           for i in range(len(test))])
    info = json.loads((preview_dir / "render.json").read_text())
    return {**summarize(score_images(renders, test.images)), "vs_backend": compare_renders(renders, backend_pred),
            "render": info}


def on_white(rgba: torch.Tensor) -> np.ndarray:
    """Straight-alpha RGBA ``[H, W, 4]`` in [0, 1] over white, as uint8 RGB."""
    rgb = composite_over(rgba, 1.0)
    return (rgb.clamp(0, 1).numpy() * 255).round().astype(np.uint8)


def write_comparison(path: Path, gt: torch.Tensor, dynamic: torch.Tensor, static: torch.Tensor, n: int = 6) -> None:
    """Rows: ground truth, dynamic fit, static baseline; columns: times of test camera 0."""
    import imageio.v3 as iio

    idx = np.linspace(0, len(gt) // 2 - 1, n).round().astype(int)
    rows = [np.concatenate([on_white(x[i]) for i in idx], axis=1) for x in (gt, dynamic, static)]
    iio.imwrite(path, np.concatenate(rows, axis=0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--scene", default="wobble")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "demo")
    parser.add_argument("--port", type=int, default=5599)
    args = parser.parse_args(argv)
    t_start = time.monotonic()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    from samples.make_scene import make_scene_subprocess

    footage = ROOT / "data" / "samples" / args.scene
    log(f"sample footage: {footage} (rendered with Blender Cycles on first use)")
    make_scene_subprocess(args.scene, footage)
    t_sample = time.monotonic()

    backend, address = start_backend(out / "backend", args.port)
    log(f"backend pid {backend.pid} at {address}")
    try:
        client = BackendClient(address, load_key(out / "backend" / "gen4d.key"), timeout_s=60.0)
        client.hello()
        dynamic_id = client.submit_footage(footage, {"job_type": "footage", "preset": args.preset, "name": "demo"})
        static_id = client.submit_footage(footage, {"job_type": "footage", "preset": args.preset,
                                                    "options": {"model.representation": "static", "optimization.iterations": 500},
                                                    "name": "demo-static"})
        final = wait_for_jobs(client, {dynamic_id: "dynamic", static_id: "static"}, out)
        failed = [e for e in final.values() if e["type"] != "completed"]
        if failed:
            log(f"a job did not complete: {failed}")
            return 1
        client.fetch_result(dynamic_id, out / "result")
        client.fetch_result(static_id, out / "static_result")
        client.close()
    finally:
        backend.terminate()
        backend.wait(timeout=30)
    t_fit = time.monotonic()

    log("importing into Blender; Cycles renders every held-out view (Prepare Scene for Splats settings)")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "demo_blender.py"), "--result", str(out / "result"),
                    "--footage", str(footage), "--out", str(out)], check=True, cwd=ROOT,
                   env=dict(os.environ, PYTHONPATH=str(ROOT)))
    t_blender = time.monotonic()

    dyn_scores, dyn_pred, gt = score_result(out / "result", footage)
    static_scores, static_pred, _ = score_result(out / "static_result", footage)
    write_comparison(out / "heldout_comparison.png", gt, dyn_pred, static_pred)
    cycles_scores = score_cycles_preview(out / "cycles_preview", footage, dyn_pred)
    manifest = read_manifest(out / "result")
    static_manifest = read_manifest(out / "static_result")
    metrics = {
        "scene": args.scene, "preset": args.preset,
        "heldout": "test cameras (transforms_test.json), all times, composited on white",
        "object_region": "union of GT and rendered alpha > 0.5, dilated 4 px",
        "dynamic": dyn_scores, "static_baseline": static_scores,
        "image_formation": manifest.image_formation,
        "cycles_preview": cycles_scores,
        "object_psnr_gain_db": dyn_scores["psnr_object"] - static_scores["psnr_object"],
        "fit": {"dynamic": manifest.stats, "static": static_manifest.stats},
        "seconds": {"sample": t_sample - t_start, "backend_jobs": t_fit - t_sample,
                    "blender": t_blender - t_fit, "total": time.monotonic() - t_start},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log(f"dynamic: PSNR {dyn_scores['psnr']:.2f} dB (object {dyn_scores['psnr_object']:.2f}), "
        f"SSIM {dyn_scores['ssim']:.4f} (object {dyn_scores['ssim_object']:.4f})")
    log(f"Cycles preview (the imported asset, {cycles_scores['render']['samples']} samples): PSNR "
        f"{cycles_scores['psnr']:.2f} dB (object {cycles_scores['psnr_object']:.2f}), SSIM {cycles_scores['ssim']:.4f}; "
        f"vs the backend's render {cycles_scores['vs_backend']['psnr']:.2f} dB, colour bias "
        f"{cycles_scores['vs_backend']['colour_bias']:+.1f}/255")
    log(f"static baseline: PSNR {static_scores['psnr']:.2f} dB (object {static_scores['psnr_object']:.2f})")
    log(f"wrote {out / 'demo.blend'}, {out / 'preview.png'}, {out / 'heldout_comparison.png'}, "
        f"{out / 'metrics.json'} in {metrics['seconds']['total']:.0f} s")
    print(f"held-out PSNR: {dyn_scores['psnr']:.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
