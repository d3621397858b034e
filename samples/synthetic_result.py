"""Write a synthetic gen4d result folder (no bpy): T frames of N Gaussians moving differently."""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from backend.gaussians.ply import write_gaussians_ply  # noqa: E402


def write_result(root, n=200, frames=3, seed=0, spread=0.3, log_scale=-3.0, opacity=2.0, jitter=0.3):
    """Write ``manifest.json`` + ``frames/frame_XXXX.ply``; returns the list of means per frame."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 3)).astype(np.float32) * spread
    velocity = rng.normal(size=(n, 3)).astype(np.float32) * 0.05
    quats = rng.normal(size=(n, 4)).astype(np.float32)
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    log_scales = np.full((n, 3), log_scale, np.float32) + rng.uniform(-jitter, jitter, (n, 3)).astype(np.float32)
    sh = rng.normal(size=(n, 1, 3)).astype(np.float32)
    files, means = [], []
    for i in range(frames):
        m = base + velocity * i + np.float32(0.02) * i * i * np.sin(base)
        rel = f"frames/frame_{i:04d}.ply"
        write_gaussians_ply(root / rel, m, quats, log_scales, np.full(n, opacity, np.float32), sh)
        files.append(rel)
        means.append(m)
    manifest = {"format": "gen4d-result", "format_version": 1, "frame_count": frames, "fps": 24.0,
                "times": [i / max(frames - 1, 1) for i in range(frames)], "sh_degree": 0,
                "gaussian_count": n, "frame_files": files, "spec": {"job_type": "synthetic"}}
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return means
