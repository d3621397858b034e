"""Write a synthetic gen4d result folder (no bpy): T frames of N Gaussians moving differently.

Used by the add-on tests and ``benchmarks/blender_import.py``."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from backend.gaussians.ply import write_gaussians_ply  # noqa: E402
from protocol.formats.manifest import Manifest, frame_file_name, write_manifest  # noqa: E402


def _quat_multiply(a: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Hamilton product ``a ⊗ q`` of one wxyz quaternion with ``[n, 4]`` ones."""
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = q.T
    return np.stack([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2],
                    axis=1).astype(np.float32)


def write_result(root, n=200, frames=3, seed=0, spread=0.3, log_scale=-3.0, opacity=2.0, jitter=0.3,
                 spin=0.0, sh_degree=0, sh_scale=0.4):
    """Write ``manifest.json`` + ``frames/frame_XXXX.ply`` (Inria 3DGS layout).

    Gaussian i sits at ``base + velocity·f + 0.02·f²·sin(base)`` in frame f (metres), so
    every Gaussian moves differently; its quaternion turns by ``spin·f`` radians about world
    Z (0: constant); scales, opacity and colour are constant.

    Args:
        root: output folder (created).
        n, frames: Gaussian and frame counts.
        seed: RNG seed.
        spread: standard deviation of the base positions (m).
        log_scale, jitter: log scales are ``log_scale ± U(jitter)``.
        opacity: opacity logit of every Gaussian (a float), or ``[n]`` logits.
        spin: rotation per frame about world Z (radians).
        sh_degree: SH degree of the colours (0–3); the higher coefficients are normal
            with standard deviation ``sh_scale``.

    Returns:
        the ``[n, 3]`` float32 means of each frame, as a list.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 3)).astype(np.float32) * spread
    velocity = rng.normal(size=(n, 3)).astype(np.float32) * 0.05
    quats = rng.normal(size=(n, 4)).astype(np.float32)
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    log_scales = np.full((n, 3), log_scale, np.float32) + rng.uniform(-jitter, jitter, (n, 3)).astype(np.float32)
    sh = rng.normal(size=(n, 1, 3)).astype(np.float32)
    if sh_degree > 0:
        rest = rng.normal(size=(n, (sh_degree + 1) ** 2 - 1, 3)).astype(np.float32) * np.float32(sh_scale)
        sh = np.concatenate([sh, rest], axis=1)
    opacities = np.broadcast_to(np.asarray(opacity, np.float32), (n,)).copy()
    files, means = [], []
    for i in range(frames):
        m = base + velocity * i + np.float32(0.02) * i * i * np.sin(base)
        rel = frame_file_name(i)
        half = 0.5 * spin * i
        turn = np.array([np.cos(half), 0.0, 0.0, np.sin(half)], np.float32)  # wxyz about Z
        q = _quat_multiply(turn, quats)
        write_gaussians_ply(root / rel, m, q, log_scales, opacities, sh)
        files.append(rel)
        means.append(m)
    write_manifest(root, Manifest(frame_count=frames, fps=24.0, sh_degree=sh_degree, gaussian_count=n,
                                  frame_files=files, spec={"job_type": "synthetic"}))
    return means
