"""A stand-in for :func:`backend.pipeline.runner.run_job` that Ray workers import (the
``run_job`` test seam of :class:`backend.ray_executor.RayExecutor`), steered by the spec:

- ``name="ok"`` (default) or ``"ok:<seconds>"``: that many seconds (default 1.2) of
  progress steps, one preview, three frame files and a manifest;
- ``name="slow"``: up to 60 s of progress steps, checking the cancel flag every 0.05 s;
- ``name="crash"``: raises ``RuntimeError`` with a text that must never reach a client.
"""

from __future__ import annotations

import json
import time


def run_job(spec, input_dir, out_dir, ctx):
    """Fake job: see the module docstring. Returns the manifest dict it wrote."""
    mode, _, seconds = spec.get("name", "ok").partition(":")
    if mode == "crash":
        raise RuntimeError("secret /srv/path boom")
    if mode == "slow":
        for i in range(1200):
            ctx.check_cancelled()
            ctx.progress("reconstruct", i, 1200, loss=1.0 / (i + 1))
            time.sleep(0.05)
    steps = 6
    for i in range(steps + 1):
        ctx.check_cancelled()
        ctx.progress("reconstruct", i, steps, loss=0.5)
        if i < steps:
            time.sleep(float(seconds or 1.2) / steps)
    ctx.preview(b"\x89PNG fake")
    (out_dir / "frames").mkdir()
    for i in range(3):
        (out_dir / "frames" / f"frame_{i:04d}.ply").write_bytes(b"ply %d" % i)
    manifest = {"frame_count": 3, "inputs": sorted(p.name for p in input_dir.rglob("*") if p.is_file())}
    (out_dir / "manifest.json").write_text(json.dumps(manifest))
    return manifest
