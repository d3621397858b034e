"""Memory modes for GPUs with little memory: a per-stage :class:`MemoryPlan` chosen from a
host-side ESTIMATE of the stage's peak accelerator memory, and applied with the libraries'
own switches.

Everything this module computes is an **estimate made on the host**, never a measurement:
``benchmarks/vram_plan.py --measure`` measures ``torch.cuda.max_memory_allocated`` on a GPU.

The knobs (each a field of :class:`MemoryPlan`):

- precision: ``fp16`` / ``bf16`` halve the weights and activations of ``fp32``;
- attention: SDPA (``torch.nn.functional.scaled_dot_product_attention``) everywhere:
  diffusers' default ``AttnProcessor2_0`` and gen4d's anchored processors
  (:mod:`backend.models.anchor_attention`) already call it, so it is recorded, not switched;
- VAE slicing (``AutoencoderKL.enable_slicing``): a batch is decoded one image at a time;
- VAE tiling (``AutoencoderKL.enable_tiling``): an image larger than the VAE's tile
  (``config.sample_size`` px, 768 for the SD2-family VAEs) is decoded in overlapping tiles;
- CPU offload (accelerate, through diffusers): ``"model"`` keeps only the component that is
  running on the accelerator (``DiffusionPipeline.enable_model_cpu_offload``),
  ``"sequential"`` streams weights one submodule at a time
  (``enable_sequential_cpu_offload``, much slower);
- SVD's ``decode_chunk_size``: frames decoded per pass by its temporal VAE decoder (which
  has no slicing or tiling of its own).

The estimate (:func:`estimate_peak_bytes`) is, for each phase of a stage (encode the
condition, denoise, decode), the bytes of the weights resident on the accelerator during
that phase plus that phase's activations; the stage's peak is the largest phase.
Assumptions, each a source of error:

1. Weights: parameters × bytes per element of the plan's dtype. Parameter counts per
   component come from ``benchmarks/results/generation_cpu.json`` (``components``) when it
   has them, else the cited counts of ``architectures.published_component_params``. No offload: every component is
   resident in every phase. Model offload: the phase's largest component, plus the
   components gen4d's own pipelines keep resident (:data:`PINNED_COMPONENTS`). Sequential
   offload: about one block, taken as :data:`SEQUENTIAL_RESIDENT_FRACTION` of the largest
   component.
2. Denoise activations: the fp32 activation peak measured on the CPU at real size
   (``activation_peak_bytes`` of ``generation_cpu.json``: peak RSS − RSS after building, so
   it may also contain the VAE decode and allocator slack: an upper bound), × (bytes of the
   plan's dtype / 4) (fp16 activations are half of fp32), scaled linearly with latent
   pixels × frames when the job's size differs from the measured one (attention memory is
   linear in tokens with a memory-efficient kernel). The CPU run uses PyTorch's CPU flash
   attention kernel; SDPA on CUDA (flash / memory-efficient) is assumed to need no more.
3. VAE decode activations: :data:`DECODE_ELEMENTS_PER_PIXEL` elements per output pixel per
   image decoded in one pass (the decoder's full-resolution up-block holds a few 128- and
   256-channel maps at once; the constants are measured on the CPU in fp32 with random
   weights at real channel widths, see the constant). Slicing makes a pass one image,
   tiling one tile of at most ``tile × tile`` px, ``decode_chunk_size`` ``chunk`` frames.
4. ``torch.cuda.max_memory_allocated`` does not count the CUDA context, cuBLAS workspaces or
   the caching allocator's fragmentation; a plan must fit :data:`USABLE_FRACTION` of the
   budget (less ``reserved_bytes`` used by other work at the same time).
5. The temporal anchor's cache lives in host memory (``TemporalAnchor.cache_device`` is
   ``"cpu"``), so it adds nothing here.

Choice (:func:`plan_for`): among a role's candidate plans (:func:`candidate_plans`) the one
with the smallest speed cost (:data:`SPEED_COST`: an assumed ordering, not measured) whose
estimate fits; ties go to the smaller estimate. When none fits, the smallest estimate, with
``fits=False``. A smaller budget therefore never gets a plan with a larger estimate.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from backend.errors import JobError

log = logging.getLogger(__name__)

#: bytes per element of each plan dtype (None = as saved: fp32 for these checkpoints).
DTYPE_BYTES = {None: 4, "fp32": 4, "fp16": 2, "bf16": 2}
OFFLOAD_MODES = ("none", "model", "sequential")
#: roles this module plans (the keys of ``backend.models.registry.ROLES``).
PLANNED_ROLES = ("text_to_image", "image_to_video", "multiview", "sds_guidance", "background_removal")
#: fraction of the budget a plan's estimate may fill (assumption 4 of the module docstring).
USABLE_FRACTION = 0.9
#: a budget above this (GB) is refused as a unit mistake (mirrors protocol.config.MAX_VRAM_BUDGET_GB).
MAX_BUDGET_GB = 1024.0
#: resident weights under sequential offload, as a fraction of the largest component (≈ one
#: of the ~20 down/mid/up blocks of an SD-family UNet).
SEQUENTIAL_RESIDENT_FRACTION = 1 / 20
#: SVD's decode_chunk_size when no budget is set: None, every frame in one pass, as
#: diffusers' StableVideoDiffusionPipeline does by default (svd:486).
DEFAULT_DECODE_CHUNK = None
#: SVD-XT's own frame count (its UNet config's ``num_frames``), used when the job leaves
#: ``video_frames`` at 0.
SVD_XT_FRAMES = 25
#: VAE decode activations, elements per output pixel per image in one pass (assumption 3).
#: ``benchmarks/vae_decode_peak.py``: peak RSS growth of one fp32 CPU decode with random
#: weights at the real channel widths, 2 threads (benchmarks/results/vae_decode_peak_cpu.json):
#: AutoencoderKL 1034 at 512², 987 at 768²; AutoencoderKLTemporalDecoder 1124 at 2 × 384²
#: (1087 in an earlier run); rounded up.
DECODE_ELEMENTS_PER_PIXEL = {"AutoencoderKL": 1040, "AutoencoderKLTemporalDecoder": 1130}
#: relative speed cost of each knob (an ordering assumption, not a measurement): offloading
#: costs PCIe transfers per component switch (model) or per submodule call (sequential);
#: tiling decodes overlaps twice; slicing and smaller decode chunks cost little.
SPEED_COST = {"offload": {"none": 0.0, "model": 1.0, "sequential": 20.0}, "vae_tiling": 0.2,
              "vae_slicing": 0.05, "decode_chunk_size": {8: 0.0, 4: 0.02, 2: 0.05, 1: 0.1}}

#: components gen4d's own pipelines keep on the accelerator under model offload: they place
#: their tensors on ``unet.device`` (Zero123PlusPipeline, Zero123Guidance), and SDS runs the
#: VAE encoder with gradients every step.
PINNED_COMPONENTS = {"multiview": ("unet",), "sds_guidance": ("unet", "vae")}

#: phases of each role: (name, components running, activation source: None | "measured" | "decode").
PHASES = {
    "text_to_image": (("encode", ("text_encoder",), None), ("denoise", ("unet",), "measured"),
                      ("decode", ("vae",), "decode")),
    "image_to_video": (("encode", ("image_encoder", "vae"), None), ("denoise", ("unet",), "measured"),
                       ("decode", ("vae",), "decode")),
    "multiview": (("encode", ("text_encoder", "vision_encoder", "vae"), None), ("denoise", ("unet",), "measured"),
                  ("decode", ("vae",), "decode")),
    "sds_guidance": (("encode", ("image_encoder", "vae"), None),
                     ("sds_step", ("unet", "vae", "clip_camera_projection"), "measured")),
    "background_removal": (("segment", ("model",), "measured"),),
}
VAE_CLASS = {"image_to_video": "AutoencoderKLTemporalDecoder"}

#: environment variable naming the measured-profile JSON (default :data:`DEFAULT_PROFILE_PATH`).
PROFILE_ENV = "GEN4D_MEMORY_PROFILE"
_REPO = Path(__file__).resolve().parents[2]
DEFAULT_PROFILE_PATH = _REPO / "benchmarks" / "results" / "generation_cpu.json"
DEFAULT_RECONSTRUCT_PATH = _REPO / "benchmarks" / "results" / "reconstruct_gpu.json"

GB = 1e9


@dataclass(frozen=True)
class MemoryPlan:
    """How one stage's model is loaded and run.

    Attributes:
        role: the model role (:data:`PLANNED_ROLES`).
        dtype: ``"fp16"``, ``"bf16"``, ``"fp32"``, or None (as saved; no conversion).
        attention: ``"sdpa"`` (recorded; see the module docstring).
        vae_slicing, vae_tiling: ``AutoencoderKL`` slicing / tiling.
        offload: ``"none"``, ``"model"`` or ``"sequential"`` (:data:`OFFLOAD_MODES`).
        decode_chunk_size: SVD frames per VAE decode pass (``image_to_video`` only, else None).
        budget_gb: the budget it was planned for (None = no limit).
        estimate_bytes: the ESTIMATED peak accelerator memory (host-side; not measured).
        fits: whether the estimate fits the usable budget (None without a budget).
        notes: what was skipped or assumed when planning / applying.
    """

    role: str
    dtype: str | None = None
    attention: str = "sdpa"
    vae_slicing: bool = False
    vae_tiling: bool = False
    offload: str = "none"
    decode_chunk_size: int | None = None
    budget_gb: float | None = None
    estimate_bytes: int | None = None
    fits: bool | None = None
    notes: tuple = ()

    def __post_init__(self):
        if self.dtype not in DTYPE_BYTES:
            raise ValueError(f"dtype must be one of fp32/fp16/bf16/None, got {self.dtype!r}")
        if self.offload not in OFFLOAD_MODES:
            raise ValueError(f"offload must be one of {OFFLOAD_MODES}, got {self.offload!r}")
        if self.decode_chunk_size is not None and self.decode_chunk_size < 1:
            raise ValueError(f"decode_chunk_size must be >= 1, got {self.decode_chunk_size}")

    @property
    def torch_dtype(self):
        """The plan's ``torch.dtype``, or None (as saved)."""
        import torch

        return {None: None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.dtype]

    def to_dict(self) -> dict:
        """JSON-ready dict (notes as a list; ``estimate_is`` marks the estimate as such)."""
        d = asdict(self)
        d["notes"] = list(self.notes)
        d["estimate_is"] = "host-side estimate, not a measurement"
        return d

    def describe(self) -> str:
        """One line for progress messages, e.g. ``fp16, SDPA, model offload (ESTIMATED
        peak 7.1 GB, budget 12 GB)``."""
        parts = [self.dtype or "dtype as saved", self.attention.upper()]
        parts += [name for name, on in (("VAE slicing", self.vae_slicing), ("VAE tiling", self.vae_tiling)) if on]
        if self.offload != "none":
            parts.append(f"{self.offload} CPU offload")
        if self.decode_chunk_size is not None:
            parts.append(f"decode chunk {self.decode_chunk_size}")
        est = "" if self.estimate_bytes is None else f"ESTIMATED peak {self.estimate_bytes / GB:.1f} GB"
        budget = "no budget" if self.budget_gb is None else f"budget {self.budget_gb:g} GB"
        fit = "" if self.fits is None else ("" if self.fits else ", does NOT fit")
        return f"{', '.join(parts)} ({est}{', ' if est else ''}{budget}{fit})"


