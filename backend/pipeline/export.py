"""Export stage: per-frame Inria 3DGS PLY files plus ``manifest.json``, and the model itself.

Result folder layout (what the add-on's importer and ``backend render`` read)::

    manifest.json          format, frame_count, fps, times, sh_degree, gaussian_count,
                           frame_files, spec, stats
    frames/frame_0000.ply  one file per output frame, N Gaussians in the same order
    model.pt               the 4D model (evaluates at any t)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from backend.gaussians.ply import write_gaussians_ply
from backend.gaussians.model_io import load_gaussians4d
from backend.gaussians.trajectories import TrajectoryGaussians4D
from backend.pipeline.context import JobContext

RESULT_FORMAT = "gen4d-result"
RESULT_FORMAT_VERSION = 1
MODEL_FILE = "model.pt"


def output_times(frame_count: int) -> torch.Tensor:
    """Normalized times of ``frame_count`` output frames: frame i at ``i / (T − 1)``."""
    if frame_count < 1:
        raise ValueError("frame_count must be >= 1")
    if frame_count == 1:
        return torch.zeros(1)
    return torch.arange(frame_count, dtype=torch.float32) / (frame_count - 1)


def export_result(model: TrajectoryGaussians4D, out_dir: Path, frame_count: int, fps: float, spec: dict,
                  ctx: JobContext, stats: dict | None = None) -> dict:
    """Write the per-frame PLYs, the model and the manifest.

    Args:
        model: the fitted 4D Gaussians.
        out_dir: result folder (created).
        frame_count: output frames T, evaluated at :func:`output_times` (any T, not only
            the input frame count: the model is continuous in time).
        fps: playback rate recorded in the manifest.
        spec: the job spec, recorded in the manifest.
        stats: optional optimization statistics recorded in the manifest.

    Returns:
        The manifest dict.
    """
    out_dir = Path(out_dir)
    (out_dir / "frames").mkdir(parents=True, exist_ok=True)
    times = output_times(frame_count)
    files = []
    with torch.no_grad():
        for i, t in enumerate(times.tolist()):
            ctx.check_cancelled()
            g = model.at(torch.tensor([t], device=model.params["means"].device))
            name = f"frames/frame_{i:04d}.ply"
            write_gaussians_ply(out_dir / name, g.means[0].cpu().numpy(),
                                torch.nn.functional.normalize(g.quats[0], dim=-1).cpu().numpy(),
                                g.log_scales[0].cpu().numpy(), g.opacity_logits[0].cpu().numpy(),
                                g.sh[0].cpu().numpy())
            files.append(name)
            ctx.progress("export", i + 1, frame_count)
    torch.save(model.state(), out_dir / MODEL_FILE)
    manifest = {
        "format": RESULT_FORMAT, "format_version": RESULT_FORMAT_VERSION,
        "frame_count": frame_count, "fps": float(fps), "times": times.tolist(),
        "sh_degree": model.config.sh_degree, "gaussian_count": model.num_gaussians,
        "frame_files": files, "model_file": MODEL_FILE, "spec": spec,
        "stats": {k: v for k, v in (stats or {}).items() if k != "loss_curve"},
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if stats and "loss_curve" in stats:
        (out_dir / "loss_curve.json").write_text(json.dumps(stats["loss_curve"]))
    return manifest


def load_model(result_dir: Path):
    """Load the 4D model saved in a result folder (trajectory or HexPlane).

    Raises:
        FileNotFoundError: when the folder has no ``model.pt``.
    """
    path = Path(result_dir) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a gen4d result folder")
    return load_gaussians4d(torch.load(path, map_location="cpu", weights_only=True))
