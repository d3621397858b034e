"""CPU rasterizer speed: forward + backward of one training step's worth of images (the
image loss included), for the pure-PyTorch reference rasterizer and the compiled Numba
one, at the reconstruction's initial state on the sample footage.

Prints one line per implementation and writes ``benchmarks/results/rasterize_cpu.json``
(per implementation: median seconds per step over repeats, steps per second; plus pair
counts, peak RSS and the speed-up ratio), so runs can be compared.

Usage: ``python benchmarks/rasterize_cpu.py [--footage data/samples/wobble] [--batch 4]
[--n-init 4000] [--repeats 15] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from backend.optim.losses import alpha_loss, image_loss  # noqa: E402
from backend.pipeline.ingest import load_footage  # noqa: E402
from backend.pipeline.reconstruct import init_model  # noqa: E402
from backend.render import torch_rasterizer  # noqa: E402
from backend.render.numba_rasterizer import rasterize_numba  # noqa: E402
from protocol.presets import reconstruct_config  # noqa: E402
from protocol.formats.compositing import composite_over  # noqa: E402

IMPLEMENTATIONS = {"torch": torch_rasterizer.rasterize_torch, "numba": rasterize_numba}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--footage", type=Path, default=ROOT / "data" / "samples" / "wobble")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--n-init", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "rasterize_cpu.json")
    args = parser.parse_args()
    if not (args.footage / "transforms_train.json").is_file():
        print(f"no footage at {args.footage}: run `python -m samples.make_scene --scene wobble` first",
              file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    footage = load_footage(args.footage, "train", 128)
    cfg = reconstruct_config("standard", {"n_init": args.n_init})
    gen = torch.Generator().manual_seed(0)
    model = init_model(footage, cfg.model, gen)

    def step(raster) -> None:
        idx = torch.randint(0, len(footage), (args.batch,), generator=gen)
        bg = torch.rand(args.batch, 3, generator=gen)
        g = model.at(footage.times[idx]).rasterization_inputs()
        colors, alphas, _ = raster(**g, viewmats=footage.viewmats[idx], Ks=footage.Ks[idx],
                                   width=footage.width, height=footage.height, backgrounds=bg)
        gt = footage.images[idx]
        gt_rgb = composite_over(gt, bg)
        (image_loss(colors, gt_rgb) + 0.5 * alpha_loss(alphas, gt[..., 3:])).backward()

    medians = {}
    for name, raster in IMPLEMENTATIONS.items():
        for _ in range(3):  # warm-up (Numba loads or compiles its kernels here)
            step(raster)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            step(raster)
            times.append(time.perf_counter() - t0)
        medians[name] = statistics.median(times)
    with torch.no_grad():
        idx = torch.arange(args.batch)
        g = model.at(footage.times[idx]).rasterization_inputs()
        m2, con, depth, radii, _ = torch_rasterizer.project_gaussians(
            g["means"], g["quats"], g["scales"], g["opacities"], footage.viewmats[idx], footage.Ks[idx],
            footage.width, footage.height)
        candidates = len(torch_rasterizer._pixel_pairs(m2, radii, footage.width, footage.height)[0])
        used = len(torch_rasterizer._visible_pairs(m2, con, depth, radii, g["opacities"], footage.width,
                                                   footage.height)[0])
    row = {
        "footage": str(args.footage), "image_size": [footage.width, footage.height], "batch": args.batch,
        "n_gaussians": model.num_gaussians, "threads": args.threads, "repeats": args.repeats,
        "median_s_per_step": medians, "steps_per_s": {k: 1.0 / v for k, v in medians.items()},
        "speedup_numba_over_torch": medians["torch"] / medians["numba"],
        "candidate_pairs": candidates, "contributing_pairs": used,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(row, indent=2))
    for name, median in medians.items():
        print(f"{name:6s} {row['n_gaussians']} Gaussians, {args.batch} x {footage.width}x{footage.height} images: "
              f"median {median:.3f} s/step ({1.0 / median:.2f} steps/s)")
    print(f"numba / torch speed-up {row['speedup_numba_over_torch']:.2f}x; {candidates} candidate / {used} "
          f"contributing pairs; peak RSS {row['peak_rss_mb']:.0f} MB")
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