@dataclass(frozen=True)
class StageProfile:
    """Measured real-size numbers of one stage (a ``stages`` entry of generation_cpu.json).

    Attributes:
        role: the model role.
        params: total parameters.
        activation_peak_bytes: fp32 CPU activation peak (peak RSS − RSS after building), bytes.
        height, width, frames: the size it was measured at (None when the file does not say).
        components: ``{component: params}`` when the file has them.
        source: the file it came from.
    """

    role: str
    params: int | None = None
    activation_peak_bytes: int | None = None
    height: int | None = None
    width: int | None = None
    frames: int = 1
    components: dict | None = None
    source: str = ""


@dataclass(frozen=True)
class StageSettings:
    """The size a stage runs at, and its measured profile.

    Attributes:
        height, width: output / working image size in px (multiview: the 960 × 640 grid;
            SVD: its frames; SDS: the rendered views; CLIPSeg: its input).
        frames: images per denoising batch (SVD frames; 1 elsewhere).
        decode_batch: images the VAE decodes in one call without slicing.
        vae_tile_px: the VAE's tile size (``config.sample_size``).
        profile: the measured :class:`StageProfile`, or None (no activation measurement).
    """

    height: int
    width: int
    frames: int = 1
    decode_batch: int = 1
    vae_tile_px: int = 768
    profile: StageProfile | None = None


