"""Runs one job's stages in order: the single code path for ``serve`` and ``run``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from backend.errors import JobError
from backend.pipeline.context import JobContext
from backend.pipeline.export import export_result
from backend.pipeline.ingest import load_footage
from backend.pipeline.reconstruct import ReconstructConfig, reconstruct

JOB_TYPES = ("footage", "video", "image", "prompt", "orbital")

#: model roles each generation job type needs (checked before any work starts).
JOB_MODEL_ROLES = {"video": ["multiview"], "image": ["image_to_video", "multiview"],
                   "prompt": ["text_to_image", "image_to_video", "multiview"]}

#: per-preset generation settings: (multi-view overrides, prompt/image generation
#: overrides, multi-view input size, max frames).
GENERATION_PRESETS = {
    "tiny": ({"steps": 2, "grid_height": 48, "grid_width": 32},
             {"image_steps": 2, "image_size": 32, "video_steps": 2, "video_frames": 4, "video_height": 32,
              "video_width": 32}, 16, 4),
    "cpu": ({}, {}, 320, 16),
    "gpu": ({}, {}, 320, 32),
}


def pick_device(preset: str) -> str:
    """``"cuda"`` when a GPU is present, else ``"cpu"`` (any preset runs on either)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _settings(cls, base: dict, user: dict | None):
    from dataclasses import fields

    known = {f.name for f in fields(cls)}
    return cls(**{**base, **{k: v for k, v in (user or {}).items() if k in known}})


def uploaded_file(spec: dict, input_dir: Path, key: str) -> Path:
    """The uploaded file named by ``spec[key]`` inside ``input_dir``.

    Raises:
        BadInputError: the name is missing, has a folder part, or the file is absent.
    """
    from backend.errors import BadInputError

    name = spec.get(key)
    job_type = spec.get("job_type")
    if not name or Path(name).name != name:
        raise BadInputError(f"a {job_type} job needs spec[{key!r}], the uploaded file's name")
    path = Path(input_dir) / name
    if not path.is_file():
        raise BadInputError(f"the uploaded {key} {name!r} is missing")
    return path


def ingest_video(spec: dict, path: Path, size: int, max_frames: int, device: str, ctx: JobContext):
    """Decode, mask and crop an uploaded video (``video`` and ``orbital`` jobs).

    Masks come from the video's alpha, else the optional ``background_removal`` model when
    it is installed, else the OpenCV fallback (:mod:`backend.pipeline.video_ingest`).
    ``spec`` keys read: ``models``, ``video_fps``, ``max_frames``, ``mask_prompt``.

    Returns:
        :class:`~backend.pipeline.video_ingest.VideoFrames` (``size`` px square frames).

    Raises:
        BadInputError: unreadable video, too few frames, no object found.
    """
    from backend.models import registry
    from backend.pipeline.video_ingest import load_video

    models = spec.get("models")
    ctx.progress("video_ingest", 0, 1, message=f"decoding {path.name}")
    remover = None
    if registry.resolve("background_removal", models).present:  # optional: used when installed
        ctx.progress("video_ingest", 0, 1, message="loading the background-removal model")
        remover = registry.load("background_removal", models, device=device)
    frames = load_video(path, size=size, fps=spec.get("video_fps"),
                        max_frames=int(spec.get("max_frames", max_frames)), remover=remover,
                        mask_prompt=spec.get("mask_prompt"))
    del remover
    ctx.progress("video_ingest", 1, 1, message=f"{len(frames.images)} frames, masks from {frames.mask_source}")
    return frames


def orbital_footage(spec: dict, input_dir: Path, footage_dir: Path, max_image_size: int,
                    ctx: JobContext) -> Path:
    """The ``orbital`` job's ingest (Diffusion4D input): ``spec["video"]`` orbits the object,
    ``spec["orbit"]`` describes the orbit (:class:`~backend.pipeline.orbital_video.OrbitSettings`);
    every frame becomes one camera at one time in transforms footage under ``footage_dir``.
    No model is needed (the background-removal model is used when installed).

    Raises:
        BadInputError: missing or unreadable video, bad orbit settings.
    """
    from backend.pipeline.orbital_video import OrbitSettings, write_orbital_footage

    orbit = OrbitSettings.from_spec(spec.get("orbit"))
    path = uploaded_file(spec, input_dir, "video")
    frames = ingest_video(spec, path, max_image_size, int(spec.get("max_frames", 48)),
                          pick_device(spec.get("preset", "cpu")), ctx)
    return write_orbital_footage(frames, orbit, footage_dir)


