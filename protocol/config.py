"""The reconstruction options a job may carry: nested config dataclasses, nerfstudio style.

This is part of the wire contract: a job spec's ``"options"`` override fields of
:class:`ReconstructConfig`, and both ends read this one schema (the backend builds its
optimizer from it; the add-on validates its panel's overrides against it before sending).
Pure standard library, so it ships inside the Blender extension.

Sections (each a dataclass; see ``docs/design.md`` "Configuration"):

- :class:`DataConfig` — training image size and the coarse-to-fine resolution schedule;
- :class:`ModelConfig` — the 4D representation (``trajectory`` | ``hexplane`` | ``static``),
  the initial Gaussian count, and each representation's own config
  (:class:`TrajectoryConfig`, :class:`HexPlaneConfig`);
- :class:`OptimizationConfig` — steps, batch, seed and Adam learning rates;
- :class:`DensificationConfig` — gsplat's 3DGS strategy or STAG4D's adaptive one;
- :class:`LossConfig` — weights of the loss terms beside the image loss;
- :class:`OutputConfig` — previews;
- :class:`MemoryConfig` — the GPU memory budget every model-running stage of the job plans for.

:class:`OrbitConfig` (an orbital job's ``"orbit"``) is checked by the same rules.

Overrides (:func:`apply_options`) may be given three ways, mixed freely:

- nested dicts: ``{"optimization": {"iterations": 500}}``;
- dotted paths: ``{"optimization.iterations": 500}`` (what ``--option`` takes);
- a bare field name when it names exactly one field anywhere: ``{"iterations": 500}``.

Any unknown name, ambiguous bare name, wrong type, value outside a field's choices or
bounds, or non-finite number raises :class:`InvalidOptionError` (code ``invalid_option``).
An optional field (annotated ``X | None``) also takes null (JSON ``null``,
``--option KEY=null``), meaning unset.
"""

from __future__ import annotations

import math
import sys
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

from .errors import InvalidOptionError
from .formats.image_formation import BLENDER, IMAGE_FORMATIONS

#: most items of a list option.
MAX_LIST_ITEMS = 16
REPRESENTATIONS = ("trajectory", "hexplane", "control_points", "static")
DENSIFY_STRATEGIES = ("default", "stag4d")


def _choices(*values: str) -> dict:
    return {"choices": values}


def _at_least(low: float) -> dict:
    return {"min": low}


def _between(low: float, high: float) -> dict:
    """Bounds of a field: ``low <= value <= high``. The upper bounds keep one job within what
    a backend can run (time, memory, files written); see also :mod:`protocol.limits`."""
    return {"min": low, "max": high}


def _items_between(low: float, high: float) -> dict:
    """Bounds of every item of a list field."""
    return {"item_min": low, "item_max": high}


@dataclass
class DataConfig:
    """How the training footage is sized.

    Attributes:
        max_image_size: longest side (px) the footage is resized to (area filter).
        low_res_fraction: the first ``low_res_fraction`` of the steps fit images
            downsampled by ``low_res_factor`` (coarse to fine, as STAG4D's 128 → 256 → 512).
        low_res_factor: downsampling factor of that first phase; 1 = off.
    """

    max_image_size: int = field(default=128, metadata=_between(8, 4096))
    low_res_fraction: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})
    low_res_factor: int = field(default=2, metadata=_between(1, 64))


@dataclass
class TrajectoryConfig:
    """Motion basis of :class:`~backend.gaussians.trajectories.TrajectoryGaussians4D`.

    Attributes:
        poly_degree: degree of the position polynomial in ``τ = 2t − 1`` (0..3).
        n_fourier: number of Fourier frequencies ``sin/cos(2π f t)``, f = 1..n.
        rot_degree: degree of the quaternion offset polynomial in τ.
        sh_degree: SH degree of the static colour.
    """

    poly_degree: int = field(default=3, metadata={"min": 0, "max": 3})
    n_fourier: int = field(default=2, metadata={"min": 0, "max": 16})
    rot_degree: int = field(default=1, metadata={"min": 0, "max": 3})
    sh_degree: int = field(default=0, metadata={"min": 0, "max": 3})


