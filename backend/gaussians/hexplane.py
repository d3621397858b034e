"""4D Gaussians deformed by a HexPlane field (docs/design.md "4D representation", option 2).

The 4DGaussians design (Wu et al., "4D Gaussian Splatting for Real-Time Dynamic Scene
Rendering", CVPR 2024; code ``hustvl/4DGaussians`` ``scene/hexplane.py`` and
``scene/deformation.py``) that STAG4D, DreamGaussian4D and Diffusion4D build on:

1. A canonical 3DGS (the same per-Gaussian tensors as
   :class:`~backend.gaussians.trajectories.TrajectoryGaussians4D`, without motion keys).
2. A :class:`HexPlaneField`: for a canonical mean ``μ`` and a time ``t`` the 4D point
   ``q = (x̂, ŷ, ẑ, t̂)`` (``x̂ = (μ − centre)/half_extent``, ``t̂ = 2t − 1``, all in [−1, 1])
   is read from six feature planes ``P_ab`` (ab ∈ xy, xz, yz, xt, yt, zt) by bilinear
   interpolation; per resolution level ``s`` the six features are multiplied element-wise
   (Hadamard product, K-Planes eq. 3/4), and the levels are concatenated::

       f(q) = concat_s  ∏_{ab} interp(P_ab^s, (q_a, q_b))        [C · len(multires)]

3. A small MLP (:class:`DeformationMLP`, 4DGaussians eq. 7–9) maps ``f`` to deltas of
   position, log-scale and rotation; the deformed Gaussian at ``t`` is::

       μ(t) = μ + half_extent ⊙ Δμ,   log s(t) = log s + Δs,   q(t) = q + Δq (normalized on use)

   Opacity and colour are static. The heads' last layers start at zero, so a new model
   is exactly its canonical Gaussians at every t.

N is fixed and ordered over time: the field is a function of the canonical mean, so
gsplat's densification strategies (which clone/split/prune the rows of :attr:`params`)
need no change, and the field's parameters (not per-Gaussian) get their own optimizer
via :meth:`HexPlaneGaussians4D.field_parameters`.

Conventions (docs/design.md "Conventions"): metres, Blender world frame, quats wxyz, scales
log, opacities logit, SH ``[N,K,3]``; time ``t ∈ [0, 1]`` over the clip.

:class:`HexPlaneConfig` (sizes, regularizer weights, ``coarse_fraction``) is the wire
schema's :class:`protocol.config.HexPlaneConfig`, re-exported here.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backend.gaussians.gaussians import Gaussians
from backend.gaussians.model import Gaussians4D, canonical_params
from protocol.config import HexPlaneConfig, OptimizationConfig

#: Coordinate pairs of the six planes, in this order: xy, xz, yz (spatial), xt, yt, zt
#: (time planes). Coordinate indices: 0 = x, 1 = y, 2 = z, 3 = t.
PLANES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
#: Indices into :data:`PLANES` of the spatial planes (xy, xz, yz).
SPATIAL_PLANES: tuple[int, ...] = (0, 1, 2)
#: Indices into :data:`PLANES` of the planes that involve t (xt, yt, zt).
TIME_PLANES: tuple[int, ...] = (3, 4, 5)


def bound_from_points(points: Tensor, margin: float = 0.1, min_fraction: float = 0.05) -> tuple[Tensor, Tensor]:
    """Axis-aligned bound of a point cloud for :class:`HexPlaneField`.

    Args:
        points: ``[N, 3]`` positions (m), N ≥ 1.
        margin: relative padding of each half-extent.
        min_fraction: a flat axis gets at least this fraction of the largest half-extent
            (so a planar or linear cloud still spans the plane grid); at least 1e-6 m.

    Returns:
        ``(centre [3], half_extent [3])`` float tensors on the points' device (m).
    """
    lo, hi = points.min(0).values, points.max(0).values
    centre = 0.5 * (lo + hi)
    half = 0.5 * (hi - lo)
    half = torch.maximum(half, min_fraction * half.max()).clamp_min(1e-6) * (1.0 + margin)
    return centre, half


def _plane_tv(p: Tensor) -> Tensor:
    """K-Planes ``compute_plane_tv``: ``2·(mean((∂_h P)²) + mean((∂_w P)²))`` for ``[1,C,H,W]``."""
    h, w = p.shape[-2:]
    total = p.new_zeros(())
    if h > 1:
        total = total + (p[..., 1:, :] - p[..., :-1, :]).square().mean()
    if w > 1:
        total = total + (p[..., :, 1:] - p[..., :, :-1]).square().mean()
    return 2.0 * total


def _time_smoothness(p: Tensor) -> Tensor:
    """K-Planes ``compute_plane_smoothness``: ``mean((P[t+2] − 2P[t+1] + P[t])²)`` along H (= t)."""
    if p.shape[-2] < 3:
        return p.new_zeros(())
    d2 = p[..., 2:, :] - 2.0 * p[..., 1:-1, :] + p[..., :-2, :]
    return d2.square().mean()


class HexPlaneField(nn.Module):
    """Six multi-resolution feature planes over (x, y, z, t), read by bilinear interpolation.

    Planes are stored per level ``s`` as ``grids[s][i]`` of shape ``[1, C, R_b, R_a]`` for
    the coordinate pair ``(a, b) = PLANES[i]`` (so for time planes the height axis is t).
    Sampling uses ``F.grid_sample(mode="bilinear", align_corners=True,
    padding_mode="border")`` as 4DGaussians does: grid nodes sit exactly at −1 and +1 of
    the normalized coordinates, and queries outside the bound clamp to the border.

    Initialization (K-Planes / 4DGaussians ``init_grid_param``): spatial planes
    ``uniform(init_low, init_high)``, planes involving t exactly 1, so at init the
    Hadamard product over the six planes does not depend on t.

    Args:
        config: sizes and initialization.
        centre: ``[3]`` centre of the axis-aligned bound (m).
        half_extent: ``[3]`` (or scalar) positive half-size of the bound per axis (m).

    Raises:
        ValueError: on a non-positive half-extent or a resolution below 2 on any axis.
    """

    def __init__(self, config: HexPlaneConfig, centre: Tensor | Sequence[float],
                 half_extent: Tensor | Sequence[float] | float):
        super().__init__()
        self.config = config
        centre = torch.as_tensor(centre, dtype=torch.float32).reshape(3)
        half = torch.as_tensor(half_extent, dtype=torch.float32).expand(3).clone()
        if not bool((half > 0).all()):
            raise ValueError(f"half_extent must be positive, got {half.tolist()}")
        if len(config.resolution) != 4 or min(config.resolution) < 2:
            raise ValueError(f"resolution must be 4 ints >= 2, got {config.resolution}")
        self.register_buffer("centre", centre)
        self.register_buffer("half_extent", half)
        self.grids = nn.ModuleList()
        for mult in config.multires:
            reso = [r * mult for r in config.resolution[:3]] + [config.resolution[3]]
            level = nn.ParameterList()
            for a, b in PLANES:
                plane = torch.empty(1, config.feature_dim, reso[b], reso[a])
                if b == 3:
                    nn.init.ones_(plane)
                else:
                    nn.init.uniform_(plane, config.init_low, config.init_high)
                level.append(nn.Parameter(plane))
            self.grids.append(level)

    @property
    def out_dim(self) -> int:
        """Feature size ``C · len(multires)``."""
        return self.config.feature_dim * len(self.config.multires)

    def normalize(self, points: Tensor, t: Tensor) -> Tensor:
        """Map positions and times to the planes' [−1, 1] coordinates.

        Args:
            points: ``[M, 3]`` positions (m).
            t: ``[M]`` normalized times in [0, 1].

        Returns:
            ``[M, 4]`` ``((points − centre)/half_extent, 2t − 1)``.
        """
        xyz = (points - self.centre) / self.half_extent
        return torch.cat([xyz, (2.0 * t - 1.0)[:, None].to(xyz.dtype)], dim=-1)

    def forward(self, points: Tensor, t: Tensor) -> Tensor:
        """Features at 4D query points.

        Args:
            points: ``[M, 3]`` float positions (m), Blender world frame.
            t: ``[M]`` float times in [0, 1] (values outside clamp to the first/last row).

        Returns:
            ``[M, C · len(multires)]`` features: per level the Hadamard product of the six
            bilinearly interpolated plane features, levels concatenated (K-Planes eq. 4).
        """
        q = self.normalize(points, t)
        m = q.shape[0]
        feats = []
        for level in self.grids:
            prod = None
            for (a, b), plane in zip(PLANES, level):
                coords = q[:, (a, b)].reshape(1, 1, m, 2).to(plane.dtype)
                f = F.grid_sample(plane, coords, mode="bilinear", padding_mode="border", align_corners=True)
                f = f.reshape(plane.shape[1], m).t()
                prod = f if prod is None else prod * f
            feats.append(prod)
        return torch.cat(feats, dim=-1)

    def plane_tv_loss(self) -> Tensor:
        """Total variation of the spatial planes (xy, xz, yz), summed over levels.

        ``Σ_s Σ_{ab∈{xy,xz,yz}} 2·(mean((P[i+1,j] − P[i,j])²) + mean((P[i,j+1] − P[i,j])²))``
        — K-Planes ``compute_plane_tv`` (Fridovich-Keil et al., CVPR 2023, eq. 5), the
        "plane TV" term of 4DGaussians/STAG4D (weight 0.05). Note: 4DGaussians' code
        (``_plane_regulation``) applies the second-difference smoothness to the spatial
        planes under this name; first-order TV as in K-Planes is used here.

        Returns:
            Scalar tensor ≥ 0; 0 iff every spatial plane is constant per channel.
        """
        return sum((_plane_tv(level[i]) for level in self.grids for i in SPATIAL_PLANES),
                   self.centre.new_zeros(()))

    def time_smoothness_loss(self) -> Tensor:
        """Second-order smoothness along t of the time planes (xt, yt, zt), summed over levels.

        ``Σ_s Σ_{ab∈{xt,yt,zt}} mean((P[k+2] − 2P[k+1] + P[k])²)`` with k the time row —
        K-Planes ``compute_plane_smoothness`` (eq. 6), 4DGaussians ``_time_regulation``
        (STAG4D weight 5). Zero for any plane that is linear in t.

        Returns:
            Scalar tensor ≥ 0 (0 when the time resolution is below 3).
        """
        return sum((_time_smoothness(level[i]) for level in self.grids for i in TIME_PLANES),
                   self.centre.new_zeros(()))

    def l1_time_loss(self) -> Tensor:
        """L1 distance of the time planes from 1 (the static value), summed over levels.

        ``Σ_s Σ_{ab∈{xt,yt,zt}} mean(|1 − P|)`` — K-Planes sparse-transients prior (eq. 7),
        4DGaussians ``_l1_regulation`` (STAG4D weight 0.05). Pushes the field toward a
        time-independent (static) deformation.

        Returns:
            Scalar tensor ≥ 0; 0 iff every time plane is exactly 1 (the initialization).
        """
        return sum(((1.0 - level[i]).abs().mean() for level in self.grids for i in TIME_PLANES),
                   self.centre.new_zeros(()))

    def regularization_loss(self) -> Tensor:
        """``plane_tv_weight·TV + time_smoothness_weight·smooth + l1_time_weight·L1`` from the
        config (4DGaussians ``compute_regulation``); a scalar tensor."""
        c = self.config
        return (c.plane_tv_weight * self.plane_tv_loss() + c.time_smoothness_weight * self.time_smoothness_loss()
                + c.l1_time_weight * self.l1_time_loss())


class DeformationMLP(nn.Module):
    """Features → (Δposition, Δlog-scale, Δrotation), 4DGaussians ``Deformation.create_net``.

    Trunk: ``Linear(F, W)`` then ``(depth − 1) × [ReLU, Linear(W, W)]``. Each head:
    ``ReLU, Linear(W, W), ReLU, Linear(W, k)`` with k = 3, 3, 4. The heads' last layers are
    initialized to zero (weights and bias), so every delta is exactly 0 at init; other
    layers use PyTorch's default ``nn.Linear`` init. (Consequence: at init the gradient
    reaches only those last layers; planes and trunk receive gradient from the first
    optimizer step on.)

    Args:
        in_dim: feature size F. width: W. depth: trunk linear layers (≥ 1).
        deform_scales / deform_rotations: build those heads (else the deltas are None).
    """

    def __init__(self, in_dim: int, width: int = 64, depth: int = 1, deform_scales: bool = True,
                 deform_rotations: bool = True):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_dim, width)]
        for _ in range(depth - 1):
            layers += [nn.ReLU(), nn.Linear(width, width)]
        self.trunk = nn.Sequential(*layers)
        self.pos_head = self._head(width, 3)
        self.scale_head = self._head(width, 3) if deform_scales else None
        self.rot_head = self._head(width, 4) if deform_rotations else None

    @staticmethod
    def _head(width: int, out: int) -> nn.Sequential:
        head = nn.Sequential(nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, out))
        nn.init.zeros_(head[-1].weight)
        nn.init.zeros_(head[-1].bias)
        return head

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Deltas for ``[M, F]`` features: ``(Δμ [M,3] in bound units, Δlog s [M,3] or None,
        Δq [M,4] or None)``."""
        h = self.trunk(features)
        ds = self.scale_head(h) if self.scale_head is not None else None
        dq = self.rot_head(h) if self.rot_head is not None else None
        return self.pos_head(h), ds, dq