def _parse_resolution(value) -> tuple[int | None, int | None, int]:
    """``[H, W]``, ``[T, H, W]``, ``"HxW"`` or ``"HxWxT"``-like values -> (H, W, T); unknown -> (None, None, 1)."""
    if isinstance(value, str):
        try:
            value = [int(v) for v in value.lower().replace("×", "x").split("x")]
        except ValueError:
            return None, None, 1
    if isinstance(value, dict):
        return value.get("height"), value.get("width"), int(value.get("frames") or 1)
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
        if len(value) == 2:
            return value[0], value[1], 1
        if len(value) == 3:
            return value[1], value[2], value[0]
    return None, None, 1


def load_profiles(path: str | Path | None = None) -> dict[str, StageProfile]:
    """Per-role :class:`StageProfile` from ``benchmarks/generation.py``'s JSON.

    Reads ``stages[name]`` entries with keys ``role`` (else the name), ``params``,
    ``activation_peak_bytes``, ``resolution`` (``[H, W]``, ``[T, H, W]`` or ``"HxW"``),
    optional ``frames`` and ``components``; when several stages share a role, the one named
    after the role wins.

    Args:
        path: the JSON; None = ``$GEN4D_MEMORY_PROFILE`` or :data:`DEFAULT_PROFILE_PATH`.

    Returns:
        ``{role: StageProfile}``; empty when the file does not exist.

    Raises:
        JobError: ``memory_profile_invalid`` when the file is not JSON with a ``stages`` object.
    """
    path = Path(path or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE_PATH)
    if not path.is_file():
        return {}
    try:
        stages = json.loads(path.read_text())["stages"]
        if not isinstance(stages, dict):
            raise TypeError("stages is not an object")
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise JobError("memory_profile_invalid", f"{path} is not a generation benchmark result: {exc}") from None
    out: dict[str, StageProfile] = {}
    for name, st in stages.items():
        if not isinstance(st, dict):
            continue
        role = st.get("role", name)
        if role not in PLANNED_ROLES or (role in out and name != role):
            continue
        h, w, t = _parse_resolution(st.get("resolution"))
        frames = int(st.get("frames") or t or 1)
        out[role] = StageProfile(role=role, params=st.get("params"), activation_peak_bytes=st.get("activation_peak_bytes"),
                                 height=h, width=w, frames=frames, components=st.get("components"), source=str(path))
    return out


