"""Runs one job's stages in order: the single code path for ``serve`` and ``run``."""

from __future__ import annotations

from pathlib import Path

import torch

from backend.errors import JobError
from backend.pipeline.context import JobContext
from backend.pipeline.export import export_result
from backend.pipeline.ingest import load_footage
from backend.pipeline.reconstruct import ReconstructConfig, reconstruct

JOB_TYPES = ("footage",)


def pick_device(preset: str) -> str:
    """``"cuda"`` when a GPU is present, else ``"cpu"`` (any preset runs on either)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def run_job(spec: dict, input_dir: Path, out_dir: Path, ctx: JobContext) -> dict:
    """Run a job and write its result.

    Args:
        spec: job spec ``{"job_type": "footage", "preset": "cpu", "options": {...},
            "frame_count": T (optional), "fps": 24 (optional)}``; ``options`` override
            :class:`~backend.pipeline.reconstruct.ReconstructConfig` fields.
        input_dir: folder holding the uploaded input (``transforms_train.json`` + images).
        out_dir: result folder; receives ``manifest.json``, ``frames/frame_0000.ply`` ...
        ctx: progress/preview callbacks and the cancel flag.

    Returns:
        The manifest dict that was written to ``out_dir/manifest.json``.

    Raises:
        BadInputError: malformed input (missing image, bad camera JSON, not an image).
        JobError: ``unknown_job_type``, ``unknown_preset``, ``invalid_option``,
            ``out_of_memory``.
        JobCancelled: when ``ctx.cancel_event`` is set.
    """
    job_type = spec.get("job_type", "footage")
    if job_type not in JOB_TYPES:
        raise JobError("unknown_job_type", f"unknown job type {job_type!r}; this backend runs {list(JOB_TYPES)}")
    cfg = ReconstructConfig.from_options(spec.get("preset", "cpu"), spec.get("options"))
    ctx.progress("ingest", 0, 1, message="reading footage")
    footage = load_footage(Path(input_dir), "train", max_size=cfg.max_image_size)
    ctx.progress("ingest", 1, 1, message=f"{len(footage)} images, {footage.width}x{footage.height}")
    ctx.check_cancelled()
    model, stats = reconstruct(footage, cfg, ctx, device=pick_device(spec.get("preset", "cpu")))
    frame_count = int(spec.get("frame_count") or len(footage.unique_times()))
    fps = float(spec.get("fps", 24.0))
    return export_result(model, Path(out_dir), frame_count, fps, spec, ctx, stats)
