"""Reconstruct stage: fit 4D Gaussians to calibrated, timed multi-view footage.

Loss: ``0.8·L1 + 0.2·(1 − SSIM)`` on images composited over a random background colour,
plus an L1 alpha/mask loss (DESIGN.md "Common image loss"). Densification: gsplat's
``DefaultStrategy`` (3DGS). Initialization: space carving of the footage's masks at the
middle time, coloured from the images. One training step renders a batch of random
(time, camera) frames.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass, field, fields, replace

import imageio.v3 as iio
import numpy as np
import torch

from backend.errors import BadInputError, JobError
from backend.gaussians.hexplane import HexPlaneConfig, HexPlaneGaussians4D
from backend.gaussians.trajectories import TrajectoryConfig, TrajectoryGaussians4D
from backend.optim.confidence import confidence_maps, weighted_image_loss
from backend.optim.rigidity import LocalRigidity
from backend.optim.stag4d_densify import STAG4DStrategy, cap_scale_ratio
from backend.optim.densify import Densifier, make_default_strategy
from backend.optim.losses import alpha_loss, image_loss
from backend.pipeline.context import JobContext
from backend.pipeline.ingest import Footage, resize_footage_images
from backend.render import rasterize, rgb_to_sh0


@dataclass
class ReconstructConfig:
    """Optimization settings; presets in :data:`PRESETS`, any field overridable per job.

    Learning rates are for Adam; position-like rates are multiplied by the scene radius
    and decay exponentially to ``lr_final_factor`` of their start.
    """

    iterations: int = 1500
    batch_size: int = 4
    max_image_size: int = 128
    n_init: int = 4000
    motion: str = "trajectory"  # "trajectory" | "static"
    representation: str = "trajectory"  # "trajectory" | "hexplane"
    densify_strategy: str = "default"  # "default" (gsplat 3DGS) | "stag4d"
    confidence_weighting: bool = False  # Efficient4D confidence-aware photometric loss
    rigidity_weight: float = 0.0  # kNN local-rigidity regularizer weight
    # The rigidity term is also evaluated at this many uniform random times in [0, 1]
    # per step, so in-between (unseen) times are held rigid too, not only the batch's.
    rigidity_random_times: int = 2
    max_scale_ratio: float = 0.0  # STAG4D scale-ratio cap (7.5); 0 = off
    # STAG4D SDS on novel cameras (needs the sds_guidance model); 0 = off.
    sds_weight: float = 0.0
    sds_every: int = 1  # SDS on every k-th step
    hexplane_coarse_fraction: float = 0.3  # static (coarse) phase before deformation
    # 4DGaussians uses 1.6e-3 / 1.6e-4 over 14k steps; these runs are ~10x shorter.
    lr_hexplane_planes: float = 1e-2
    lr_hexplane_mlp: float = 1e-3
    # STAG4D's plane TV 0.05, time smoothness 5 and L1-time 0.05 sit beside an RGB loss
    # weighted 2e4; here the image loss has weight 1, so they are divided by 2e4.
    hexplane_tv_weight: float = 2.5e-6
    hexplane_time_smoothness_weight: float = 2.5e-4
    hexplane_l1_time_weight: float = 2.5e-6
    poly_degree: int = 3
    n_fourier: int = 2
    rot_degree: int = 1
    lr_means: float = 1.6e-3
    lr_motion: float = 1.6e-3
    lr_final_factor: float = 0.02
    lr_quats: float = 2e-3
    lr_rot_motion: float = 1e-3
    lr_scales: float = 1e-2
    lr_opacities: float = 5e-2
    lr_sh0: float = 5e-3
    alpha_weight: float = 0.5
    low_res_fraction: float = 0.5
    low_res_factor: int = 2
    densify: bool = True
    densify_start: int = 200
    densify_stop_fraction: float = 0.7
    densify_every: int = 100
    grow_grad2d: float = 2e-4
    max_gaussians: int = 10000
    seed: int = 0
    preview_every_s: float = 10.0

    @classmethod
    def from_options(cls, preset: str, options: dict | None = None) -> "ReconstructConfig":
        """A preset with per-job overrides.

        Raises:
            JobError: ``unknown_preset`` or ``invalid_option`` (unknown key or bad type).
        """
        if preset not in PRESETS:
            raise JobError("unknown_preset", f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        cfg = PRESETS[preset]
        names = {f.name: f.type for f in fields(cls)}
        changes = {}
        for key, value in (options or {}).items():
            if key not in names:
                raise JobError("invalid_option", f"unknown reconstruction option {key!r}")
            current = getattr(cfg, key)
            if isinstance(current, bool) != isinstance(value, bool) or not isinstance(value, (int, float, str, bool)):
                raise JobError("invalid_option", f"option {key!r} has the wrong type: {value!r}")
            try:
                changes[key] = type(current)(value)
            except (TypeError, ValueError):
                raise JobError("invalid_option", f"option {key!r} has the wrong type: {value!r}") from None
        choices = {"motion": ("trajectory", "static"), "representation": ("trajectory", "hexplane"),
                   "densify_strategy": ("default", "stag4d")}
        for key, allowed in choices.items():
            if changes.get(key, getattr(cfg, key)) not in allowed:
                raise JobError("invalid_option", f"option {key!r} must be one of {list(allowed)}")
        return replace(cfg, **changes)

    def trajectory_config(self, n_times: int | None = None) -> TrajectoryConfig:
        """Motion basis for the model (all zero for ``motion = "static"``).

        With ``n_times`` distinct training times, the basis is cut to at most
        ``n_times − 1`` functions (Fourier terms first, then polynomial degree), so every
        coefficient is pinned down by the data. Without the cut, a clip fitted on t = 0,
        0.5, 1 would leave ``sin(2πt)`` terms (zero at all three) free, and in-between
        times would be arbitrary.
        """
        if self.motion == "static":
            return TrajectoryConfig(poly_degree=0, n_fourier=0, rot_degree=0)
        poly, fourier, rot = self.poly_degree, self.n_fourier, self.rot_degree
        if n_times is not None:
            budget = max(n_times - 1, 0)
            fourier = min(fourier, max(budget - poly, 0) // 2)
            poly = min(poly, budget)
            rot = min(rot, budget)
        return TrajectoryConfig(poly, fourier, rot)


PRESETS: dict[str, ReconstructConfig] = {
    # A few seconds on CPU: structure tests only.
    "tiny": ReconstructConfig(iterations=30, batch_size=2, max_image_size=32, n_init=300, densify=False,
                              preview_every_s=1.0, low_res_factor=1),
    # The demo preset: minutes on a 2-core CPU.
    "cpu": ReconstructConfig(),
    # For a CUDA device (gsplat).
    "gpu": ReconstructConfig(iterations=8000, batch_size=8, max_image_size=512, n_init=20000,
                             densify_start=500, max_gaussians=300000),
}


def scene_bounds(footage: Footage) -> tuple[torch.Tensor, float]:
    """Centre and radius of the region every camera sees.

    The centre is the least-squares point closest to all optical axes; the radius is the
    smallest ``distance · tan(half FOV)`` over cameras.

    Returns:
        ``(centre [3] float32, radius float)`` in metres.
    """
    origins = footage.c2w[:, :3, 3].double()
    dirs = -footage.c2w[:, :3, 2].double()
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    eye = torch.eye(3, dtype=torch.float64)
    P = eye - dirs[:, :, None] * dirs[:, None, :]
    A = P.sum(0)
    b = (P @ origins[:, :, None]).sum(0)
    centre = torch.linalg.lstsq(A, b).solution[:, 0]
    dist = (origins - centre).norm(dim=-1)
    half_fov = torch.atan(0.5 * min(footage.width, footage.height) / footage.Ks[:, 0, 0].double())
    radius = float((dist * torch.tan(half_fov)).min())
    return centre.float(), radius


def carve_initial_points(footage: Footage, n_points: int, generator: torch.Generator,
                         shell_fraction: float = 0.06) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample points in a thin shell inside the visual hull of the footage's masks.

    Synchronized multi-view footage is carved at one time (the best-covered time nearest
    t = 0.5): a candidate survives when it is in frame for at least 80% of those cameras
    and projects inside the mask (alpha > 0.5) of every camera that sees it. Orbital video
    (fewer than 4 cameras per time) is carved over all frames, keeping candidates inside
    the mask of at least 75% of the frames that see them (the object moves between views). Its distance to the hull surface is bounded by the smallest, over
    views, of its projection's distance to the silhouette edge (OpenCV distance
    transform) times depth / focal length; only candidates within ``shell_fraction`` of
    the scene radius of the surface are kept, since interior Gaussians are never seen.

    Args:
        footage: training footage (alpha channel = object mask).
        n_points: how many points to return.
        generator: RNG for candidate sampling.
        shell_fraction: shell thickness as a fraction of the scene radius.

    Returns:
        ``(points [n,3], colours [n,3])`` float32 in metres / [0,1]; ``n <= n_points``.

    Raises:
        BadInputError: when no point survives carving (masks empty or cameras inconsistent).
    """
    import cv2

    centre, radius = scene_bounds(footage)
    # Synchronized multi-view footage: carve the frames of one time (the best-covered
    # time nearest mid-clip), demanding the mask of every camera. Orbital video (about one
    # camera per time): carve all frames, demanding the mask in most of them, since the
    # object moves between the views.
    times, counts = torch.unique(footage.times, return_counts=True)
    if int(counts.max()) >= 4:
        best = times[counts == counts.max()]
        t_carve = best[torch.argmin((best - 0.5).abs())]
        sel = torch.nonzero(footage.times == t_carve).flatten().tolist()
        inside_fraction = 1.0
    else:
        sel = list(range(len(footage)))
        inside_fraction = 0.75
    edge_dist = {}
    for i in sel:
        mask = (footage.images[i, ..., 3] > 0.5).numpy().astype(np.uint8)
        edge_dist[i] = torch.from_numpy(cv2.distanceTransform(mask, cv2.DIST_L2, 5))
    shell = shell_fraction * radius
    # A point that most cameras cannot see is not carved by them: demand it be in frame
    # (and inside the mask) for at least 80% of the cameras.
    min_seen = max(1, int(0.8 * len(sel)))
    keep_pts, keep_cols = [], []
    total = 0
    for _ in range(24):
        cand = centre + (torch.rand(200_000, 3, generator=generator) * 2 - 1) * radius
        inside_count = torch.zeros(len(cand), dtype=torch.int32)
        seen = torch.zeros(len(cand), dtype=torch.int32)
        col_sum = torch.zeros(len(cand), 3)
        depth_to_edge = torch.full((len(cand),), float("inf"))
        for i in sel:
            vm, K = footage.viewmats[i], footage.Ks[i]
            pc = cand @ vm[:3, :3].T + vm[:3, 3]
            z = pc[:, 2].clamp_min(1e-6)
            u = (K[0, 0] * pc[:, 0] / z + K[0, 2]).floor().long()
            v = (K[1, 1] * pc[:, 1] / z + K[1, 2]).floor().long()
            on = (pc[:, 2] > 0) & (u >= 0) & (u < footage.width) & (v >= 0) & (v < footage.height)
            uc, vc = u.clamp(0, footage.width - 1), v.clamp(0, footage.height - 1)
            px = footage.images[i, vc, uc]
            inside_count += (on & (px[:, 3] > 0.5)).int()
            seen += on.int()
            col_sum += torch.where(on[:, None], px[:, :3], torch.zeros(3))
            # The silhouette edge lies half a pixel beyond the last inside pixel centre.
            metric = (edge_dist[i][vc, uc] - 0.5) * z / K[0, 0]
            depth_to_edge = torch.where(on, torch.minimum(depth_to_edge, metric), depth_to_edge)
        inside = inside_count >= torch.ceil(inside_fraction * seen.float()).int()
        ok = inside & (seen >= min_seen) & (depth_to_edge <= shell)
        keep_pts.append(cand[ok])
        keep_cols.append(col_sum[ok] / seen[ok, None].float())
        total += int(ok.sum())
        if total >= n_points:
            break
    pts = torch.cat(keep_pts)
    cols = torch.cat(keep_cols)
    if len(pts) == 0:
        raise BadInputError("no 3D point lies inside the object masks of all cameras: check that the "
                            "images have an alpha mask and that the camera matrices are Blender c2w")
    idx = torch.randperm(len(pts), generator=generator)[:n_points]
    return pts[idx], cols[idx]