#: each planned role's working size at gen4d's default settings, ``(height, width, frames)``
#: px: what :func:`settings_for` uses for settings the caller does not give. (The settings
#: dataclasses live in ``backend.pipeline``, which imports this package; a test pins these
#: to their defaults.)
DEFAULT_SIZES = {"text_to_image": (512, 512, 1), "image_to_video": (576, 576, SVD_XT_FRAMES),
                 "multiview": (960, 640, 1), "sds_guidance": (256, 256, 1), "background_removal": (352, 352, 1)}


def settings_for(role: str, generation=None, multiview=None, profiles: dict | None = None) -> StageSettings:
    """The :class:`StageSettings` of ``role`` at the job's settings.

    Args:
        role: a role of :data:`PLANNED_ROLES`.
        generation: a ``backend.pipeline.generate_video.GenerationSettings`` (text-to-image
            size; SVD size and frames, 0 frames = SVD-XT's 25); None: :data:`DEFAULT_SIZES`.
        multiview: a ``backend.pipeline.multiview_footage.MultiviewSettings`` (grid size);
            None: :data:`DEFAULT_SIZES`.
        profiles: :func:`load_profiles`' result; None = load the default file.

    Raises:
        ValueError: unknown role.
    """
    if role not in DEFAULT_SIZES:
        raise ValueError(f"no memory plan for role {role!r}; planned roles are {PLANNED_ROLES}")
    profiles = load_profiles() if profiles is None else profiles
    prof = profiles.get(role)
    height, width, frames = DEFAULT_SIZES[role]
    if role == "text_to_image" and generation is not None:
        height = width = generation.image_size
    if role == "image_to_video":
        if generation is not None:
            height, width = generation.video_height, generation.video_width
            frames = generation.video_frames or SVD_XT_FRAMES  # 0: the model's own frame count
        return StageSettings(height, width, frames=frames, decode_batch=frames, profile=prof)
    if role == "multiview" and multiview is not None:
        height, width = multiview.grid_height, multiview.grid_width
    return StageSettings(height, width, profile=prof)


