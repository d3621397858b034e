"""The panel's quality choice and Advanced overrides, mapped to the job spec the backend reads.

The qualities are the backend's own presets (:mod:`protocol.presets`, the one table both
sides read); the panel offers Draft / Standard / 3 minutes / 15 minutes / High (``tiny`` is
for tests). The spec is
checked with :func:`protocol.job_spec.validate_job_spec` before it leaves Blender, so an
unknown or ill-typed option fails here with ``invalid_option``, exactly as it would on the
server. Pure Python (no bpy), so it is unit-tested without Blender (``tests/addon/_nobpy.py``).

A spec carries ``job_type``, ``preset`` (lower-case preset name), ``options`` (only the
overrides the artist set; the preset's own values are applied by the backend) and any
job-specific top-level keys (``prompt``, ``video``, ``orbit`` ...).
"""

from __future__ import annotations

from ._vendor import protocol_module

#: Presets the panel offers, in this order (Blender enum identifiers are upper case).
PANEL_QUALITIES = ("draft", "standard", "3min", "15min", "high")

#: "keep the preset's value" in the Advanced enums.
KEEP = "PRESET"


def quality_items() -> list[tuple[str, str, str]]:
    """``(identifier, label, description)`` for the panel's Quality enum, from the shared
    presets table."""
    presets = protocol_module("presets").PRESETS
    return [(name.upper(), presets[name].label, presets[name].description) for name in PANEL_QUALITIES]


#: Panel labels for the choices :mod:`protocol.config` declares; a choice without one is
#: still offered, under its own name.
CHOICE_LABELS = {
    "trajectory": ("Trajectories", "Per-Gaussian polynomial + Fourier trajectories"),
    "hexplane": ("HexPlane", "A HexPlane deformation field (4DGS / STAG4D)"),
    "control_points": ("Control points", "Sparse control points moved by an MLP, skinned to the Gaussians (SC-GS)"),
    "static": ("Static", "Time-independent Gaussians: a baseline that shows what motion earns"),
    "default": ("3DGS", "gsplat's default strategy"),
    "stag4d": ("STAG4D", "STAG4D adaptive densification (top 2.5% gradients)"),
}


def _choice_items(choices: tuple[str, ...], keep_description: str) -> list[tuple[str, str, str]]:
    return [(KEEP, "Preset", keep_description)] + [(c, *CHOICE_LABELS.get(c, (c.title(), c))) for c in choices]


def representation_items() -> list[tuple[str, str, str]]:
    """The Advanced Motion enum: "keep the preset's", then :data:`protocol.config.REPRESENTATIONS`."""
    return _choice_items(protocol_module("config").REPRESENTATIONS, "The quality preset's (trajectories)")


def densify_items() -> list[tuple[str, str, str]]:
    """The Advanced Densification enum: "keep the preset's", then
    :data:`protocol.config.DENSIFY_STRATEGIES`."""
    return _choice_items(protocol_module("config").DENSIFY_STRATEGIES, "The quality preset's (3DGS)")


def job_types() -> tuple[str, ...]:
    """The job types the backend runs (:data:`protocol.job_spec.JOB_TYPES`)."""
    return protocol_module("job_spec").JOB_TYPES


def job_spec(job_type: str, quality: str, iterations: int = 0, max_image_size: int = 0,
             representation: str = KEEP, densify_strategy: str = KEEP, confidence_weighting: bool = False,
             options: dict | None = None, **extra) -> dict:
    """The job spec for ``job_type`` at ``quality`` with the panel's Advanced overrides.

    Args:
        job_type: one of :func:`job_types` (``orbital``: ``extra`` carries ``orbit``).
        quality: a preset name, upper or lower case (``"DRAFT"`` or ``"draft"``).
        iterations: optimizer steps; 0 keeps the preset's.
        max_image_size: longest training image side (px); 0 keeps the preset's.
        representation: ``trajectory`` / ``hexplane`` / ``static``, or ``"PRESET"``.
        densify_strategy: ``default`` (3DGS) / ``stag4d``, or ``"PRESET"``.
        confidence_weighting: Efficient4D confidence-aware loss.
        options: further reconstruction overrides (:mod:`protocol.config` names).
        **extra: other top-level spec keys (``prompt``, ``video``, ``image``, ``orbit`` ...).

    Returns:
        a new dict, checked with :func:`protocol.job_spec.validate_job_spec`.

    Raises:
        protocol.errors.InvalidOptionError: a ``ValueError`` whose ``code`` is
            ``invalid_option`` (an unknown, ill-typed or out-of-range option or spec key),
            ``unknown_preset`` or ``unknown_job_type``.
    """
    merged: dict = dict(options or {})
    if iterations:
        merged["optimization.iterations"] = iterations
    if max_image_size:
        merged["data.max_image_size"] = max_image_size
    if representation != KEEP:
        merged["model.representation"] = representation
    if densify_strategy != KEEP:
        merged["densification.strategy"] = densify_strategy
    if confidence_weighting:
        merged["losses.confidence_weighting"] = True
    spec = {**extra, "job_type": job_type, "preset": str(quality).lower(), "options": merged}
    protocol_module("job_spec").validate_job_spec(spec)
    return spec