def knn_scale(points: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Mean distance to the k nearest neighbours, ``[N]`` (the 3DGS scale initialization)."""
    out = []
    for chunk in points.split(4096):
        d = torch.cdist(chunk, points)
        out.append(d.topk(k + 1, largest=False).values[:, 1:].mean(-1))
    return torch.cat(out).clamp_min(1e-4)


def init_model(footage: Footage, cfg: ReconstructConfig, generator: torch.Generator):
    """Carved points as Gaussians: isotropic scales of half the kNN distance, opacity 0.5,
    colour from the images; a :class:`TrajectoryGaussians4D`, or a
    :class:`HexPlaneGaussians4D` when ``cfg.representation == "hexplane"`` (and the motion
    is not static)."""
    pts, cols = carve_initial_points(footage, cfg.n_init, generator)
    n = len(pts)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1.0
    log_scales = torch.log(0.5 * knn_scale(pts))[:, None].repeat(1, 3)
    sh = rgb_to_sh0(cols.clamp(0.02, 0.98))[:, None, :]
    if cfg.representation == "hexplane" and cfg.motion != "static":
        hex_cfg = HexPlaneConfig(plane_tv_weight=cfg.hexplane_tv_weight,
                                 time_smoothness_weight=cfg.hexplane_time_smoothness_weight,
                                 l1_time_weight=cfg.hexplane_l1_time_weight)
        return HexPlaneGaussians4D(pts, quats, log_scales, torch.zeros(n), sh, hex_cfg)
    return TrajectoryGaussians4D(pts, quats, log_scales, torch.zeros(n), sh,
                                 cfg.trajectory_config(len(footage.unique_times())))


def _optimizers(model: TrajectoryGaussians4D, cfg: ReconstructConfig, radius: float) -> dict:
    lrs = {"means": cfg.lr_means * radius, "motion": cfg.lr_motion * radius, "quats": cfg.lr_quats,
           "rot_motion": cfg.lr_rot_motion, "scales": cfg.lr_scales, "opacities": cfg.lr_opacities,
           "sh0": cfg.lr_sh0, "shN": cfg.lr_sh0 / 20}
    return {k: torch.optim.Adam([p], lr=lrs[k], eps=1e-15) for k, p in model.params.items()}


def make_densifier(cfg: ReconstructConfig, scene_radius: float) -> Densifier | None:
    """The densification strategy for ``cfg`` (None when off), on gsplat's contract.

    ``"stag4d"`` scales STAG4D's schedule (refine every 100 steps from 1200 to 6000 of
    8000) to ``cfg.iterations`` and its absolute prune scales (0.1, 0.001) to the scene
    radius; ``"default"`` is gsplat's 3DGS strategy.
    """
    if not cfg.densify:
        return None
    stop = int(cfg.iterations * cfg.densify_stop_fraction)
    if cfg.densify_strategy == "stag4d":
        strategy = STAG4DStrategy(refine_start=max(cfg.densify_start, int(cfg.iterations * 1200 / 8000)),
                                  refine_stop=stop, refine_every=cfg.densify_every, scale_unit=scene_radius,
                                  max_gaussians=cfg.max_gaussians)
    else:
        strategy = make_default_strategy(cfg.densify_start, stop, cfg.densify_every, cfg.grow_grad2d,
                                         max_gaussians=cfg.max_gaussians)
    return Densifier(strategy, scene_scale=scene_radius)


def footage_confidence(footage: Footage) -> torch.Tensor:
    """Efficient4D confidence ``[F, H, W]`` for every training frame.

    Frames are grouped into views by identical camera matrices and ordered by time.

    Raises:
        JobError: ``invalid_option`` when the footage is not synchronized multi-view
            video (every camera at every time), e.g. an orbital video.
    """
    times = footage.unique_times()
    keys = [tuple(torch.round(c * 1e5).to(torch.int64).flatten().tolist()) for c in footage.c2w]
    views = sorted(set(keys))
    if len(views) * len(times) != len(footage) or len(times) < 3:
        raise JobError("invalid_option", "confidence weighting needs synchronized multi-view footage: every "
                                         "camera at every time, at least 3 times")
    view_of = torch.tensor([views.index(k) for k in keys])
    time_of = footage.time_indices()
    grid = torch.zeros((len(views), len(times)) + tuple(footage.images.shape[1:]))
    grid[view_of, time_of] = footage.images
    conf = confidence_maps(grid)
    return conf[view_of, time_of]


def render_frames(model: TrajectoryGaussians4D, times: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor,
                  width: int, height: int, backgrounds: torch.Tensor | None = None):
    """Render the model at B (time, camera) pairs.

    Args:
        times: ``[B]``; viewmats ``[B,4,4]`` OpenCV w2c; Ks ``[B,3,3]``.
        backgrounds: ``[B,3]`` or None (black, i.e. premultiplied colour).

    Returns:
        ``(colors [B,H,W,3], alphas [B,H,W,1], info)`` from :func:`backend.render.rasterize`.
    """
    g = model.at(times)
    return rasterize(**g.rasterization_inputs(), viewmats=viewmats, Ks=Ks, width=width, height=height,
                     backgrounds=backgrounds)


def preview_png(model: TrajectoryGaussians4D, footage: Footage, index: int = 0) -> bytes:
    """PNG bytes: ground truth beside the current render of training frame ``index``, on white."""
    with torch.no_grad():
        dev = model.params["means"].device
        c, _, _ = render_frames(model, footage.times[index:index + 1].to(dev), footage.viewmats[index:index + 1].to(dev),
                                footage.Ks[index:index + 1].to(dev), footage.width, footage.height,
                                torch.ones(1, 3, device=dev))
        gt = footage.images[index]
        gt_rgb = gt[..., :3] * gt[..., 3:] + (1 - gt[..., 3:])
        strip = torch.cat([gt_rgb, c[0].cpu().clamp(0, 1)], dim=1)
    buf = io.BytesIO()
    iio.imwrite(buf, (strip.numpy() * 255).round().astype(np.uint8), extension=".png")
    return buf.getvalue()


def reconstruct(footage: Footage, cfg: ReconstructConfig, ctx: JobContext, device: str = "cpu",
                stage: str = "reconstruct", guidance=None) -> tuple[TrajectoryGaussians4D | HexPlaneGaussians4D, dict]:
    """Fit 4D Gaussians: trajectories (static when ``cfg.motion == "static"``) or a HexPlane
    deformation field with a static coarse phase (``cfg.representation``).

    Per-job mechanisms: densification (gsplat 3DGS or STAG4D adaptive), the Efficient4D
    confidence-weighted photometric loss, a kNN local-rigidity regularizer, the STAG4D
    scale-ratio cap, and the HexPlane plane regularizers.

    Args:
        footage: training footage, already resized to the working resolution.
        cfg: optimization settings.
        ctx: progress/preview/cancel channel; progress is reported every step (rate-limited
            by the context) with the current loss, previews every ``cfg.preview_every_s``.
        device: ``"cpu"`` or ``"cuda"``.
        guidance: the SDS guidance model (:class:`Zero123Guidance`), required when
            ``cfg.sds_weight > 0`` (:class:`backend.optim.sds_term.SDSTerm`).

    Returns:
        ``(model, stats)``; stats holds ``iterations``, ``seconds``, ``it_per_s``,
        ``n_gaussians``, ``final_loss``, ``loss_curve`` (list of [step, loss]) and
        ``sds_steps``.

    Raises:
        JobCancelled: when cancelled between steps.
        JobError: ``out_of_memory`` when the device runs out of memory; ``invalid_option``
            for ``sds_weight > 0`` without a guidance model.
    """
    if cfg.sds_weight > 0 and guidance is None:
        raise JobError("invalid_option", "sds_weight > 0 needs the sds_guidance model (python -m backend models "
                                         "list)")
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    ctx.progress(stage, 0, cfg.iterations, message="initializing Gaussians")
    model = init_model(footage, cfg, gen).to(device)
    _, radius = scene_bounds(footage)
    optimizers = _optimizers(model, cfg, radius)
    hexplane = isinstance(model, HexPlaneGaussians4D)
    field_optimizer = None
    coarse_steps = 0
    if hexplane:
        field_optimizer = torch.optim.Adam([{"params": model.plane_parameters(), "lr": cfg.lr_hexplane_planes},
                                            {"params": model.mlp_parameters(), "lr": cfg.lr_hexplane_mlp}])
        coarse_steps = int(cfg.iterations * cfg.hexplane_coarse_fraction)
    densifier = make_densifier(cfg, radius)
    if densifier is not None:
        densifier.check(model.params, optimizers)
    rigidity = LocalRigidity() if cfg.rigidity_weight > 0 and not getattr(model, "is_static", False) else None
    sds_term = None
    if cfg.sds_weight > 0:
        from backend.optim.sds_term import SDSTerm

        centre, _ = scene_bounds(footage)
        sds_term = SDSTerm(footage, guidance.to(device), centre, cfg.iterations, seed=cfg.seed)
    full_conf = low_conf = None
    if cfg.confidence_weighting:
        ctx.progress(stage, 0, cfg.iterations, message="confidence maps (optical flow)")
        full_conf = footage_confidence(footage).to(device)
    # Render-resolution schedule (coarse to fine, as STAG4D's 128 -> 256 -> 512): the first
    # ``low_res_fraction`` of the steps fit images downsampled by ``low_res_factor``.
    low_steps = int(cfg.iterations * cfg.low_res_fraction) if cfg.low_res_factor > 1 else 0
    full_images = footage.images.to(device)
    full_Ks = footage.Ks.to(device)
    if low_steps:
        small, small_Ks = resize_footage_images(footage.images, footage.Ks,
                                                max(footage.width, footage.height) // cfg.low_res_factor)
        low_images, low_Ks = small.to(device), small_Ks.to(device)
        if full_conf is not None:
            low_conf = torch.nn.functional.interpolate(full_conf[:, None], size=small.shape[1:3],
                                                       mode="area")[:, 0]
    viewmats, times = footage.viewmats.to(device), footage.times.to(device)
    decay = cfg.lr_final_factor ** (1.0 / max(cfg.iterations, 1))
    start = time.monotonic()
    last_preview = start
    curve, ema = [], None
    for step in range(cfg.iterations):
        ctx.check_cancelled()
        idx = torch.randint(0, len(footage), (cfg.batch_size,), generator=gen).to(device)
        bg = torch.rand(cfg.batch_size, 3, generator=gen).to(device)
        images, Ks = (low_images, low_Ks) if step < low_steps else (full_images, full_Ks)
        conf = low_conf if step < low_steps else full_conf
        if hexplane:
            model.use_deformation = step >= coarse_steps
        try:
            g = model.at(times[idx])
            colors, alphas, info = rasterize(**g.rasterization_inputs(), viewmats=viewmats[idx], Ks=Ks[idx],
                                             width=images.shape[2], height=images.shape[1], backgrounds=bg)
            gt = images[idx]
            gt_rgb = gt[..., :3] * gt[..., 3:] + (1 - gt[..., 3:]) * bg[:, None, None, :]
            if conf is None:
                photometric = image_loss(colors, gt_rgb)
            else:
                photometric = weighted_image_loss(colors, gt_rgb, conf[idx])
            loss = photometric + cfg.alpha_weight * alpha_loss(alphas, gt[..., 3:])
            if rigidity is not None and (not hexplane or model.use_deformation):
                means_t = g.means
                if cfg.rigidity_random_times > 0:
                    extra = torch.rand(cfg.rigidity_random_times, generator=gen).to(device)
                    means_t = torch.cat([means_t, model.at(extra).means])
                loss = loss + cfg.rigidity_weight * rigidity(model.params["means"], means_t)
            if hexplane and model.use_deformation:
                loss = loss + model.regularization_loss()
            if sds_term is not None and step % max(cfg.sds_every, 1) == 0:
                loss = loss + cfg.sds_weight * sds_term.loss(model, step, device)
            if densifier is not None:
                densifier.pre_backward(model.params, optimizers, step, info)
            loss.backward()
        except torch.cuda.OutOfMemoryError as exc:
            raise JobError("out_of_memory", f"the GPU ran out of memory at step {step}; use a smaller "
                                            f"preset or lower max_image_size/n_init ({exc})") from None
        if densifier is not None:
            densifier.post_backward(model.params, optimizers, step, info)
        for name, opt in optimizers.items():
            opt.step()
            opt.zero_grad(set_to_none=True)
            if name in ("means", "motion"):
                for group in opt.param_groups:
                    group["lr"] *= decay
        if field_optimizer is not None:
            field_optimizer.step()
            field_optimizer.zero_grad(set_to_none=True)
        if cfg.max_scale_ratio > 0:
            with torch.no_grad():
                cap_scale_ratio(model.params["scales"].data, cfg.max_scale_ratio)
        value = float(loss.detach())
        ema = value if ema is None else 0.9 * ema + 0.1 * value
        if step % 10 == 0 or step == cfg.iterations - 1:
            curve.append([step, ema])
        ctx.progress(stage, step + 1, cfg.iterations, loss=ema)
        now = time.monotonic()
        if now - last_preview >= cfg.preview_every_s:
            last_preview = now
            ctx.preview(preview_png(model, footage))
    seconds = time.monotonic() - start
    stats = {"iterations": cfg.iterations, "seconds": seconds, "it_per_s": cfg.iterations / max(seconds, 1e-9),
             "n_gaussians": model.num_gaussians, "final_loss": ema, "loss_curve": curve,
             "sds_steps": 0 if sds_term is None else sds_term.calls}
    return model, stats