def component_params(role: str, settings: StageSettings | None = None) -> dict[str, int]:
    """``{component: params}`` of ``role``: the profile's ``components`` when present, else
    the cited counts of :func:`backend.models.architectures.published_component_params`."""
    prof = settings.profile if settings is not None else None
    if prof is not None and prof.components:
        return {k: int(v) for k, v in prof.components.items()}
    from backend.models.architectures import published_component_params

    return published_component_params(role)


def _resident_params(role: str, phase_components, offload: str, comps: dict[str, int]) -> float:
    if offload == "none":
        return float(sum(comps.values()))
    if offload == "sequential":
        return max(comps.values()) * SEQUENTIAL_RESIDENT_FRACTION
    pinned = [c for c in PINNED_COMPONENTS.get(role, ()) if c in comps]
    running = [comps[c] for c in phase_components if c in comps and c not in pinned]
    return float(sum(comps[c] for c in pinned) + (max(running) if running else 0))


def _decode_activation_elements(role: str, plan: MemoryPlan, s: StageSettings) -> float:
    per_px = DECODE_ELEMENTS_PER_PIXEL[VAE_CLASS.get(role, "AutoencoderKL")]
    if role == "image_to_video":
        images = min(plan.decode_chunk_size or s.frames, s.frames)
        pixels = s.height * s.width
    else:
        images = 1 if plan.vae_slicing else s.decode_batch
        pixels = (min(s.height, s.vae_tile_px) * min(s.width, s.vae_tile_px)) if plan.vae_tiling \
            else s.height * s.width
    return images * pixels * per_px


def _measured_activation_fp32(s: StageSettings) -> float:
    prof = s.profile
    if prof is None or not prof.activation_peak_bytes:
        return 0.0
    scale = 1.0
    if prof.height and prof.width:
        scale = (s.height * s.width * s.frames) / (prof.height * prof.width * max(prof.frames, 1))
    return float(prof.activation_peak_bytes) * scale


def estimate_phases(role: str, plan: MemoryPlan, settings: StageSettings) -> dict[str, int]:
    """The ESTIMATED accelerator bytes of each phase of ``role`` under ``plan`` (see the
    module docstring's assumptions): ``{phase: weights + activations}``.

    Raises:
        KeyError: unknown role.
    """
    nbytes = DTYPE_BYTES[plan.dtype]
    comps = component_params(role, settings)
    out = {}
    for name, phase_components, act in PHASES[role]:
        weights = _resident_params(role, phase_components, plan.offload, comps) * nbytes
        if act == "measured":
            activation = _measured_activation_fp32(settings) * nbytes / 4
        elif act == "decode":
            activation = _decode_activation_elements(role, plan, settings) * nbytes
        else:
            activation = 0.0
        out[name] = int(round(weights + activation))
    return out


def estimate_peak_bytes(role: str, plan: MemoryPlan, settings: StageSettings) -> int:
    """The ESTIMATED peak accelerator memory (bytes) of running ``role`` under ``plan``:
    the largest of :func:`estimate_phases`. Host-side arithmetic, not a measurement.

    Args:
        role: a role of :data:`PLANNED_ROLES`.
        plan: the :class:`MemoryPlan` (its dtype, slicing, tiling, offload, decode chunk).
        settings: size and measured profile (:func:`settings_for`).
    """
    return max(estimate_phases(role, plan, settings).values())