def generate_footage(spec: dict, input_dir: Path, footage_dir: Path, ctx: JobContext) -> Path:
    """The stages in front of reconstruction for ``video``, ``image`` and ``prompt`` jobs,
    ending in anchored multi-view footage written to ``footage_dir``.

    - ``video``: ``spec["video"]`` (a file name in ``input_dir``) is decoded and masked;
    - ``image``: ``spec["image"]`` (a file name in ``input_dir``) goes through SVD;
    - ``prompt``: ``spec["prompt"]`` goes through text-to-image, then SVD.

    Models come from the registry (``spec["models"]`` overrides sources); every model the
    job needs is checked before any work starts. ``spec["multiview"]`` and
    ``spec["generation"]`` override :class:`MultiviewSettings` / :class:`GenerationSettings`.

    Raises:
        BadInputError: missing/unreadable input. ModelMissingError: a model is not on disk.
    """
    from backend.models import registry
    from backend.pipeline.generate_video import (GenerationSettings, image_to_frames, load_image_rgba,
                                                 prompt_to_image)
    from backend.pipeline.multiview_footage import MultiviewSettings, write_multiview_footage

    job_type = spec["job_type"]
    models = spec.get("models")
    registry.require(JOB_MODEL_ROLES[job_type], models)
    preset = spec.get("preset", "cpu")
    device = pick_device(preset)
    mv_base, gen_base, size, max_frames = GENERATION_PRESETS.get(preset, GENERATION_PRESETS["cpu"])
    mv_settings = _settings(MultiviewSettings, mv_base, spec.get("multiview"))
    gen_settings = _settings(GenerationSettings, gen_base, spec.get("generation"))

    if job_type == "video":
        frames = ingest_video(spec, uploaded_file(spec, input_dir, "video"), size, max_frames, device, ctx)
    else:
        if job_type == "prompt":
            pipe = registry.load("text_to_image", models, device=device)
            image = prompt_to_image(str(spec.get("prompt", "")), pipe, gen_settings, ctx)
            image = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], -1)
            del pipe
        else:
            path = uploaded_file(spec, input_dir, "image")
            image = load_image_rgba(path.read_bytes(), path.name)
        pipe = registry.load("image_to_video", models, device=device)
        frames = image_to_frames(image, pipe, gen_settings, size, ctx)
        del pipe
    ctx.check_cancelled()
    ctx.progress("multiview", 0, 1, message="loading the multi-view model")
    pipe = registry.load("multiview", models, device=device)
    footage_dir, _ = write_multiview_footage(frames, pipe, footage_dir, mv_settings, ctx)
    return footage_dir


def run_job(spec: dict, input_dir: Path, out_dir: Path, ctx: JobContext) -> dict:
    """Run a job and write its result.

    Args:
        spec: job spec ``{"job_type": "footage" | "video", "preset": "cpu", "options": {...},
            "frame_count": T (optional), "fps": 24 (optional)}``; ``options`` override
            :class:`~backend.pipeline.reconstruct.ReconstructConfig` fields. Generation
            jobs (``"video"``, ``"image"``, ``"prompt"``) carry their input
            (:func:`generate_footage`); ``"orbital"`` jobs carry an orbital video and
            ``spec["orbit"]`` (:func:`orbital_footage`).
        input_dir: folder holding the uploaded input (``transforms_train.json`` + images,
            or the video).
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
    from backend.models import registry

    guidance = None
    if cfg.sds_weight > 0:  # every model the job needs is checked before any work starts
        registry.require(JOB_MODEL_ROLES.get(job_type, []) + ["sds_guidance"], spec.get("models"))
    if job_type in JOB_MODEL_ROLES:
        input_dir = generate_footage(spec, Path(input_dir), Path(out_dir) / "generated_footage", ctx)
    elif job_type == "orbital":
        input_dir = orbital_footage(spec, Path(input_dir), Path(out_dir) / "generated_footage",
                                    cfg.max_image_size, ctx)
    if cfg.sds_weight > 0:
        guidance = registry.load("sds_guidance", spec.get("models"))
    ctx.progress("ingest", 0, 1, message="reading footage")
    footage = load_footage(Path(input_dir), "train", max_size=cfg.max_image_size)
    ctx.progress("ingest", 1, 1, message=f"{len(footage)} images, {footage.width}x{footage.height}")
    ctx.check_cancelled()
    model, stats = reconstruct(footage, cfg, ctx, device=pick_device(spec.get("preset", "cpu")), guidance=guidance)
    frame_count = int(spec.get("frame_count") or len(footage.unique_times()))
    fps = float(spec.get("fps", 24.0))
    return export_result(model, Path(out_dir), frame_count, fps, spec, ctx, stats)
