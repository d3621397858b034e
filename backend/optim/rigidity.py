"""kNN local-rigidity (isometry) regularizer for trajectory Gaussians.

Dynamic 3D Gaussians (Luiten et al., 3DV 2024, Sec. 4, the isometry loss) and the
4DGen / SC-GS family keep nearby Gaussians at constant mutual distances while they move:
for neighbours j ∈ kNN(i) of the canonical point cloud, with weight
``w_ij = exp(−λ·‖c_i − c_j‖²)``,

    L = Σ_b Σ_i Σ_j w_ij · | ‖x_i(t_b) − x_j(t_b)‖ − r_ij |  /  (B · Σ_ij w_ij)

where ``r_ij`` is the reference distance: the canonical distance ``‖c_i − c_j‖``
(``reference="canonical"``, default; for :class:`TrajectoryGaussians4D` the canonical
positions are those at t = 0.5), or the mean of the distances over the batch's times
(``reference="times"``, the deformation between the sampled times only). A rigid motion
of any neighbourhood (rotation + translation) costs exactly 0; stretching, shearing and
tearing cost their weighted mean absolute change of neighbour distance, in metres.

Neighbours (k = 8) and weights are found once on the canonical means (chunked
``torch.cdist``) and cached; they are recomputed when N changes (densification) or when
some canonical point moved farther than the median neighbour distance since the cache
was built (which also catches a clone/prune that left N unchanged but reordered rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def knn(points: Tensor, k: int = 8, chunk: int = 2048) -> tuple[Tensor, Tensor]:
    """k nearest neighbours of every point, itself excluded (brute force, chunked cdist).

    Args:
        points: ``[N, 3]`` float (m); N ≥ 2.
        k: neighbours per point; clamped to N − 1.
        chunk: rows per ``cdist`` block (memory ``chunk × N`` floats).

    Returns:
        ``(idx [N, k] int64, dist [N, k] float)`` sorted by increasing distance (m).

    Raises:
        ValueError: if ``points`` is not ``[N, 3]`` with N ≥ 2.
    """
    if points.dim() != 2 or points.shape[1] != 3 or points.shape[0] < 2:
        raise ValueError(f"points must be [N>=2, 3], got {tuple(points.shape)}")
    pts = points.detach()
    n = pts.shape[0]
    k = min(k, n - 1)
    idx_out, dist_out = [], []
    for start in range(0, n, chunk):
        block = pts[start:start + chunk]
        d = torch.cdist(block, pts)
        rows = torch.arange(block.shape[0], device=pts.device)
        d[rows, rows + start] = float("inf")  # exclude self (duplicates at d = 0 still count)
        vals, idx = d.topk(k, dim=1, largest=False)
        idx_out.append(idx)
        dist_out.append(vals)
    return torch.cat(idx_out), torch.cat(dist_out)


@dataclass
class LocalRigidity:
    """Weighted kNN isometry loss (see the module docstring), with a neighbour cache.

    Attributes:
        k: neighbours per Gaussian (8).
        lam: λ of the weight ``exp(−λ·d²)`` in 1/m²; ``None`` (default) sets
            λ = 1 / mean(d²) over all kNN pairs when the cache is built, so a typical
            neighbour weighs e⁻¹ whatever the scene scale. (Dynamic 3D Gaussians used
            λ = 2000 m⁻² with k = 20 on metre-scale captures.)
        reference: ``"canonical"`` (distances at the canonical means) or ``"times"``
            (mean over the batch's times; needs B ≥ 2).
        chunk: rows per cdist block in :func:`knn`.

    Example::

        rigid = LocalRigidity()
        g = model.at(times)                                    # means [B, N, 3]
        loss = loss + w * rigid(model.params["means"], g.means)
    """

    k: int = 8
    lam: float | None = None
    reference: str = "canonical"
    chunk: int = 2048

    def __post_init__(self):
        if self.reference not in ("canonical", "times"):
            raise ValueError(f"reference must be 'canonical' or 'times', got {self.reference!r}")
        self._cache: dict | None = None
        self.rebuilds = 0

    def invalidate(self) -> None:
        """Drop the cached neighbours; the next call recomputes them."""
        self._cache = None

    def cache_state(self) -> dict:
        """The neighbour cache (CPU tensors, or ``{}`` when empty) and the rebuild count, for
        a fit checkpoint: a resumed fit rebuilds at the same steps as an uninterrupted one."""
        cache = {} if self._cache is None else {k: v.detach().cpu() for k, v in self._cache.items()}
        return {"cache": cache, "rebuilds": self.rebuilds}

    def load_cache_state(self, state: dict, device) -> None:
        """Restore :meth:`cache_state` onto ``device``."""
        cache = state.get("cache") or {}
        self._cache = {k: v.to(device) for k, v in cache.items()} or None
        self.rebuilds = int(state.get("rebuilds", 0))

    def neighbours(self, canonical: Tensor) -> tuple[Tensor, Tensor]:
        """Cached ``(idx [N, k] int64, weights [N, k])`` for these canonical means,
        rebuilt when N, the device, or the positions (beyond the median neighbour
        distance) changed since the last build.

        Args:
            canonical: ``[N, 3]`` canonical means (m).
        """
        pts = canonical.detach()
        c = self._cache
        stale = (c is None or c["points"].shape != pts.shape or c["points"].device != pts.device
                 or bool(((pts - c["points"]).norm(dim=-1) > c["tol"]).any()))
        if stale:
            idx, dist = knn(pts, self.k, self.chunk)
            d2 = dist.square()
            lam = self.lam if self.lam is not None else 1.0 / d2.mean().clamp_min(1e-20)
            weights = torch.exp(-lam * d2)
            self._cache = {"points": pts.clone(), "idx": idx, "weights": weights,
                           "tol": dist.median().clamp_min(1e-12)}
            self.rebuilds += 1
        return self._cache["idx"], self._cache["weights"]

    def __call__(self, canonical: Tensor, means_t: Tensor) -> Tensor:
        """The loss.

        Args:
            canonical: ``[N, 3]`` canonical means (m), e.g. ``model.params["means"]``;
                defines the neighbours and, for ``reference="canonical"``, the rest
                distances (gradient flows into it too).
            means_t: ``[B, N, 3]`` positions at B times (m), e.g. ``model.at(t).means``.

        Returns:
            Scalar (m): weighted mean absolute change of neighbour distance; 0 for a
            rigid motion.

        Raises:
            ValueError: on mismatched shapes, or ``reference="times"`` with B < 2.
        """
        if means_t.dim() != 3 or means_t.shape[1:] != canonical.shape or canonical.shape[-1] != 3:
            raise ValueError(f"means_t must be [B, N, 3] with canonical [N, 3]; got {tuple(means_t.shape)}, "
                             f"{tuple(canonical.shape)}")
        if self.reference == "times" and means_t.shape[0] < 2:
            raise ValueError("reference='times' needs positions at two or more times")
        idx, w = self.neighbours(canonical)
        d_t = _pair_dist(means_t, idx)                       # [B, N, k]
        if self.reference == "canonical":
            ref = _pair_dist(canonical[None], idx)           # [1, N, k]
        else:
            ref = d_t.mean(0, keepdim=True)
        return (w * (d_t - ref).abs()).sum() / (means_t.shape[0] * w.sum())


def _pair_dist(x: Tensor, idx: Tensor) -> Tensor:
    """``‖x_i − x_j‖`` for j = idx[i, :], smoothed at 0 (so duplicates have a gradient):
    ``[B, N, 3], [N, k] -> [B, N, k]``."""
    diff = x[:, :, None, :] - x[:, idx, :]
    return (diff.square().sum(-1) + 1e-18).sqrt()