@dataclass
class HexPlaneConfig:
    """Sizes, initialization, regularizer weights and schedule of the HexPlane deformation
    (:class:`~backend.gaussians.hexplane.HexPlaneGaussians4D`, after 4DGaussians / STAG4D).

    The class defaults are the CPU-sized model with STAG4D's regularizer weights; the
    reconstruct stage's default (:class:`ModelConfig`) scales those weights to its image
    loss. The paper sizes are :meth:`paper`: base resolution ``[64, 64, 64, T/2]``,
    ``multires = [1, 2, 4, 8]``, feature dim 32, MLP width 64.

    Attributes:
        resolution: base plane resolution ``[Rx, Ry, Rz, Rt]`` (grid nodes per axis).
            Level ``s`` multiplies the three spatial resolutions by ``multires[s]``; the
            time resolution is the same at every level (4DGaussians: "multi-res only on
            spatial planes").
        multires: spatial resolution multipliers, one feature level each.
        feature_dim: channels C per plane; the field outputs ``C · len(multires)``.
        mlp_width: hidden width W of the deformation MLP (4DGaussians/STAG4D: 64).
        mlp_depth: linear layers in the shared trunk (4DGaussians ``defor_depth``; 1 =
            a single ``Linear(F, W)``).
        init_low, init_high: spatial planes start ``uniform(init_low, init_high)``
            (K-Planes / 4DGaussians: 0.1, 0.5); time planes start at exactly 1.
        deform_scales: predict Δlog-scale (4DGaussians ``no_ds = False``).
        deform_rotations: predict Δquaternion (4DGaussians ``no_dr = False``).
        sh_degree: SH degree of the (static) colour; ``shN`` is stored when > 0.
        plane_tv_weight: weight of the spatial-plane total variation (STAG4D 0.05).
        time_smoothness_weight: weight of the time-plane second-order smoothness (STAG4D 5).
        l1_time_weight: weight of the time planes' L1 distance from 1 (STAG4D 0.05).
        coarse_fraction: fraction of the training steps fitted as static Gaussians before
            the deformation is switched on (4DGaussians' coarse stage).
    """

    resolution: list[int] = field(default_factory=lambda: [16, 16, 16, 8], metadata=_items_between(1, 512))
    multires: list[int] = field(default_factory=lambda: [1, 2], metadata=_items_between(1, 16))
    feature_dim: int = field(default=16, metadata=_between(1, 256))
    mlp_width: int = field(default=64, metadata=_between(1, 1024))
    mlp_depth: int = field(default=1, metadata=_between(1, 16))
    init_low: float = 0.1
    init_high: float = 0.5
    deform_scales: bool = True
    deform_rotations: bool = True
    sh_degree: int = field(default=0, metadata={"min": 0, "max": 3})
    plane_tv_weight: float = field(default=0.05, metadata=_at_least(0.0))
    time_smoothness_weight: float = field(default=5.0, metadata=_at_least(0.0))
    l1_time_weight: float = field(default=0.05, metadata=_at_least(0.0))
    coarse_fraction: float = field(default=0.3, metadata={"min": 0.0, "max": 1.0})

    @classmethod
    def paper(cls, n_frames: int, **overrides) -> "HexPlaneConfig":
        """STAG4D's configuration for a clip of ``n_frames`` input frames.

        Planes ``[64, 64, 64, max(2, n_frames // 2)]`` × multires ``[1, 2, 4, 8]``, feature
        dim 32, MLP width 64, regularizers TV 0.05 / time smoothness 5 / L1-time 0.05.
        About 34.8M plane parameters for 30 frames (the ×8 level alone is 26M): a GPU
        configuration. The CPU default has 80k plane parameters.
        """
        cfg = cls(resolution=[64, 64, 64, max(2, n_frames // 2)], multires=[1, 2, 4, 8], feature_dim=32,
                  mlp_width=64)
        return replace(cfg, **overrides)


@dataclass
class ControlPointConfig:
    """Sparse control points and their deformation MLP
    (:class:`~backend.gaussians.control_points.ControlPointGaussians4D`, after SC-GS).

    Attributes:
        n_control: control points M (SC-GS: 512), a farthest-point sample of the initial
            Gaussians.
        k_neighbors: control points blended per Gaussian (SC-GS: 4).
        mlp_width, mlp_depth: the deformation MLP (Deformable-3DGS: 256 × 8; the MLP runs
            on M points per time, so its cost does not grow with the Gaussian count).
        pos_freqs, time_freqs: positional-encoding octaves of the control point's position
            (normalized by the scene radius) and of time (mapped to [−1, 1]).
        encode_pi: multiply the encoded inputs by π before sin/cos (NeRF's convention:
            octave k has 2^(k−1) periods over [−1, 1]); Deformable-3DGS and SC-GS leave π
            out. Measured: jumpingjacks at 200 px, 1500 steps, 28.67 dB with π and 27.81
            without; 32.11 dB at 400 px with π (``benchmarks/dnerf.py``).
        static_fraction: fraction of the steps fitted without motion first (warm-up).
        knn_every: steps between recomputations of each Gaussian's neighbours.
        sh_degree: SH degree of the colour.
    """

    n_control: int = field(default=512, metadata=_between(1, 100_000))
    k_neighbors: int = field(default=4, metadata={"min": 1, "max": 16})
    mlp_width: int = field(default=128, metadata={"min": 8, "max": 1024})
    mlp_depth: int = field(default=6, metadata={"min": 1, "max": 16})
    pos_freqs: int = field(default=6, metadata={"min": 0, "max": 16})
    time_freqs: int = field(default=6, metadata={"min": 0, "max": 16})
    encode_pi: bool = True
    static_fraction: float = field(default=0.05, metadata={"min": 0.0, "max": 1.0})
    knn_every: int = field(default=100, metadata=_between(1, 1_000_000))
    sh_degree: int = field(default=0, metadata={"min": 0, "max": 3})


def _reconstruct_hexplane() -> HexPlaneConfig:
    # STAG4D's plane TV 0.05, time smoothness 5 and L1-time 0.05 sit beside an RGB loss
    # weighted 2e4; here the image loss has weight 1, so they are divided by 2e4.
    return HexPlaneConfig(plane_tv_weight=2.5e-6, time_smoothness_weight=2.5e-4, l1_time_weight=2.5e-6)


@dataclass
class ModelConfig:
    """Which 4D representation is fitted, and its own settings.

    Attributes:
        representation: ``"trajectory"`` (per-Gaussian polynomial + Fourier trajectories),
            ``"hexplane"`` (a HexPlane deformation field after a static coarse phase) or
            ``"static"`` (time-independent Gaussians: the baseline that shows what motion
            earns).
        n_init: Gaussians carved from the footage's masks at the start.
        trajectory: the trajectory basis (used by ``trajectory``).
        hexplane: the deformation field (used by ``hexplane``).
        control_points: sparse control points + deformation MLP (used by
            ``control_points``).
        image_formation: how the fit forms its images, so the asset looks the same where
            it is shown (:mod:`protocol.formats.image_formation`): ``"blender"`` (the
            default: colours composited in linear light, each splat integrated over
            Cycles' 1.5 px pixel filter, as Cycles and Eevee render the add-on's splats)
            or ``"3dgs"`` (the standard 3DGS formation other 3DGS tools use, sRGB values
            composited as they are, 0.3 px² dilation).
            The manifest records it (``image_formation``).
    """

    representation: str = field(default="trajectory", metadata=_choices(*REPRESENTATIONS))
    image_formation: str = field(default=BLENDER, metadata=_choices(*IMAGE_FORMATIONS))
    n_init: int = field(default=4000, metadata=_between(1, 2_000_000))
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)
    hexplane: HexPlaneConfig = field(default_factory=_reconstruct_hexplane)
    control_points: ControlPointConfig = field(default_factory=ControlPointConfig)


@dataclass
class OptimizationConfig:
    """Steps, batch and Adam learning rates.

    Position-like rates (``lr_means``, ``lr_motion``) are multiplied by the scene radius
    and decay exponentially to ``lr_final_factor`` of their start over the run.

    Attributes:
        iterations: optimizer steps.
        batch_size: (time, camera) frames rendered per step.
        seed: seeds every random draw of the fit.
        lr_means, lr_motion, lr_quats, lr_rot_motion, lr_scales, lr_opacities, lr_sh0:
            per-Gaussian parameter groups (``shN`` uses ``lr_sh0 / 20``).
        lr_final_factor: final / initial rate of the position-like groups.
        lr_hexplane_planes, lr_hexplane_mlp: the HexPlane field's groups (4DGaussians uses
            1.6e-3 / 1.6e-4 over 14k steps; these runs are about 10× shorter).
        lr_deform: the control-point deformation MLP (Deformable-3DGS: 8e-4), decaying to
            ``lr_final_factor`` of it.
        time_limit_s: wall-clock limit of the whole reconstruct stage (initialization
            included), in seconds; the fit stops at the last step that ends within it
            (the schedule is not compressed: later steps are skipped). 0 = no limit.
        time_budget_s: wall-clock budget of the reconstruct stage (initialization
            included), in seconds: every phase of the schedule (coarse-to-fine, warm-up,
            densification, learning-rate decay) is placed by the larger of the step's and
            the time's fraction, so the fit ends at the budget with its schedule complete,
            or at ``iterations`` steps if those come first
            (:mod:`backend.pipeline.reconstruct.schedule`). 0 = schedule by steps only.
        checkpoint_every_s: seconds between checkpoints of the fit when the job runs under
            the server (``<job_dir>/checkpoint/``, :mod:`backend.pipeline.reconstruct.checkpoint`),
            so a job left running by a crash resumes from its last checkpoint; 0 = off. The
            CLI never checkpoints.
    """

    iterations: int = field(default=1500, metadata=_between(1, 1_000_000))
    batch_size: int = field(default=4, metadata=_between(1, 256))
    seed: int = 0
    lr_means: float = field(default=1.6e-3, metadata=_at_least(0.0))
    lr_motion: float = field(default=1.6e-3, metadata=_at_least(0.0))
    lr_final_factor: float = field(default=0.02, metadata=_at_least(0.0))
    lr_quats: float = field(default=2e-3, metadata=_at_least(0.0))
    lr_rot_motion: float = field(default=1e-3, metadata=_at_least(0.0))
    lr_scales: float = field(default=1e-2, metadata=_at_least(0.0))
    lr_opacities: float = field(default=5e-2, metadata=_at_least(0.0))
    lr_sh0: float = field(default=5e-3, metadata=_at_least(0.0))
    lr_hexplane_planes: float = field(default=1e-2, metadata=_at_least(0.0))
    lr_hexplane_mlp: float = field(default=1e-3, metadata=_at_least(0.0))
    lr_deform: float = field(default=8e-4, metadata=_at_least(0.0))
    time_limit_s: float = field(default=0.0, metadata={"min": 0.0, "max": 7 * 24 * 3600.0})
    time_budget_s: float = field(default=0.0, metadata={"min": 0.0, "max": 7 * 24 * 3600.0})
    checkpoint_every_s: float = field(default=60.0, metadata={"min": 0.0, "max": 24 * 3600.0})


@dataclass
class DensificationConfig:
    """Adaptive density control on gsplat's strategy contract.

    Attributes:
        enabled: densify at all.
        strategy: ``"default"`` (gsplat's 3DGS ``DefaultStrategy``) or ``"stag4d"``
            (STAG4D's adaptive one: top 2.5 % by gradient, opacity / scale pruning).
        start: first refinement step.
        stop_fraction: refinement stops at this fraction of the run.
        every: refinement interval (steps).
        grow_grad2d: 3DGS image-space gradient threshold for cloning/splitting.
        max_gaussians: hard cap on the Gaussian count.
        max_scale_ratio: STAG4D's cap on the largest / smallest axis ratio (7.5); 0 = off.
    """

    enabled: bool = True
    strategy: str = field(default="default", metadata=_choices(*DENSIFY_STRATEGIES))
    start: int = field(default=200, metadata=_between(0, 1_000_000))
    stop_fraction: float = field(default=0.7, metadata={"min": 0.0, "max": 1.0})
    every: int = field(default=100, metadata=_between(1, 1_000_000))
    grow_grad2d: float = field(default=2e-4, metadata=_at_least(0.0))
    max_gaussians: int = field(default=10000, metadata=_between(1, 10_000_000))
    max_scale_ratio: float = field(default=0.0, metadata=_at_least(0.0))


@dataclass
class LossConfig:
    """Weights of the loss terms beside the image loss (``0.8·L1 + 0.2·(1 − SSIM)``).

    Attributes:
        alpha_weight: L1 between rendered alpha and the footage's mask.
        confidence_weighting: Efficient4D's confidence-aware photometric loss
            (confidence from OpenCV optical flow; needs synchronized multi-view footage).
        rigidity_weight: kNN local-rigidity regularizer; 0 = off.
        rigidity_random_times: extra uniform random times per step at which rigidity is
            also evaluated, so unseen in-between times are held rigid too.
        sds_weight: STAG4D SDS on random novel cameras (needs the ``sds_guidance`` model);
            0 = off.
        sds_every: SDS on every k-th step.
    """

    alpha_weight: float = field(default=0.5, metadata=_at_least(0.0))
    confidence_weighting: bool = False
    rigidity_weight: float = field(default=0.0, metadata=_at_least(0.0))
    rigidity_random_times: int = field(default=2, metadata=_between(0, 64))
    sds_weight: float = field(default=0.0, metadata=_at_least(0.0))
    sds_every: int = field(default=1, metadata=_between(1, 1_000_000))


@dataclass
class OutputConfig:
    """What the fit reports while it runs, and what it exports.

    Attributes:
        preview_every_s: seconds between preview images (ground truth beside the render).
        standard_ply_refit: for an asset not fitted for ``"3dgs"``, the length of the refit
            of its colours and opacities for the standard 3DGS formation, as a fraction of
            the steps the fit ran; its frames are written to ``frames_3dgs/`` for other
            3DGS tools (:mod:`protocol.formats.manifest`). 0 = no refit, no ``frames_3dgs/``.
    """

    preview_every_s: float = field(default=10.0, metadata=_at_least(0.0))
    standard_ply_refit: float = field(default=0.2, metadata={"min": 0.0, "max": 1.0})


#: the largest ``vram_budget_gb`` accepted (GB): above any single accelerator sold today, so a
#: larger value is a unit mistake (bytes or MB given as GB).
MAX_VRAM_BUDGET_GB = 1024.0


@dataclass
class MemoryConfig:
    """GPU memory the job may use; read by every stage that runs a model
    (``backend.models.memory.plan_for`` picks each stage's precision, VAE slicing/tiling
    and CPU offload so the *estimated* peak fits).

    Attributes:
        vram_budget_gb: budget in GB (10⁹ bytes) of accelerator memory; None = no limit
            (models load as saved, nothing offloaded: the behaviour without this setting).
            Must be a finite number in (0, :data:`MAX_VRAM_BUDGET_GB`].
    """

    vram_budget_gb: float | None = field(default=None, metadata={"above": 0.0, "max": MAX_VRAM_BUDGET_GB})


@dataclass
class ReconstructConfig:
    """Every setting of the reconstruct stage, in sections, plus the job-wide
    :class:`MemoryConfig`. The defaults are the ``standard`` preset (:mod:`protocol.presets`)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimization: OptimizationConfig = field(default_factory=OptimizationConfig)
    densification: DensificationConfig = field(default_factory=DensificationConfig)
    losses: LossConfig = field(default_factory=LossConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)


@dataclass
class OrbitConfig:
    """How an orbital video's camera moves (``spec["orbit"]`` of an ``orbital`` job, the
    Diffusion4D input); angles in degrees, distances in metres. Read by the backend's
    orbital ingest, the add-on's From Orbital Video operator and the CLI's ``--orbit``.

    Attributes:
        sweep_deg: azimuth travelled from the first to the last frame; Diffusion4D's
            24-frame orbit at 15° steps sweeps 345°. Negative: clockwise seen from above.
        start_azimuth_deg: azimuth of the first frame (0: on the +X axis).
        elevation_deg: camera elevation above the orbit centre's horizontal plane, within
            ±89°.
        fov_deg: the video camera's horizontal field of view, in (1°, 170°).
        radius: camera distance from the orbit centre (sets the scene scale), > 0.
    """

    sweep_deg: float = 345.0
    start_azimuth_deg: float = 0.0
    elevation_deg: float = field(default=0.0, metadata={"above": -89.0, "below": 89.0})
    fov_deg: float = field(default=39.6, metadata={"above": 1.0, "below": 170.0})
    radius: float = field(default=2.0, metadata={"above": 0.0})


# -- overrides ----------------------------------------------------------------------------


def field_paths(cls: type) -> dict[str, Any]:
    """Every leaf field of a (nested) config dataclass: dotted path → :class:`dataclasses.Field`.

    Example: ``field_paths(ReconstructConfig)["optimization.iterations"]``.
    """
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in fields(cls):
        tp = hints[f.name]
        if is_dataclass(tp):
            for sub, leaf in field_paths(tp).items():
                out[f"{f.name}.{sub}"] = leaf
        else:
            out[f.name] = (f, tp)
    return out


def _flatten(options: dict, prefix: str = "") -> list[tuple[str, Any]]:
    items = []
    for key, value in options.items():
        if not isinstance(key, str) or not key:
            raise InvalidOptionError(f"option names must be non-empty strings, got {key!r}")
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            items += _flatten(value, path + ".")
        else:
            items.append((path, value))
    return items


def _resolve_path(cls: type, paths: dict, name: str) -> str:
    if name in paths:
        return name
    matches = [p for p in paths if p.rsplit(".", 1)[-1] == name.rsplit(".", 1)[-1] and p.endswith("." + name)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise InvalidOptionError(f"option {name!r} is ambiguous: write one of {sorted(matches)}")
    raise InvalidOptionError(f"unknown {cls.__name__} option {name!r}")


def _optional_inner(tp):
    """``X`` for an ``X | None`` annotation, else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
    return None


