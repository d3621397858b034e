"""Quality presets: the one table the backend and the add-on both read.

A preset is named by quality or by a training-time budget, never by device: the backend
picks the device itself (CUDA when present, else the CPU) and any preset runs on either.
Each preset holds overrides,
applied on top of the defaults of:

- ``reconstruct``: :class:`protocol.config.ReconstructConfig` (nested sections);
- ``multiview``: the Zero123++ stage's settings (``backend.pipeline.multiview_footage.MultiviewSettings``);
- ``generation``: text-to-image / image-to-video settings (``backend.pipeline.generate_video.GenerationSettings``);
- ``video``: video ingest — ``size`` (square frame side fed to the multi-view model, px)
  and ``max_frames``.

A job's own ``options`` / ``multiview`` / ``generation`` override the preset's.

==========  ===========================================================================
``tiny``    seconds on a CPU: structure tests only
``draft``   a quick look: 500 steps at 96 px, fewer diffusion steps (minutes on a CPU)
``standard`` the demo's settings: 1500 steps at 128 px, model-card diffusion steps
``3min``    a 3-minute fit: control points at 200 px, its schedule fitted into 175 s
            (D-NeRF, 2 CPU cores: 27.28 dB mean)
``15min``   a 15-minute fit: control points at 400 px, 3000 steps, stopped at 880 s
            (D-NeRF, 2 CPU cores: 31.87 dB mean; see :attr:`Preset.measured`)
``high``    full quality for a CUDA backend: 8000 steps at 512 px, up to 300k Gaussians
==========  ===========================================================================
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from .config import ReconstructConfig, apply_options
from .errors import InvalidOptionError


@dataclass(frozen=True)
class Preset:
    """One quality level.

    Attributes:
        label: what the add-on's panel shows.
        description: its tooltip.
        reconstruct: overrides of :class:`~protocol.config.ReconstructConfig` (nested dicts).
        multiview: overrides of the multi-view stage's settings.
        generation: overrides of the text/image-to-video stages' settings.
        video: ``{"size": px, "max_frames": n}`` for video ingest.
        measured: what ``benchmarks/dnerf.py`` measured with this preset, per device
            (``{"cpu-2": "…"}``: the device, D-NeRF mean PSNR, training time per scene and
            the results file); empty where it has not been run.
    """

    label: str
    description: str
    reconstruct: dict = field(default_factory=dict)
    multiview: dict = field(default_factory=dict)
    generation: dict = field(default_factory=dict)
    video: dict = field(default_factory=lambda: {"size": 320, "max_frames": 16})
    measured: dict = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        "Tiny", "Seconds on a CPU: for tests of the plumbing, not for looking at",
        reconstruct={"data": {"max_image_size": 32, "low_res_factor": 1},
                     "model": {"n_init": 300},
                     "optimization": {"iterations": 30, "batch_size": 2},
                     "densification": {"enabled": False},
                     "output": {"preview_every_s": 1.0}},
        multiview={"steps": 2, "grid_height": 48, "grid_width": 32},
        generation={"image_steps": 2, "image_size": 32, "video_steps": 2, "video_frames": 4, "video_height": 32,
                    "video_width": 32},
        video={"size": 16, "max_frames": 4}),
    "draft": Preset(
        "Draft", "A quick look: 500 steps at 96 px, fewer diffusion steps (minutes on a CPU)",
        reconstruct={"data": {"max_image_size": 96}, "optimization": {"iterations": 500}},
        multiview={"steps": 28},
        generation={"image_steps": 1, "video_steps": 12, "video_frames": 14}),
    "standard": Preset(
        "Standard", "The demo's settings: 1500 steps at 128 px, model-card diffusion steps"),
    "3min": Preset(
        "3 minutes", "Control points at 200 px, up to 1500 steps, the whole schedule fitted into 3 min of training "
        "(D-NeRF on 2 CPU cores: 27.28 dB)",
        reconstruct={"model": {"representation": "control_points"},
                     "data": {"max_image_size": 200},
                     "optimization": {"iterations": 1500, "time_budget_s": 175}},
        measured={"cpu-2": "D-NeRF, 8 scenes, 400 px, 2 CPU cores: 27.28 dB mean PSNR, SSIM 0.9522, "
                           "at most 175 s of training per scene (benchmarks/results/dnerf_cpu_3min_400px.json)"}),
    "15min": Preset(
        "15 minutes", "Control points at 400 px, 3000 steps, up to 30k Gaussians; stops at 15 min of training "
        "(D-NeRF on 2 CPU cores: 31.87 dB)",
        reconstruct={"model": {"representation": "control_points", "n_init": 10000},
                     "data": {"max_image_size": 400},
                     "optimization": {"iterations": 3000, "time_limit_s": 880},
                     "densification": {"max_gaussians": 30000}},
        measured={"cpu-2": "D-NeRF, 8 scenes, 400 px, 2 CPU cores: 31.87 dB mean PSNR, SSIM 0.9771, "
                           "at most 880 s of training per scene (benchmarks/results/dnerf_cpu_15min_400px.json)"}),
    "high": Preset(
        "High", "Full quality for a CUDA backend: 8000 steps at 512 px, up to 300k Gaussians",
        reconstruct={"data": {"max_image_size": 512},
                     "model": {"n_init": 20000},
                     "optimization": {"iterations": 8000, "batch_size": 8},
                     "densification": {"start": 500, "max_gaussians": 300000}},
        multiview={"steps": 75},
        generation={"video_frames": 25},
        video={"size": 320, "max_frames": 32}),
}

#: The preset a spec without ``"preset"`` gets.
DEFAULT_PRESET = "standard"


def get_preset(name: str | None) -> Preset:
    """The preset called ``name`` (None → :data:`DEFAULT_PRESET`).

    Raises:
        InvalidOptionError: code ``unknown_preset`` for an unknown name (the message
            lists the known ones).
    """
    name = DEFAULT_PRESET if name is None else name
    if not isinstance(name, str) or name not in PRESETS:
        raise InvalidOptionError(f"unknown preset {name!r}; choose one of {list(PRESETS)}", "unknown_preset")
    return PRESETS[name]


def reconstruct_config(preset: str | None = None, options: dict | None = None) -> ReconstructConfig:
    """The reconstruct settings of ``preset`` with a job's ``options`` on top.

    Args:
        preset: a key of :data:`PRESETS` (None → ``standard``).
        options: overrides in any form :func:`protocol.config.apply_options` accepts.

    Raises:
        InvalidOptionError: unknown preset, or an unknown / ill-typed / out-of-range option.
    """
    base = apply_options(ReconstructConfig(), get_preset(preset).reconstruct)
    return apply_options(base, options)


def stage_overrides(preset: str | None, stage: str, job_overrides: dict | None = None) -> dict:
    """The preset's overrides for ``stage`` (``"multiview"``, ``"generation"`` or
    ``"video"``) merged with the job's own (job wins); a new dict.

    Raises:
        InvalidOptionError: unknown preset or stage, or ``job_overrides`` not a dict.
    """
    p = get_preset(preset)
    if stage not in ("multiview", "generation", "video"):
        raise InvalidOptionError(f"unknown settings section {stage!r}")
    if job_overrides is not None and not isinstance(job_overrides, dict):
        raise InvalidOptionError(f"{stage!r} must be a JSON object of name: value, got {type(job_overrides).__name__}")
    return {**copy.deepcopy(getattr(p, stage)), **(job_overrides or {})}
