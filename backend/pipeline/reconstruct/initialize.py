"""Initialization of the reconstruct stage: scene bounds, space carving of the masks, the
3DGS kNN scale and the model factory."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from backend.errors import BadInputError
from backend.gaussians.gaussians import rgb_to_sh0
from backend.gaussians.model import Gaussians4D
from backend.gaussians.model_io import build_gaussians4d
from backend.pipeline.ingest import Footage
from protocol.config import ModelConfig


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


def _never_cancelled() -> None:
    return None


def carve_initial_points(footage: Footage, n_points: int, generator: torch.Generator,
                         shell_fraction: float = 0.06,
                         check_cancelled: Callable[[], None] = _never_cancelled) -> tuple[torch.Tensor, torch.Tensor]:
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
        check_cancelled: called per camera of every batch of 200,000 candidates (a few
            milliseconds apart); raises to stop (:meth:`JobContext.check_cancelled`).

    Returns:
        ``(points [n,3], colours [n,3])`` float32 in metres / [0,1]; ``n <= n_points``.

    Raises:
        BadInputError: when no point survives carving (masks empty or cameras inconsistent).
        JobCancelled: from ``check_cancelled``.
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
            check_cancelled()
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


def knn_scale(points: torch.Tensor, k: int = 3,
              check_cancelled: Callable[[], None] = _never_cancelled) -> torch.Tensor:
    """Mean distance to the k nearest other points, ``[N]`` float32, at least 1e-4 (the
    3DGS scale initialization: the reference's ``distCUDA2`` from simple-knn averages the
    squared distances of the 3 nearest; 3DGS then takes ``sqrt``, gsplat's
    ``simple_trainer`` uses the mean distance as here).

    A k-d tree (:class:`scipy.spatial.cKDTree`): O(N log N), so the 2,000,000 points that
    ``n_init`` allows take seconds, where the former brute-force ``cdist`` took hours and
    tens of GB. Queried in chunks of 65,536 points with ``check_cancelled`` between.

    Args:
        points: ``[N, 3]`` float positions.
        k: neighbours averaged (the point itself excluded).
        check_cancelled: raises to stop.

    Raises:
        JobCancelled: from ``check_cancelled``.
    """
    from scipy.spatial import cKDTree

    xyz = points.detach().cpu().double().numpy()
    n = len(xyz)
    if n < 2:
        return torch.full((n,), 1e-4)
    kk = min(k, n - 1)
    check_cancelled()
    tree = cKDTree(xyz)
    out = []
    for start in range(0, n, 65536):
        check_cancelled()
        dist, _ = tree.query(xyz[start:start + 65536], k=kk + 1)
        out.append(dist[:, 1:].mean(-1))
    return torch.from_numpy(np.concatenate(out)).float().clamp_min(1e-4)


def init_model(footage: Footage, cfg: ModelConfig, generator: torch.Generator,
               check_cancelled: Callable[[], None] = _never_cancelled) -> Gaussians4D:
    """Carved points as Gaussians: isotropic scales of half the kNN distance, opacity 0.5,
    colour from the images (clamped to [0.02, 0.98]); the model of
    ``cfg.representation`` (:func:`backend.gaussians.model_io.build_gaussians4d`, the
    trajectory basis cut to the footage's distinct times).

    Args:
        footage: training footage.
        cfg: the model section (representation, ``n_init``, per-representation settings).
        generator: RNG for carving (a HexPlane field's init draws from torch's global RNG).
        check_cancelled: raises to stop; called at least every few hundred milliseconds
            (issue 16: cancel within 1 s in every stage).

    Raises:
        BadInputError: no point survives carving.
        JobCancelled: from ``check_cancelled``.
    """
    pts, cols = carve_initial_points(footage, cfg.n_init, generator, check_cancelled=check_cancelled)
    n = len(pts)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1.0
    log_scales = torch.log(0.5 * knn_scale(pts, check_cancelled=check_cancelled))[:, None].repeat(1, 3)
    check_cancelled()
    sh = rgb_to_sh0(cols.clamp(0.02, 0.98))[:, None, :]
    return build_gaussians4d(cfg, pts, quats, log_scales, torch.zeros(n), sh, n_times=len(footage.unique_times()))