def _coerce(path: str, value: Any, f, tp) -> Any:
    inner = _optional_inner(tp)
    if inner is not None:  # an optional field: null means "unset", anything else is checked as X
        return None if value is None else _coerce(path, value, f, inner)
    origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or not value:
            raise InvalidOptionError(f"option {path!r} must be a non-empty list of {item_tp.__name__}, got {value!r}")
        if len(value) > MAX_LIST_ITEMS:
            raise InvalidOptionError(f"option {path!r} has {len(value)} items; at most {MAX_LIST_ITEMS}")
        items = [_coerce(f"{path}[{i}]", v, None, item_tp) for i, v in enumerate(value)]
        meta = f.metadata if f is not None else {}
        for i, item in enumerate(items):
            if "item_min" in meta and item < meta["item_min"] or "item_max" in meta and item > meta["item_max"]:
                raise InvalidOptionError(f"option {path}[{i}] must be in [{meta.get('item_min')}, "
                                         f"{meta.get('item_max')}], got {item!r}")
        return items
    if tp is bool:
        if not isinstance(value, bool):
            raise InvalidOptionError(f"option {path!r} must be true or false, got {value!r}")
        out = value
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and (not math.isfinite(value) or value != int(value))):
            raise InvalidOptionError(f"option {path!r} must be a whole number, got {value!r}")
        out = int(value)
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, int) and abs(value) > sys.float_info.max) or not math.isfinite(value):
            raise InvalidOptionError(f"option {path!r} must be a finite number, got {value!r:.80}")
        out = float(value)
    elif tp is str:
        if not isinstance(value, str):
            raise InvalidOptionError(f"option {path!r} must be a string, got {value!r}")
        out = value
    else:  # pragma: no cover - a config field of a type this schema does not know
        raise InvalidOptionError(f"option {path!r} cannot be set")
    meta = f.metadata if f is not None else {}
    if "choices" in meta and out not in meta["choices"]:
        raise InvalidOptionError(f"option {path!r} must be one of {list(meta['choices'])}, got {out!r}")
    if "min" in meta and out < meta["min"]:
        raise InvalidOptionError(f"option {path!r} must be >= {meta['min']}, got {out!r}")
    if "max" in meta and out > meta["max"]:
        raise InvalidOptionError(f"option {path!r} must be <= {meta['max']}, got {out!r}")
    if "above" in meta and not out > meta["above"]:
        raise InvalidOptionError(f"option {path!r} must be > {meta['above']}, got {out!r}")
    if "below" in meta and not out < meta["below"]:
        raise InvalidOptionError(f"option {path!r} must be < {meta['below']}, got {out!r}")
    return out


