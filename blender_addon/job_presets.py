"""The panel's quality presets (Draft / Standard / High) and Advanced overrides, mapped to
the job spec the backend reads. Pure Python (no bpy), so it is unit-tested directly.

A spec carries:

- ``preset``: the backend's reconstruction / generation preset (``cpu`` or ``gpu``, see
  ``backend.pipeline.reconstruct.PRESETS`` and ``backend.pipeline.runner.GENERATION_PRESETS``);
- ``options``: reconstruction overrides (``ReconstructConfig`` fields: iterations,
  max_image_size, representation, ...);
- ``multiview`` / ``generation``: overrides for the Zero123++ stage (denoising steps) and
  the text-to-image / image-to-video stages (steps, resolution).
"""

from __future__ import annotations

#: name -> (label, description, spec fragment).
PRESETS: dict[str, tuple[str, str, dict]] = {
    "DRAFT": ("Draft", "A quick look: 500 steps at 96 px, fewer diffusion steps (minutes on a CPU)", {
        "preset": "cpu",
        "options": {"iterations": 500, "max_image_size": 96},
        "multiview": {"steps": 28},
        "generation": {"image_steps": 1, "video_steps": 12, "video_frames": 14},
    }),
    "STANDARD": ("Standard", "The demo's settings: 1500 steps at 128 px, model-card diffusion steps", {
        "preset": "cpu",
        "options": {},
        "multiview": {},
        "generation": {},
    }),
    "HIGH": ("High", "Full quality for a CUDA backend: 8000 steps at 512 px, up to 300k Gaussians", {
        "preset": "gpu",
        "options": {},
        "multiview": {"steps": 75},
        "generation": {"video_frames": 25},
    }),
}

#: Job types the panel submits (the backend's ``backend.pipeline.runner.JOB_TYPES``; a
#: test keeps the two equal, since the add-on cannot import the backend).
JOB_TYPES = ("footage", "video", "image", "prompt", "orbital")

#: Advanced choices offered in the panel (value "PRESET" = keep the preset's).
REPRESENTATIONS = ("PRESET", "trajectory", "hexplane")
DENSIFY_STRATEGIES = ("PRESET", "default", "stag4d")


def job_spec(job_type: str, preset: str, iterations: int = 0, max_image_size: int = 0,
             representation: str = "PRESET", densify_strategy: str = "PRESET",
             confidence_weighting: bool = False, **extra) -> dict:
    """The job spec for ``job_type`` at quality ``preset`` with Advanced overrides.

    Args:
        job_type: one of :data:`JOB_TYPES` (``orbital``: ``extra`` carries ``orbit``).
        preset: a key of :data:`PRESETS`.
        iterations: optimizer steps; 0 keeps the preset's.
        max_image_size: longest training image side (px); 0 keeps the preset's.
        representation: ``trajectory`` / ``hexplane`` or ``PRESET``.
        densify_strategy: ``default`` (3DGS) / ``stag4d`` or ``PRESET``.
        confidence_weighting: Efficient4D confidence-aware loss.
        **extra: other top-level spec keys (``prompt``, ``video``, ``image`` ...).

    Returns:
        a new dict; nested dicts are copies, so the preset table is never modified.

    Raises:
        ValueError: unknown job type, preset, representation or densification strategy, or a
            negative count.
    """
    if job_type not in JOB_TYPES:
        raise ValueError(f"unknown job type {job_type!r}; choose one of {list(JOB_TYPES)}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if representation not in REPRESENTATIONS:
        raise ValueError(f"unknown representation {representation!r}")
    if densify_strategy not in DENSIFY_STRATEGIES:
        raise ValueError(f"unknown densification strategy {densify_strategy!r}")
    if iterations < 0 or max_image_size < 0:
        raise ValueError("iterations and max_image_size must be 0 (preset) or positive")
    fragment = PRESETS[preset][2]
    spec = {key: dict(value) if isinstance(value, dict) else value for key, value in fragment.items()}
    options = spec["options"]
    if iterations:
        options["iterations"] = int(iterations)
    if max_image_size:
        options["max_image_size"] = int(max_image_size)
    if representation != "PRESET":
        options["representation"] = representation
    if densify_strategy != "PRESET":
        options["densify_strategy"] = densify_strategy
    if confidence_weighting:
        options["confidence_weighting"] = True
    spec.update(extra)
    spec["job_type"] = job_type
    return spec
