"""The job spec: what a client asks the backend to do, checked the same way on every path.

A spec is a JSON object (``submit``'s ``spec`` field, ``python -m backend run``'s
arguments, the add-on's panel)::

    {"job_type": "footage" | "video" | "image" | "prompt" | "orbital",
     "preset": "tiny" | "draft" | "standard" | "3min" | "15min" | "high",  # protocol.presets
     "options": {...},        # protocol.config.ReconstructConfig overrides
     "multiview": {...}, "generation": {...},                   # generation-stage overrides
     "frame_count": int, "fps": float, "name": str,
     "video" | "image": uploaded file name, "prompt": str, "orbit": {...},
     "models": {role: hub id or folder}, "video_fps": float, "max_frames": int,
     "mask_prompt": str}

:func:`validate_job_spec` is called by the CLI before it runs, by the server before it
stores a submitted job, and by the add-on before it sends one, so an unknown or ill-typed
option is refused up front with ``invalid_option`` everywhere. The generation-stage
sections (``multiview``, ``generation``) are checked field by field by the backend when
the job starts (their dataclasses live with the stages that use them); ``orbit`` is checked
here against :class:`protocol.config.OrbitConfig`.
"""

from __future__ import annotations

import math

from .config import OrbitConfig, ReconstructConfig, apply_options
from .errors import InvalidOptionError
from .limits import SPEC_FPS, SPEC_FRAMES
from .presets import DEFAULT_PRESET, reconstruct_config
from .strict_json import MAX_JSON_DEPTH, json_depth

#: Job types the backend runs.
JOB_TYPES = ("footage", "video", "image", "prompt", "orbital")

#: Top-level spec keys and the JSON types each accepts (None = may be null).
SPEC_FIELDS: dict[str, tuple] = {
    "job_type": (str,), "preset": (str,), "options": (dict,), "multiview": (dict,), "generation": (dict,),
    "frame_count": (int, type(None)), "fps": (int, float, type(None)), "name": (str,), "models": (dict, type(None)),
    "video": (str,), "image": (str,), "prompt": (str,), "orbit": (dict, type(None)),
    "video_fps": (int, float, type(None)), "max_frames": (int, type(None)), "mask_prompt": (str, type(None)),
}

#: deepest job spec accepted (a spec needs 4). A ``jobs`` reply nests each stored spec three
#: levels down (header, list, job), so a deeper spec would make every later ``list_jobs``
#: reply too deep for clients to read (:data:`protocol.strict_json.MAX_JSON_DEPTH`).
MAX_SPEC_DEPTH = MAX_JSON_DEPTH - 4


def _finite(value) -> bool:
    """Whether a JSON number is finite as a double (an int too large for one is not)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def validate_job_spec(spec: dict) -> ReconstructConfig:
    """Check a job spec and return the reconstruct settings it asks for.

    Args:
        spec: the job spec (see the module docstring). Missing ``job_type`` means
            ``footage``; missing ``preset`` means :data:`protocol.presets.DEFAULT_PRESET`.

    Returns:
        The :class:`~protocol.config.ReconstructConfig` of its preset and options.

    Raises:
        InvalidOptionError: code ``unknown_job_type`` / ``unknown_preset`` for those;
            ``invalid_option`` for the rest: not a dict; an unknown top-level key; a
            key of the wrong JSON type; a non-finite, non-positive or too large ``fps`` /
            ``video_fps`` / ``frame_count`` / ``max_frames`` (:mod:`protocol.limits`); an
            unknown, ill-typed or out-of-range option or orbit setting; a spec nested deeper
            than :data:`MAX_SPEC_DEPTH`.
    """
    if not isinstance(spec, dict):
        raise InvalidOptionError(f"a job spec must be a JSON object, got {type(spec).__name__}")
    if json_depth(spec) > MAX_SPEC_DEPTH:
        raise InvalidOptionError(f"a job spec may be nested at most {MAX_SPEC_DEPTH} deep")
    for key, value in spec.items():
        if key not in SPEC_FIELDS:
            raise InvalidOptionError(f"unknown job spec key {key!r}; known keys: {sorted(SPEC_FIELDS)}")
        allowed = SPEC_FIELDS[key]
        if isinstance(value, bool) or not isinstance(value, allowed):
            names = "/".join("null" if t is type(None) else t.__name__ for t in allowed)
            raise InvalidOptionError(f"job spec key {key!r} must be {names}, got {value!r}")
    job_type = spec.get("job_type", "footage")
    if job_type not in JOB_TYPES:
        raise InvalidOptionError(f"unknown job type {job_type!r}; the backend runs {list(JOB_TYPES)}",
                                 "unknown_job_type")
    for key in ("frame_count", "max_frames", "fps", "video_fps"):
        value = spec.get(key)
        if value is not None and (not _finite(value) or value <= 0):
            raise InvalidOptionError(f"job spec key {key!r} must be a positive finite number, got {value!r}")
        high = SPEC_FRAMES if key in ("frame_count", "max_frames") else SPEC_FPS
        if value is not None and value > high:
            raise InvalidOptionError(f"job spec key {key!r} must be at most {high:g} (protocol.limits), got {value!r}")
    if spec.get("orbit") is not None:
        apply_options(OrbitConfig(), spec["orbit"])
    return reconstruct_config(spec.get("preset", DEFAULT_PRESET), spec.get("options"))
