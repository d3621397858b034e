"""Runs one job's stages in order: the single code path for ``serve`` and ``run``.

The spec is checked by :func:`protocol.job_spec.validate_job_spec` (the same check the
server makes at submit and the add-on makes before sending); presets come from
:mod:`protocol.presets`, the one table the add-on reads too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from backend.errors import JobError
from backend.pipeline.context import JobContext
from backend.pipeline.export import export_result
from backend.pipeline.ingest import load_footage
from backend.pipeline.reconstruct import reconstruct
from backend.pipeline.reconstruct.refit_formation import refit_for_formation
from protocol.formats.image_formation import STANDARD_3DGS
from protocol.config import apply_options
from protocol.errors import InvalidOptionError
from protocol.job_spec import JOB_TYPES, validate_job_spec
from protocol.presets import stage_overrides

__all__ = ["JOB_TYPES", "JOB_MODEL_ROLES", "pick_device", "checked_config", "load_model", "run_job"]

#: model roles each generation job type needs (checked before any work starts).
JOB_MODEL_ROLES = {"video": ["multiview"], "image": ["image_to_video", "multiview"],
                   "prompt": ["text_to_image", "image_to_video", "multiview"]}


def pick_device() -> str:
    """``"cuda"`` when a GPU is present, else ``"cpu"``; every preset runs on either."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def checked_config(spec: dict):
    """:func:`protocol.job_spec.validate_job_spec` with its error as a :class:`JobError`.

    Returns:
        The job's :class:`protocol.config.ReconstructConfig`.

    Raises:
        JobError: ``invalid_option``, ``unknown_preset`` or ``unknown_job_type``, naming
            the offending key.
    """
    try:
        return validate_job_spec(spec)
    except InvalidOptionError as exc:
        raise JobError(exc.code, exc.message) from None


def load_model(role: str, spec: dict, device: str, ctx: JobContext, stage: str, plans: dict | None = None,
               settings=None, reserved_bytes: int = 0):
    """``role``'s model through :func:`backend.models.registry.load`, under the job's memory plan.

    The budget is ``options.memory.vram_budget_gb`` (the spec's
    :class:`protocol.config.MemoryConfig`), else on a CUDA device the GPU's total memory
    (:func:`backend.models.memory.auto_budget_gb`). Without either (the CPU) the model
    loads as it always has (as saved, all on ``device``). With a budget, :func:`backend.models.memory.plan_for` picks the plan whose
    ESTIMATED peak fits (host-side estimate, not a measurement); the model is loaded on the
    CPU in the plan's dtype and :func:`backend.models.memory.apply_plan` puts it on
    ``device`` (offload is skipped, with a log line, when ``device`` is the CPU). The plan is
    reported as a progress message of ``stage`` and stored in ``plans[role]``.

    Args:
        settings: :class:`backend.models.memory.StageSettings` (None: defaults).
        reserved_bytes: accelerator memory other work holds meanwhile.

    Raises:
        ModelMissingError, JobError: as :func:`backend.models.registry.load`;
            ``invalid_option`` for a bad budget.
    """
    from backend.models import registry

    from backend.models.memory import apply_plan, auto_budget_gb, plan_for

    budget = checked_config(spec).memory.vram_budget_gb
    if budget is None:
        budget = auto_budget_gb(device)
    if budget is None:
        return registry.load(role, spec.get("models"), device=device)

    plan = plan_for(budget, device, role, settings, reserved_bytes)
    model = registry.load(role, spec.get("models"), device="cpu", dtype=plan.torch_dtype)
    actions = apply_plan(model, plan, device)
    ctx.progress(stage, 0, 1, message=f"memory plan for {role}: {plan.describe()}")
    if plans is not None:
        plans[role] = {**plan.to_dict(), "device": str(device), "applied": actions}
    return model


def stage_settings(spec: dict, stage: str, defaults):
    """The settings dataclass of a generation stage: ``defaults`` with the preset's
    overrides, then the job's own ``spec[stage]``, applied strictly.

    Raises:
        JobError: ``invalid_option`` for an unknown or ill-typed setting.
    """
    try:
        return apply_options(defaults, stage_overrides(spec.get("preset"), stage, spec.get(stage)))
    except InvalidOptionError as exc:
        raise JobError(exc.code, f"{stage}: {exc.message}") from None


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