def is_accelerator(device) -> bool:
    """Whether ``device`` (str or torch.device) is not the CPU."""
    return str(device).split(":")[0] != "cpu"


def auto_budget_gb(device) -> float | None:
    """The budget used when a job sets none: a CUDA device's total memory (GB, 10⁹ bytes),
    so that stages whose reference defaults would not fit (SVD decoding all its frames
    at once) are planned to fit the GPU the job runs on; None on the CPU and other devices
    (no plan: models load as saved).

    Args:
        device: a torch device or its name (``"cuda"``, ``"cuda:1"``, ``"cpu"`` ...).
    """
    import torch

    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(dev.index or 0).total_memory / GB


def check_budget(budget_gb) -> float | None:
    """``budget_gb`` as a float, or None (no limit).

    Raises:
        JobError: ``invalid_option`` when it is not a finite number in (0, :data:`MAX_BUDGET_GB`].
    """
    if budget_gb is None:
        return None
    if isinstance(budget_gb, bool) or not isinstance(budget_gb, (int, float)) or not math.isfinite(budget_gb) \
            or not 0 < budget_gb <= MAX_BUDGET_GB:
        raise JobError("invalid_option", f"vram_budget_gb must be a finite number of GB in (0, {MAX_BUDGET_GB:g}], "
                                         f"got {budget_gb!r}")
    return float(budget_gb)


def candidate_plans(role: str, device) -> list[MemoryPlan]:
    """The plans :func:`plan_for` chooses among for ``role`` on ``device``.

    Precision is fp16 on an accelerator, fp32 on the CPU (CPU half-precision kernels are
    slow or missing). Only knobs with an effect are varied: SVD varies ``decode_chunk_size``
    (its temporal decoder has no slicing/tiling), the AutoencoderKL stages tiling (their
    decode batch is one image, so slicing changes nothing), and offload modes the pipeline
    supports: gen4d's own pipelines (multiview, SDS guidance) get no sequential offload
    (they place tensors on ``unet.device``, which streaming leaves on ``meta``), CLIPSeg
    (≈0.15 B params) none.

    Raises:
        ValueError: unknown role.
    """
    if role not in PLANNED_ROLES:
        raise ValueError(f"no memory plan for role {role!r}; planned roles are {PLANNED_ROLES}")
    dtype = "fp16" if is_accelerator(device) else "fp32"
    offloads = {"text_to_image": OFFLOAD_MODES, "image_to_video": OFFLOAD_MODES, "multiview": ("none", "model"),
                "sds_guidance": ("none", "model"), "background_removal": ("none",)}[role]
    tilings = (False, True) if role in ("text_to_image", "multiview") else (False,)
    chunks = (8, 4, 2, 1) if role == "image_to_video" else (None,)
    return [MemoryPlan(role, dtype=dtype, offload=o, vae_tiling=t, decode_chunk_size=c)
            for o in offloads for t in tilings for c in chunks]


def speed_cost(plan: MemoryPlan) -> float:
    """The plan's assumed relative slowdown (:data:`SPEED_COST`; smaller is faster)."""
    cost = SPEED_COST["offload"][plan.offload]
    cost += SPEED_COST["vae_tiling"] * plan.vae_tiling + SPEED_COST["vae_slicing"] * plan.vae_slicing
    if plan.decode_chunk_size is not None:
        cost += SPEED_COST["decode_chunk_size"].get(plan.decode_chunk_size, 0.1)
    return cost


