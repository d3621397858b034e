"""The temporal anchor's cache per denoising step at real size, with random weights.

Records one denoising step of Zero123++ v1.2 (its published architecture,
:func:`backend.models.architectures.build_random`) at the 960 × 640 grid with CFG 4, once
with STAG4D's token rule and once with the multi-view tokens only, and writes
``benchmarks/results/anchor_cache.json``. The cache's size does not depend on weight
values; 75 steps hold 75 × the per-step bytes (every step is anchored).

Run: ``PYTHONPATH=. python benchmarks/anchor_cache.py [--threads 2]`` (about 3 min and
11 GB RSS on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch

RESULT = Path(__file__).resolve().parent / "results" / "anchor_cache.json"
STEPS = 75


def main(argv: list[str] | None = None) -> dict:
    """Measure and write the JSON; returns it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from backend.models.architectures import build_random

    pipe = build_random("multiview", dtype=torch.float32, device="cpu")
    frame = np.random.default_rng(0).integers(0, 256, (320, 320, 4), dtype=np.uint8)
    res: dict = {}
    for rule in (True, False):
        start = time.time()
        pipe.anchor.stag4d_token_rule = rule
        pipe(frame, num_inference_steps=1, guidance_scale=4.0, height=960, width=640,
             generator=torch.Generator().manual_seed(0), anchor_mode="record")
        res[f"rule_{rule}"] = {"bytes_per_step_fp16": pipe.anchor.cache_bytes, "entries": len(pipe.anchor.cache),
                               "seconds": round(time.time() - start, 1)}
        pipe.anchor.clear()
    res.update({"bytes_75_steps_fp16_rule_True": res["rule_True"]["bytes_per_step_fp16"] * STEPS, "steps": STEPS,
                "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
                "what": "temporal anchor cache per denoising step, Zero123++ v1.2 at its published size with random "
                        "weights, 960x640, CFG 4, fp16 cache, one recorded step",
                "command": "PYTHONPATH=. python benchmarks/anchor_cache.py",
                "device": f"cpu, {args.threads} threads, fp32 UNet"})
    RESULT.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