def _set(cfg, parts: list[str], value):
    if len(parts) == 1:
        return replace(cfg, **{parts[0]: value})
    child = getattr(cfg, parts[0])
    return replace(cfg, **{parts[0]: _set(child, parts[1:], value)})


def apply_options(cfg, options: dict | None):
    """A copy of the config dataclass ``cfg`` with ``options`` applied (never modifies ``cfg``).

    Works for any (nested) dataclass, e.g. :class:`ReconstructConfig` or the backend's
    generation settings.

    Args:
        cfg: a dataclass instance.
        options: ``{name: value}`` as nested dicts, dotted paths or unique bare names; None
            or empty changes nothing. Integers are accepted for float fields; floats only
            for int fields when whole.

    Raises:
        InvalidOptionError: ``options`` is not a dict; a name is unknown or ambiguous; a
            value has the wrong type, is not finite, or is outside the field's choices or
            bounds.
    """
    if options is None:
        return replace(cfg)
    if not isinstance(options, dict):
        raise InvalidOptionError(f"options must be a JSON object of name: value, got {type(options).__name__}")
    paths = field_paths(type(cfg))
    seen: dict[str, str] = {}
    for name, value in _flatten(options):
        if isinstance(value, dict):  # an empty section: it must still be one this config has
            if not any(p.startswith(name + ".") for p in paths):
                raise InvalidOptionError(f"unknown option section {name!r}")
            continue
        path = _resolve_path(type(cfg), paths, name)
        if path in seen:
            raise InvalidOptionError(f"option {path!r} is given twice (as {seen[path]!r} and {name!r})")
        seen[path] = name
        f, tp = paths[path]
        cfg = _set(cfg, path.split("."), _coerce(path, value, f, tp))
    return cfg


def config_to_dict(cfg) -> dict:
    """The config as nested plain dicts (JSON-ready); the inverse of
    ``apply_options(type(cfg)(), d)``."""
    from dataclasses import asdict

    return asdict(cfg)