def plan_for(budget_gb, device, role: str, settings: StageSettings | None = None,
             reserved_bytes: int = 0) -> MemoryPlan:
    """The fastest plan (:func:`speed_cost`) of ``role`` whose ESTIMATED peak fits the budget.

    Args:
        budget_gb: accelerator memory budget in GB (10⁹ bytes); None = no limit: the plan
            of today's behaviour (dtype as saved, nothing offloaded, SVD decode chunk 2),
            with its estimate for the report.
        device: where the stage runs (``"cuda"``, ``"cpu"``, a torch.device); planning is
            pure arithmetic and needs no GPU.
        role: a role of :data:`PLANNED_ROLES`.
        settings: the stage's size and profile; None = :func:`settings_for` at defaults.
        reserved_bytes: memory other work holds at the same time (e.g. the reconstruction
            beside SDS guidance), subtracted from the usable budget.

    Returns:
        The chosen :class:`MemoryPlan` with ``budget_gb``, ``estimate_bytes`` and ``fits``
        filled in; ``fits=False`` (and a note) when no candidate fits, then the plan with
        the smallest estimate.

    Raises:
        JobError: ``invalid_option`` for a bad budget. ValueError: unknown role.
    """
    budget = check_budget(budget_gb)
    settings = settings_for(role) if settings is None else settings
    notes = () if settings.profile is not None else (
        "no measured activations for this role (benchmarks/results/generation_cpu.json): the estimate "
        "counts weights and VAE decode only",)
    if budget is None:
        plan = MemoryPlan(role, decode_chunk_size=DEFAULT_DECODE_CHUNK if role == "image_to_video" else None,
                          notes=notes)
        return replace(plan, estimate_bytes=estimate_peak_bytes(role, plan, settings))
    usable = budget * GB * USABLE_FRACTION - reserved_bytes
    scored = []
    for i, cand in enumerate(candidate_plans(role, device)):
        est = estimate_peak_bytes(role, cand, settings)
        scored.append((speed_cost(cand), est, i, cand))
    fitting = [s for s in scored if s[1] <= usable]
    if fitting:
        cost, est, _, best = min(fitting)
        fits = True
    else:
        est, cost, _, best = min((s[1], s[0], s[2], s[3]) for s in scored)
        fits = False
        notes += (f"no plan fits: the smallest estimate {est / GB:.2f} GB exceeds the usable "
                  f"{max(usable, 0) / GB:.2f} GB ({USABLE_FRACTION:.0%} of {budget:g} GB"
                  f"{f' less {reserved_bytes / GB:.2f} GB reserved' if reserved_bytes else ''})",)
    return replace(best, budget_gb=budget, estimate_bytes=est, fits=fits, notes=notes)


# -- applying a plan --------------------------------------------------------------------------


def _modules(pipe) -> dict:
    """The ``torch.nn.Module`` components of a pipeline-like object, by name."""
    import torch

    if hasattr(pipe, "components") and isinstance(getattr(pipe, "components"), dict):
        items = pipe.components.items()
    else:
        items = vars(pipe).items()
    return {k: v for k, v in items if isinstance(v, torch.nn.Module)}


def _offload_chain(modules, device) -> None:
    """accelerate's ``cpu_offload_with_hook`` on ``modules`` in call order: each moves to
    ``device`` when called and sends the previous one back to the CPU (what
    ``enable_model_cpu_offload`` does for a diffusers pipeline)."""
    from accelerate import cpu_offload_with_hook

    hook = None
    for module in modules:
        _, hook = cpu_offload_with_hook(module, execution_device=device, prev_module_hook=hook)


