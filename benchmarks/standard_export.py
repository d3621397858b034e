"""What other 3DGS tools show of a gen4d asset: the standard-formation PLY export.

A result fitted for Blender (``image_formation == "blender"``) is scored on held-out views
under its own formation, then as a standard 3DGS viewer shows it (the same Gaussians under
``"3dgs"``), then after :func:`backend.pipeline.reconstruct.refit_formation.refit_for_formation`
for each ``--steps`` (the refit the backend runs before writing ``frames_3dgs/``), with an
optional ``--keys`` subset of the per-Gaussian keys. PSNR full and object region, SSIM
(:mod:`backend.eval.metrics`), refit wall time. One process, ``--threads`` torch threads.

Writes ``benchmarks/results/standard_export_<tag>.json``.

Usage::

    python benchmarks/standard_export.py [--result out/demo/result] [--footage data/samples/wobble]
        [--steps 150 300 600] [--keys opacities sh0 shN] [--tag demo]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from backend.eval.metrics import score_images, summarize  # noqa: E402
from backend.pipeline.context import JobContext  # noqa: E402
from backend.pipeline.export import load_model  # noqa: E402
from backend.pipeline.ingest import load_footage  # noqa: E402
from backend.pipeline.reconstruct.refit_formation import refit_for_formation  # noqa: E402
from backend.pipeline.runner import checked_config  # noqa: E402
from backend.render.frames import render_rgba  # noqa: E402
from protocol.formats.image_formation import STANDARD_3DGS  # noqa: E402
from protocol.formats.manifest import read_manifest  # noqa: E402


def score(model, test) -> dict:
    """PSNR (full, object) and SSIM of ``model`` on the ``test`` footage, under its formation."""
    s = summarize(score_images(render_rgba(model, test.viewmats, test.Ks, test.times, test.width, test.height),
                               test.images))
    return {k: round(float(s[k]), 3) for k in ("psnr", "psnr_object", "ssim")}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--result", type=Path, default=ROOT / "out" / "demo" / "result")
    parser.add_argument("--footage", type=Path, default=ROOT / "data" / "samples" / "wobble")
    parser.add_argument("--steps", type=int, nargs="+", default=[150, 300, 600])
    parser.add_argument("--keys", nargs="*", default=None, help="per-Gaussian keys to refit (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tag", default="demo")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    manifest = read_manifest(args.result)
    cfg = checked_config(manifest.spec)  # the fit's own settings (preset and options)
    train = load_footage(args.footage, "train", max_size=cfg.data.max_image_size)
    test = load_footage(args.footage, "test", max_size=cfg.data.max_image_size)
    model = load_model(args.result)
    own = model.image_formation
    rows = {"result": str(args.result), "footage": str(args.footage), "image_formation": own,
            "fit_iterations": manifest.stats.get("iterations"), "own_formation": score(model, test)}
    model.image_formation = STANDARD_3DGS
    rows["as_fitted_under_3dgs"] = score(model, test)
    model.image_formation = own
    print(f"[standard_export] {own} under its own formation {rows['own_formation']}; "
          f"under 3dgs as fitted {rows['as_fitted_under_3dgs']}", flush=True)
    rows["refits"] = []
    for steps in args.steps:
        start = time.monotonic()
        refit, stats = refit_for_formation(model, train, cfg, STANDARD_3DGS, steps, JobContext(),
                                           keys=tuple(args.keys) if args.keys else None)
        row = {"steps": steps, "keys": args.keys or "all", "seconds": round(time.monotonic() - start, 2),
               "under_3dgs": score(refit, test)}
        rows["refits"].append(row)
        print(f"[standard_export] refit {steps} steps ({row['keys']}): {row['under_3dgs']} in {row['seconds']} s",
              flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"standard_export_{args.tag}.json").write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