def ingest_video(spec: dict, path: Path, size: int, max_frames: int, device: str, ctx: JobContext,
                 plans: dict | None = None):
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
        remover = load_model("background_removal", spec, device, ctx, "video_ingest", plans)
    frames = load_video(path, size=size, fps=spec.get("video_fps"),
                        max_frames=int(spec.get("max_frames") or max_frames), remover=remover,
                        mask_prompt=spec.get("mask_prompt"), check_cancelled=ctx.check_cancelled)
    del remover
    ctx.progress("video_ingest", 1, 1, message=f"{len(frames.images)} frames, masks from {frames.mask_source}")
    return frames


def orbital_footage(spec: dict, input_dir: Path, footage_dir: Path, max_image_size: int,
                    ctx: JobContext, plans: dict | None = None) -> Path:
    """The ``orbital`` job's ingest (Diffusion4D input): ``spec["video"]`` orbits the object,
    ``spec["orbit"]`` describes the orbit (:class:`protocol.config.OrbitConfig`);
    every frame becomes one camera at one time in transforms footage under ``footage_dir``.
    No model is needed (the background-removal model is used when installed).

    Raises:
        BadInputError: missing or unreadable video, bad orbit settings.
    """
    from backend.pipeline.orbital_video import orbit_settings, write_orbital_footage

    orbit = orbit_settings(spec.get("orbit"))
    path = uploaded_file(spec, input_dir, "video")
    frames = ingest_video(spec, path, max_image_size, int(spec.get("max_frames") or 48), pick_device(), ctx, plans)
    return write_orbital_footage(frames, orbit, footage_dir)


def generate_footage(spec: dict, input_dir: Path, footage_dir: Path, ctx: JobContext,
                     plans: dict | None = None) -> Path:
    """The stages in front of reconstruction for ``video``, ``image`` and ``prompt`` jobs,
    ending in anchored multi-view footage written to ``footage_dir``.

    - ``video``: ``spec["video"]`` (a file name in ``input_dir``) is decoded and masked;
    - ``image``: ``spec["image"]`` (a file name in ``input_dir``) goes through SVD;
    - ``prompt``: ``spec["prompt"]`` goes through text-to-image, then SVD.

    Models come from the registry (``spec["models"]`` overrides sources); every model the
    job needs is checked before any work starts. ``spec["multiview"]`` and
    ``spec["generation"]`` override :class:`MultiviewSettings` / :class:`GenerationSettings`.
    Models load under the job's memory plan (:func:`load_model`); each plan goes to ``plans``.

    Raises:
        BadInputError: missing/unreadable input. ModelMissingError: a model is not on disk.
    """
    from backend.models import registry
    from backend.models.memory import settings_for
    from backend.pipeline.generate_video import (GenerationSettings, image_to_frames, load_image_rgba,
                                                 prompt_to_image)
    from backend.pipeline.multiview_footage import MultiviewSettings, write_multiview_footage

    job_type = spec["job_type"]
    models = spec.get("models")
    mv_settings = stage_settings(spec, "multiview", MultiviewSettings())
    gen_settings = stage_settings(spec, "generation", GenerationSettings())
    registry.require(JOB_MODEL_ROLES[job_type], models)
    device = pick_device()
    video = stage_overrides(spec.get("preset"), "video")
    size, max_frames = int(video["size"]), int(video["max_frames"])

    if job_type == "video":
        frames = ingest_video(spec, uploaded_file(spec, input_dir, "video"), size, max_frames, device, ctx, plans)
    else:
        if job_type == "prompt":
            pipe = load_model("text_to_image", spec, device, ctx, "text_to_image", plans,
                              settings_for("text_to_image", gen_settings, mv_settings))
            image = prompt_to_image(str(spec.get("prompt", "")), pipe, gen_settings, ctx)
            image = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], -1)
            del pipe
        else:
            path = uploaded_file(spec, input_dir, "image")
            image = load_image_rgba(path.read_bytes(), path.name)
        pipe = load_model("image_to_video", spec, device, ctx, "image_to_video", plans,
                          settings_for("image_to_video", gen_settings, mv_settings))
        plan = getattr(pipe, "memory_plan", None)
        frames = image_to_frames(image, pipe, gen_settings, size, ctx,
                                 decode_chunk_size=getattr(plan, "decode_chunk_size", None))
        del pipe
    ctx.check_cancelled()
    ctx.progress("multiview", 0, 1, message="loading the multi-view model")
    pipe = load_model("multiview", spec, device, ctx, "multiview", plans,
                      settings_for("multiview", gen_settings, mv_settings))
    footage_dir, _ = write_multiview_footage(frames, pipe, footage_dir, mv_settings, ctx)
    return footage_dir


