"""CPU rasterizer speed: forward + backward of the pure-PyTorch rasterizer on one training
step's worth of images, at the reconstruction's initial state on the sample footage.

Prints a table and writes ``benchmarks/results/rasterize_cpu.json`` (median seconds per
step over repeats, steps per second, peak RSS, pair counts), so runs can be compared.

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
from backend.pipeline.reconstruct import ReconstructConfig, init_model, render_frames  # noqa: E402
from backend.render import torch_rasterizer  # noqa: E402


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
    cfg = ReconstructConfig.from_options("cpu", {"n_init": args.n_init})
    gen = torch.Generator().manual_seed(0)
    model = init_model(footage, cfg, gen)

    def step() -> None:
        idx = torch.randint(0, len(footage), (args.batch,), generator=gen)
        bg = torch.rand(args.batch, 3, generator=gen)
        colors, alphas, _ = render_frames(model, footage.times[idx], footage.viewmats[idx], footage.Ks[idx],
                                          footage.width, footage.height, bg)
        gt = footage.images[idx]
        gt_rgb = gt[..., :3] * gt[..., 3:] + (1 - gt[..., 3:]) * bg[:, None, None, :]
        (image_loss(colors, gt_rgb) + 0.5 * alpha_loss(alphas, gt[..., 3:])).backward()

    for _ in range(3):
        step()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    with torch.no_grad():
        idx = torch.arange(args.batch)
        g = model.at(footage.times[idx]).rasterization_inputs()
        m2, con, depth, radii = torch_rasterizer.project_gaussians(
            g["means"], g["quats"], g["scales"], g["opacities"], footage.viewmats[idx], footage.Ks[idx],
            footage.width, footage.height)
        candidates = len(torch_rasterizer._pixel_pairs(m2, radii, footage.width, footage.height)[0])
        used = len(torch_rasterizer._visible_pairs(m2, con, depth, radii, g["opacities"], footage.width,
                                                   footage.height)[0])
    median = statistics.median(times)
    row = {
        "footage": str(args.footage), "image_size": [footage.width, footage.height], "batch": args.batch,
        "n_gaussians": model.num_gaussians, "threads": args.threads, "repeats": args.repeats,
        "median_s_per_step": median, "steps_per_s": 1.0 / median,
        "min_s": min(times), "max_s": max(times),
        "candidate_pairs": candidates, "contributing_pairs": used,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(row, indent=2))
    print(f"{row['n_gaussians']} Gaussians, {args.batch} x {footage.width}x{footage.height} images: "
          f"median {median:.3f} s/step ({row['steps_per_s']:.2f} steps/s), "
          f"{candidates} candidate / {used} contributing pairs, peak RSS {row['peak_rss_mb']:.0f} MB")
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