def apply_plan(pipe, plan: MemoryPlan, device) -> list[str]:
    """Apply ``plan`` to a loaded model with the libraries' own switches and put it on
    ``device``.

    - dtype: ``DiffusionPipeline.to(dtype=...)``; for gen4d's ``Zero123Guidance`` and the
      CLIPSeg remover, each network's ``.to(dtype)``;
    - VAE slicing / tiling: the VAE's ``enable_slicing`` / ``enable_tiling`` (and their
      ``disable_*``); skipped with a note for SVD's temporal decoder, which ignores them;
    - offload, only on an accelerator (on the CPU: skipped, logged): diffusers pipelines use
      ``enable_model_cpu_offload`` / ``enable_sequential_cpu_offload``;
      ``Zero123PlusPipeline`` keeps its UNet on ``device`` and chains accelerate offload
      hooks over text encoder → vision encoder → VAE; ``Zero123Guidance`` keeps UNet and VAE
      on ``device`` and hooks image encoder → camera projection;
    - ``decode_chunk_size`` is read by the caller (``image_to_frames``).

    Args:
        pipe: what ``registry.load`` returned (on the CPU when the plan offloads).
        plan: the plan.
        device: the execution device.

    Returns:
        The actions taken and skipped, one line each (also logged). ``pipe.memory_plan`` is
        set to ``plan`` where the object allows it.

    Raises:
        ValueError: an offload mode the object does not support (sequential offload of
            gen4d's own pipelines; any offload of other objects).
    """
    from diffusers import DiffusionPipeline

    actions: list[str] = []
    is_diffusers = isinstance(pipe, DiffusionPipeline)
    own = pipe.__class__.__name__ in ("Zero123PlusPipeline", "Zero123Guidance")
    if plan.dtype is not None:
        if is_diffusers:
            pipe.to(dtype=plan.torch_dtype)
        else:
            for module in _modules(pipe).values():
                module.to(dtype=plan.torch_dtype)
        actions.append(f"dtype {plan.dtype}")
    actions.append("attention: SDPA (the processors' own scaled_dot_product_attention)")
    vae = getattr(pipe, "vae", None)
    if vae is not None:
        if type(vae).__name__ == "AutoencoderKLTemporalDecoder":
            if plan.vae_slicing or plan.vae_tiling:
                actions.append("VAE slicing/tiling skipped: the temporal decoder ignores them (decode_chunk_size)")
        else:
            (vae.enable_slicing if plan.vae_slicing else vae.disable_slicing)()
            (vae.enable_tiling if plan.vae_tiling else vae.disable_tiling)()
            actions.append(f"VAE slicing {'on' if plan.vae_slicing else 'off'}, tiling {'on' if plan.vae_tiling else 'off'}")
    offload = plan.offload
    if offload != "none" and (offload == "sequential" and own or not (is_diffusers or own)):
        raise ValueError(f"{type(pipe).__name__} does not support {offload} CPU offload")
    if offload != "none" and not is_accelerator(device):
        actions.append(f"{offload} CPU offload skipped: no accelerator ({device})")
        offload = "none"
    if offload == "none":
        pipe.to(device)
        actions.append(f"all weights on {device}")
    elif own and pipe.__class__.__name__ == "Zero123PlusPipeline":
        pipe.unet.to(device)
        _offload_chain([pipe.text_encoder, pipe.vision_encoder, pipe.vae], device)
        actions.append(f"model CPU offload: unet on {device}, text encoder -> vision encoder -> vae hooked")
    elif own:
        pipe.unet.to(device)
        pipe.vae.to(device)
        _offload_chain([pipe.image_encoder, pipe.camera_projection], device)
        actions.append(f"model CPU offload: unet and vae on {device}, image encoder -> camera projection hooked")
    elif offload == "model":
        pipe.enable_model_cpu_offload(device=device)
        actions.append("model CPU offload (diffusers enable_model_cpu_offload)")
    else:
        pipe.enable_sequential_cpu_offload(device=device)
        actions.append("sequential CPU offload (diffusers enable_sequential_cpu_offload)")
    for line in actions:
        log.info("%s memory plan: %s", plan.role, line)
    try:
        pipe.memory_plan = plan
    except AttributeError:  # pragma: no cover - objects with __slots__
        pass
    return actions


def measured_reconstruct_peak_bytes(path: str | Path | None = None) -> tuple[int, str] | None:
    """The largest CUDA peak (``peak_mem_mb``, MiB) of the reconstruction benchmark
    (``benchmarks/results/reconstruct_gpu.json``, a MEASUREMENT at that file's image sizes
    and Gaussian counts), as ``(bytes, description)``; None when the file is absent."""
    path = Path(path or DEFAULT_RECONSTRUCT_PATH)
    if not path.is_file():
        return None
    rows = [r for r in json.loads(path.read_text()) if r.get("device") == "cuda" and r.get("peak_mem_mb")]
    if not rows:
        return None
    top = max(rows, key=lambda r: r["peak_mem_mb"])
    return int(top["peak_mem_mb"] * 2 ** 20), (f"measured in {path.name}: {top['config']} / {top['scene']}, "
                                               f"{top.get('image_size')} px, {top.get('n_gaussians')} Gaussians")


__all__ = ["MemoryPlan", "StageProfile", "StageSettings", "plan_for", "apply_plan", "estimate_peak_bytes",
           "estimate_phases", "candidate_plans", "load_profiles", "settings_for", "check_budget",
           "measured_reconstruct_peak_bytes"]