def run_job(spec: dict, input_dir: Path, out_dir: Path, ctx: JobContext) -> dict:
    """Run a job and write its result.

    Args:
        spec: job spec (:mod:`protocol.job_spec`) ``{"job_type": "footage", "preset":
            "standard", "options": {...}, "frame_count": T (optional), "fps": 24
            (optional)}``; ``options`` override :class:`protocol.config.ReconstructConfig`. Generation
            jobs (``"video"``, ``"image"``, ``"prompt"``) carry their input
            (:func:`generate_footage`); ``"orbital"`` jobs carry an orbital video and
            ``spec["orbit"]`` (:func:`orbital_footage`).
        input_dir: folder holding the uploaded input (``transforms_train.json`` + images,
            or the video).
        out_dir: result folder; receives ``manifest.json``, ``frames/frame_0000.ply`` ...
            With ``options.memory.vram_budget_gb`` the manifest's stats hold
            ``memory_plans``: each model role's plan and its ESTIMATED peak (host-side).
        ctx: progress/preview callbacks and the cancel flag.

    Returns:
        The manifest dict that was written to ``out_dir/manifest.json``.

    Raises:
        BadInputError: malformed input (missing image, bad camera JSON, not an image).
        JobError: ``invalid_option``, ``unknown_preset``, ``unknown_job_type``,
            ``out_of_memory``, ``model_missing``.
        JobCancelled: when ``ctx.cancel_event`` is set.
    """
    cfg = checked_config(spec)
    job_type = spec.get("job_type", "footage")
    from backend.models import registry

    guidance = None
    plans: dict = {}  # memory plan per role, when the job has a VRAM budget
    if cfg.losses.sds_weight > 0:  # every model the job needs is checked before any work starts
        registry.require(JOB_MODEL_ROLES.get(job_type, []) + ["sds_guidance"], spec.get("models"))
    if job_type in JOB_MODEL_ROLES:
        input_dir = generate_footage(spec, Path(input_dir), Path(out_dir) / "generated_footage", ctx, plans)
    elif job_type == "orbital":
        input_dir = orbital_footage(spec, Path(input_dir), Path(out_dir) / "generated_footage",
                                    cfg.data.max_image_size, ctx, plans)
    if cfg.losses.sds_weight > 0:
        from backend.models.memory import measured_reconstruct_peak_bytes

        from backend.models.memory import auto_budget_gb

        budgeted = cfg.memory.vram_budget_gb is not None or auto_budget_gb(pick_device()) is not None
        reserve = measured_reconstruct_peak_bytes() if budgeted else None  # the fit runs beside SDS
        # without a budget: loaded on the CPU as before; the reconstruct stage moves it
        guidance = load_model("sds_guidance", spec, pick_device() if budgeted else "cpu", ctx, "ingest", plans,
                              reserved_bytes=reserve[0] if reserve else 0)
    ctx.progress("ingest", 0, 1, message="reading footage")
    footage = load_footage(Path(input_dir), "train", max_size=cfg.data.max_image_size,
                           check_cancelled=ctx.check_cancelled)
    ctx.progress("ingest", 1, 1, message=f"{len(footage)} images, {footage.width}x{footage.height}")
    ctx.check_cancelled()
    model, stats = reconstruct(footage, cfg, ctx, device=pick_device(), guidance=guidance)
    if plans:
        stats = {**stats, "memory_plans": plans}
    frame_count = int(spec.get("frame_count") or len(footage.unique_times()))
    fps = float(spec.get("fps", 24.0))
    standard = None
    refit_steps = round(cfg.output.standard_ply_refit * stats["iterations"])
    if model.image_formation != STANDARD_3DGS and refit_steps > 0:
        standard, refit_stats = refit_for_formation(model, footage, cfg, STANDARD_3DGS, refit_steps, ctx,
                                                    device=pick_device())
        stats = {**stats, "standard_ply_refit": refit_stats}
    return export_result(model, Path(out_dir), frame_count, fps, spec, ctx, stats, standard_model=standard)
