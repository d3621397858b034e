"""Fit the demo footage once per image formation and score each on the held-out cameras
(gen4d issue 15): does training the way Blender renders (``"blender"``: linear-light
blending, no 2D dilation) cost held-out fidelity against ground truth?

Each fit is ``python -m backend run --input <footage> --preset standard --option
model.image_formation=<f>`` (the demo's dynamic job); scoring is the demo's
(``scripts/demo.py`` ``score_result``: test cameras, all times, on white, full image and
object region), each asset rendered with the formation it was fitted for.

Usage: ``python benchmarks/image_formation_fit.py [--footage data/samples/wobble]
[--out out/image_formation] [--formations blender 3dgs]``; writes ``<out>/results.json``.
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


def fit(footage: Path, out: Path, formation: str, preset: str) -> float:
    """Run the reconstruct job; returns its wall time (s)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "backend", "run", "--input", str(footage), "--out", str(out),
                    "--preset", preset, "--option", f"model.image_formation={formation}"],
                   cwd=ROOT, env=env, check=True)
    return time.monotonic() - t0


def score(result: Path, footage: Path) -> dict:
    """The demo's held-out scores of one result folder."""
    from backend.eval.metrics import score_images, summarize
    from backend.pipeline.export import load_model
    from backend.pipeline.ingest import load_footage
    from backend.render.frames import render_rgba

    test = load_footage(footage, "test")
    model = load_model(result)
    pred = render_rgba(model, test.viewmats, test.Ks, test.times, test.width, test.height)
    return {"image_formation": model.image_formation, **summarize(score_images(pred, test.images))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--footage", type=Path, default=ROOT / "data" / "samples" / "wobble")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "image_formation")
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--formations", nargs="+", default=["blender", "3dgs"])
    args = parser.parse_args(argv)
    results = {}
    path = args.out / "results.json"
    if path.is_file():
        results = json.loads(path.read_text())
    for formation in args.formations:
        result = args.out / formation
        seconds = fit(args.footage, result, formation, args.preset)
        results[formation] = {"fit_seconds": seconds, **score(result, args.footage)}
        print(json.dumps({formation: results[formation]}), flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