class HexPlaneGaussians4D(Gaussians4D):
    """Canonical 3D Gaussians deformed by a HexPlane field (a
    :class:`~backend.gaussians.model.Gaussians4D`); ``at(t)`` gives the Gaussians at t.

    Per-Gaussian parameters live in :attr:`params` (a ``ParameterDict``, N first, the
    layout gsplat's densification strategies carry along), with the same keys as
    :class:`~backend.gaussians.trajectories.TrajectoryGaussians4D` minus the motion keys:
    ``means [N,3]`` canonical positions (m); ``quats [N,4]`` wxyz; ``scales [N,3]`` log;
    ``opacities [N]`` logit; ``sh0 [N,1,3]``; ``shN [N,K−1,3]`` when ``sh_degree > 0``.

    Interface hooks: :meth:`field_param_groups` (planes at ``lr_hexplane_planes``, MLP at
    ``lr_hexplane_mlp``), :meth:`regularization` (the weighted plane regularizers, only
    while deforming), :meth:`on_step` (the coarse phase: static for the first
    ``config.coarse_fraction`` of the steps).

    The deformation (not per-Gaussian) is :attr:`field` (:class:`HexPlaneField`) and
    :attr:`mlp` (:class:`DeformationMLP`); optimize them with their own optimizer
    (:meth:`field_parameters`, or :meth:`plane_parameters` / :meth:`mlp_parameters` for
    the 4DGaussians/STAG4D split: grid lr 1.6e-3 → 1.6e-4, MLP lr 1.6e-4 → 1.6e-5, both
    times the scene extent in 4DGaussians), never through the densification strategy.

    Args:
        means, quats, log_scales, opacity_logits: canonical Gaussians ``[N,3]``,
            ``[N,4]``, ``[N,3]``, ``[N]``.
        sh: ``[N,K,3]`` SH coefficients (only the DC term is used when ``sh_degree = 0``;
            missing higher bands start at 0).
        config: :class:`HexPlaneConfig`.
        centre, half_extent: the field's bound (m); default :func:`bound_from_points`
            of ``means``.
        static: start in the coarse (static) phase: ``use_deformation = False``.
    """

    kind = "hexplane"

    def __init__(self, means: Tensor, quats: Tensor, log_scales: Tensor, opacity_logits: Tensor, sh: Tensor,
                 config: HexPlaneConfig | None = None, centre: Tensor | None = None,
                 half_extent: Tensor | None = None, static: bool = False):
        super().__init__()
        config = config or HexPlaneConfig()
        self.config = config
        params = canonical_params(means, quats, log_scales, opacity_logits, sh, config.sh_degree)
        self.params = nn.ParameterDict({k: nn.Parameter(v.detach().clone().contiguous()) for k, v in params.items()})
        if centre is None or half_extent is None:
            c, h = bound_from_points(means.detach().float())
            centre = c if centre is None else centre
            half_extent = h if half_extent is None else half_extent
        self.field = HexPlaneField(config, centre.detach().cpu() if isinstance(centre, Tensor) else centre,
                                   half_extent.detach().cpu() if isinstance(half_extent, Tensor) else half_extent)
        self.field.to(means.device)
        self.mlp = DeformationMLP(self.field.out_dim, config.mlp_width, config.mlp_depth,
                                  config.deform_scales, config.deform_rotations).to(means.device)
        self.use_deformation = not static

    @property
    def is_static(self) -> bool:
        """True in the coarse (static) phase, when ``at(t)`` ignores the deformation."""
        return not self.use_deformation

    def field_param_groups(self, opt: OptimizationConfig) -> list[dict]:
        """Two Adam groups: the planes at ``opt.lr_hexplane_planes``, the MLP at
        ``opt.lr_hexplane_mlp`` (constant rates)."""
        return [{"params": self.plane_parameters(), "lr": opt.lr_hexplane_planes},
                {"params": self.mlp_parameters(), "lr": opt.lr_hexplane_mlp}]

    def regularization(self) -> Tensor | None:
        """:meth:`regularization_loss` while the deformation is on; None in the coarse phase."""
        return self.regularization_loss() if self.use_deformation else None

    def on_step(self, step: int, total_steps: int, progress: float | None = None) -> None:
        """The coarse phase: ``use_deformation`` is off for the first
        ``int(total_steps · config.coarse_fraction)`` steps (or ``coarse_fraction`` of the
        run's ``progress``), on afterwards."""
        frac = self.config.coarse_fraction
        self.use_deformation = step >= int(total_steps * frac) if progress is None else progress >= frac

    def field_parameters(self) -> list[nn.Parameter]:
        """All deformation parameters (planes and MLP): not per-Gaussian, not for the strategy."""
        return self.plane_parameters() + self.mlp_parameters()

    def plane_parameters(self) -> list[nn.Parameter]:
        """The feature planes, ``len(multires) · 6`` tensors ``[1, C, R_b, R_a]``."""
        return list(self.field.parameters())

    def mlp_parameters(self) -> list[nn.Parameter]:
        """The deformation MLP's weights and biases."""
        return list(self.mlp.parameters())

    def deltas(self, t: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Deformation of every Gaussian at B times, in one batched field query.

        Args:
            t: ``[B]`` float normalized times.

        Returns:
            ``(Δμ [B,N,3] in metres, Δlog s [B,N,3] or None, Δq [B,N,4] or None)``.
        """
        means = self.params["means"]
        B, N = t.shape[0], self.num_gaussians
        pts = means.unsqueeze(0).expand(B, N, 3).reshape(B * N, 3)
        tt = t.to(means.dtype)[:, None].expand(B, N).reshape(B * N)
        dmu, ds, dq = self.mlp(self.field(pts, tt))
        dmu = (dmu * self.field.half_extent).reshape(B, N, 3)
        ds = ds.reshape(B, N, 3) if ds is not None else None
        dq = dq.reshape(B, N, 4) if dq is not None else None
        return dmu, ds, dq

    def at(self, t: Tensor) -> Gaussians:
        """Evaluate the Gaussians at normalized times.

        Args:
            t: ``[B]`` float times; 0 and 1 are the first and last input frames.

        Returns:
            :class:`Gaussians` with leading batch dim B: means ``[B,N,3]``, quats ``[B,N,4]``
            (canonical + Δq, not normalized), log_scales ``[B,N,3]``, opacity_logits
            ``[B,N]``, sh ``[B,N,K,3]``. Static tensors are expanded views. With
            ``use_deformation = False`` every batch entry is the canonical Gaussians.
        """
        p = self.params
        B, N = t.shape[0], self.num_gaussians
        means = p["means"].expand(B, N, 3)
        quats = p["quats"].expand(B, N, 4)
        scales = p["scales"].expand(B, N, 3)
        if self.use_deformation:
            dmu, ds, dq = self.deltas(t)
            means = means + dmu
            if ds is not None:
                scales = scales + ds
            if dq is not None:
                quats = quats + dq
        sh = p["sh0"] if "shN" not in p else torch.cat([p["sh0"], p["shN"]], dim=1)
        return Gaussians(means=means, quats=quats, log_scales=scales, opacity_logits=p["opacities"].expand(B, N),
                         sh=sh.expand((B,) + sh.shape))

    def plane_tv_loss(self) -> Tensor:
        """:meth:`HexPlaneField.plane_tv_loss` (scalar)."""
        return self.field.plane_tv_loss()

    def time_smoothness_loss(self) -> Tensor:
        """:meth:`HexPlaneField.time_smoothness_loss` (scalar)."""
        return self.field.time_smoothness_loss()

    def l1_time_loss(self) -> Tensor:
        """:meth:`HexPlaneField.l1_time_loss` (scalar)."""
        return self.field.l1_time_loss()

    def regularization_loss(self) -> Tensor:
        """:meth:`HexPlaneField.regularization_loss`: the weighted sum with the config's
        weights (STAG4D 0.05 / 5 / 0.05); a scalar tensor."""
        return self.field.regularization_loss()

    def state(self) -> dict:
        """Serializable state (``torch.save``/``torch.load(weights_only=True)`` safe, CPU):
        ``{"kind": "hexplane", "config", "use_deformation", "params", "field", "mlp"}``,
        where ``field`` holds the planes and the bound buffers."""
        return {"kind": "hexplane", "config": asdict(self.config), "use_deformation": bool(self.use_deformation),
                "image_formation": self.image_formation,
                "params": {k: v.detach().cpu() for k, v in self.params.items()},
                "field": {k: v.detach().cpu() for k, v in self.field.state_dict().items()},
                "mlp": {k: v.detach().cpu() for k, v in self.mlp.state_dict().items()}}

    @classmethod
    def from_state(cls, state: dict) -> "HexPlaneGaussians4D":
        """Rebuild a model from :meth:`state` (on CPU). States saved before
        ``coarse_fraction`` existed load with its default.

        Raises:
            ValueError: if the state is not a hexplane model state.
        """
        if state.get("kind") != "hexplane":
            raise ValueError(f"not a hexplane model state: kind={state.get('kind')!r}")
        p = state["params"]
        cfg = HexPlaneConfig(**state["config"])
        sh = p["sh0"] if "shN" not in p else torch.cat([p["sh0"], p["shN"]], 1)
        model = cls(p["means"], p["quats"], p["scales"], p["opacities"], sh, cfg,
                    centre=state["field"]["centre"], half_extent=state["field"]["half_extent"],
                    static=not state.get("use_deformation", True))
        model.field.load_state_dict(state["field"])
        model.mlp.load_state_dict(state["mlp"])
        return model
