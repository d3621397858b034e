"""Sparse-control-point deformation (after SC-GS, Huang et al., CVPR 2024): a few hundred
control points carry a time-dependent rigid transform each, predicted by an MLP; every
Gaussian moves by the blend of its K nearest control points' transforms (linear blend
skinning).

Why this motion model: each D-NeRF (and orbital, and few-view generated) training image is
one camera at one time, so per-Gaussian motion is ill-posed; a deformation MLP over
positionally encoded position and time (Deformable-3DGS, Yang et al. 2024) shares motion
across space and time, but on a CPU its cost grows with the Gaussian count (8 × 256-wide
layers per Gaussian per time). Running the MLP on M ≈ 512 control points instead makes
it independent of N, and LBS gives locally rigid motion for free.

Where it differs from SC-GS's code (``yihua7/SC-GS``, ``ControlNodeWarp``):

- control points start as a farthest-point sample of the carved initial Gaussians, not
  from a separate 10k-step node-training stage; their positions and radii are learned
  with the Gaussians (no node pruning/cloning);
- the MLP (``mlp_depth × mlp_width`` ReLU, skip of the input at the middle layer, as
  Deformable-3DGS's ``DeformNetwork``) outputs a translation (×scene radius) and a
  quaternion residual added to the identity, both zero at init (the last layer starts
  at zero), instead of SC-GS's 6D-rotation head;
- skinning weights are ``exp(−d²/(2r_k²))`` over the K = 4 nearest control points,
  normalized, as SC-GS, with a learnable log-radius per control point; neighbours are
  recomputed every ``knn_every`` steps and whenever N changes (densification);
- no ARAP term of its own: the reconstruct stage's kNN rigidity loss can be enabled;
- the first ``static_fraction`` of the steps fit the canonical Gaussians without motion
  (Deformable-3DGS's 3k-step warm-up, scaled to the run).

Conventions: times are normalized ``t ∈ [0, 1]``; positions in metres (Blender world);
quaternions wxyz.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch
from torch import Tensor, nn

from backend.gaussians.gaussians import Gaussians
from backend.gaussians.model import Gaussians4D, canonical_params
from protocol.config import ControlPointConfig, OptimizationConfig


def positional_encoding(x: Tensor, n_freqs: int, scale: float = 1.0) -> Tensor:
    """Positional encoding ``[x, sin(2^k s x), cos(2^k s x)]_{k<n}``, as Deformable-3DGS's
    ``get_embedder`` with ``s = 1`` (``log_sampling``, no factor π; its order is x, then
    sin/cos per octave, here all sines then all cosines: a permutation the first layer
    absorbs). NeRF's encoding is ``s = π``.

    Args:
        x: ``[..., D]``.
        n_freqs: number of octaves (0 = the input only).
        scale: ``s``, the factor of the lowest octave.

    Returns:
        ``[..., D · (1 + 2 n_freqs)]``.
    """
    if n_freqs == 0:
        return x
    freqs = scale * 2.0 ** torch.arange(n_freqs, dtype=x.dtype, device=x.device)
    xf = x[..., None, :] * freqs[:, None]  # [..., n, D]
    return torch.cat([x, torch.sin(xf).flatten(-2), torch.cos(xf).flatten(-2)], dim=-1)


def farthest_point_sample(points: Tensor, m: int) -> Tensor:
    """Indices ``[min(m, N)]`` of a farthest-point sample of ``points [N,3]``, starting from
    the point nearest the centroid (deterministic)."""
    n = points.shape[0]
    m = min(m, n)
    chosen = torch.empty(m, dtype=torch.long, device=points.device)
    chosen[0] = torch.argmin(((points - points.mean(0)) ** 2).sum(-1))
    dist = ((points - points[chosen[0]]) ** 2).sum(-1)
    for i in range(1, m):
        chosen[i] = torch.argmax(dist)
        dist = torch.minimum(dist, ((points - points[chosen[i]]) ** 2).sum(-1))
    return chosen


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product ``a ⊗ b`` of wxyz quaternions (broadcasting ``[..., 4]``)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz,
                        aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx,
                        aw * bz + ax * by - ay * bx + az * bw], dim=-1)


def quat_to_rotmat(q: Tensor) -> Tensor:
    """Unit wxyz quaternions ``[..., 4]`` → rotation matrices ``[..., 3, 3]``."""
    w, x, y, z = q.unbind(-1)
    return torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
                       dim=-1).reshape(q.shape[:-1] + (3, 3))


class ControlPointMLP(nn.Module):
    """``(γ(p_k), γ(t))`` → (translation ``[3]``, quaternion residual ``[4]``) per control
    point and time: Deformable-3DGS's ``DeformNetwork`` shape (ReLU layers of width W, the
    input concatenated again after the middle layer), one 7-wide output layer initialized
    to zero.

    Args:
        in_dim: encoded input size. width: W. depth: hidden layers (≥ 1).
    """

    def __init__(self, in_dim: int, width: int, depth: int):
        super().__init__()
        self.skip = depth // 2 if depth > 2 else None
        layers = []
        for i in range(depth):
            d_in = in_dim if i == 0 else width + (in_dim if i == self.skip else 0)
            layers.append(nn.Linear(d_in, width))
        self.layers = nn.ModuleList(layers)
        self.out = nn.Linear(width, 7)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``[R, in_dim]`` → ``(translation [R,3], quaternion residual [R,4])``."""
        h = x
        for i, layer in enumerate(self.layers):
            if i == self.skip:
                h = torch.cat([h, x], dim=-1)
            h = torch.relu(layer(h))
        out = self.out(h)
        return out[:, :3], out[:, 3:]


class ControlPointGaussians4D(Gaussians4D):
    """Canonical Gaussians moved by M control points (a :class:`Gaussians4D`).

    Per-Gaussian :attr:`params`: ``means [N,3]`` canonical (m), ``quats [N,4]``,
    ``scales [N,3]`` log, ``opacities [N]`` logits, ``sh0 [N,1,3]`` (``shN`` when
    ``sh_degree > 0``). Field parameters: ``control_points [M,3]`` (m),
    ``control_log_radius [M]`` (log m) and the :class:`ControlPointMLP`.

    Args:
        means, quats, log_scales, opacity_logits, sh: the initial canonical Gaussians
            (``[N,3]``, ``[N,4]`` wxyz, ``[N,3]``, ``[N]``, ``[N,K,3]``).
        config: :class:`protocol.config.ControlPointConfig`.
        scene_radius: metres; the MLP's translation output is in units of it (so its
            learning rate does not depend on the scene's scale). None: from the means.
        control_points: ``[M,3]`` to use instead of a farthest-point sample (loading).
    """

    kind = "control_points"

    def __init__(self, means: Tensor, quats: Tensor, log_scales: Tensor, opacity_logits: Tensor, sh: Tensor,
                 config: ControlPointConfig, scene_radius: float | None = None, control_points: Tensor | None = None):
        super().__init__()
        self.config = config
        params = canonical_params(means, quats, log_scales, opacity_logits, sh, config.sh_degree)
        self.params = nn.ParameterDict({k: nn.Parameter(v.detach().clone().contiguous()) for k, v in params.items()})
        if control_points is None:
            control_points = means.detach()[farthest_point_sample(means.detach(), config.n_control)]
        if scene_radius is None:
            scene_radius = float((means - means.mean(0)).norm(dim=-1).max().clamp_min(1e-3))
        self.scene_radius = float(scene_radius)
        m = control_points.shape[0]
        self.control_points = nn.Parameter(control_points.detach().clone().contiguous())
        nn_dist = torch.cdist(control_points, control_points) + torch.eye(m) * 1e9 if m > 1 else None
        r0 = float(nn_dist.min(-1).values.mean()) if nn_dist is not None else self.scene_radius
        self.control_log_radius = nn.Parameter(torch.full((m,), math.log(max(r0, 1e-4))))
        self.register_buffer("centre", control_points.detach().mean(0).clone())
        in_dim = 3 * (1 + 2 * config.pos_freqs) + (1 + 2 * config.time_freqs)
        self.mlp = ControlPointMLP(in_dim, config.mlp_width, config.mlp_depth)
        self.use_deformation = True
        self._knn: Tensor | None = None
        self._knn_stale = True

    @property
    def is_static(self) -> bool:
        """True in the warm-up phase (``at(t)`` gives the canonical Gaussians)."""
        return not self.use_deformation

    def learning_rates(self, opt: OptimizationConfig, scene_radius: float) -> dict[str, float]:
        """The base table (:meth:`Gaussians4D.learning_rates`); this model adds no per-Gaussian key."""
        return super().learning_rates(opt, scene_radius)

    def field_param_groups(self, opt: OptimizationConfig) -> list[dict]:
        """Three groups: the MLP (``lr_deform``), control-point positions
        (``lr_means × scene radius``) and radii (``lr_scales``); each decays to
        ``lr_final_factor`` of its start over the run (``"final_factor"``, read by
        :class:`backend.optim.optimizer.ModelOptimizer`)."""
        f = opt.lr_final_factor
        return [{"params": list(self.mlp.parameters()), "lr": opt.lr_deform, "final_factor": f},
                {"params": [self.control_points], "lr": opt.lr_means * self.scene_radius, "final_factor": f},
                {"params": [self.control_log_radius], "lr": opt.lr_scales, "final_factor": f}]

    def on_step(self, step: int, total_steps: int, progress: float | None = None) -> None:
        """Warm-up (no motion for the first ``static_fraction`` of the steps, or of the
        run's ``progress``); marks the skinning neighbours stale every ``knn_every`` steps."""
        frac = self.config.static_fraction
        self.use_deformation = step >= int(total_steps * frac) if progress is None else progress >= frac
        if step % self.config.knn_every == 0:
            self._knn_stale = True

    def fit_state(self) -> dict:
        """The skinning-neighbour cache (``knn``: ``[N, K]`` int64 or None) and whether it
        is stale, so a resumed fit rebuilds it at the same steps as an uninterrupted one."""
        return {"knn": None if self._knn is None else self._knn.detach().cpu(), "knn_stale": bool(self._knn_stale)}

    def load_fit_state(self, state: dict) -> None:
        """Restore :meth:`fit_state` (the cache moves to the model's device)."""
        knn = state.get("knn")
        self._knn = None if knn is None else knn.to(self.params["means"].device)
        self._knn_stale = bool(state.get("knn_stale", True))

    def _neighbours(self) -> Tensor:
        """``[N, K]`` indices of each Gaussian's nearest control points (no gradient)."""
        means = self.params["means"]
        if self._knn is None or self._knn_stale or self._knn.shape[0] != means.shape[0] \
                or self._knn.device != means.device:
            k = min(self.config.k_neighbors, self.control_points.shape[0])
            with torch.no_grad():
                self._knn = torch.cat([torch.cdist(chunk, self.control_points).topk(k, largest=False).indices
                                       for chunk in means.detach().split(16384)])
            self._knn_stale = False
        return self._knn

    def control_transforms(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Each control point's motion at B times: translation ``[B,M,3]`` (m) and unit
        rotation ``[B,M,4]`` wxyz."""
        cfg, m, b = self.config, self.control_points.shape[0], t.shape[0]
        p = (self.control_points - self.centre) / self.scene_radius
        s = math.pi if cfg.encode_pi else 1.0
        x = torch.cat([positional_encoding(p, cfg.pos_freqs, s)[None].expand(b, m, -1),
                       positional_encoding(t.to(p.dtype)[:, None, None] * 2 - 1, cfg.time_freqs, s).expand(b, m, -1)],
                      dim=-1)
        d_xyz, d_q = self.mlp(x.reshape(b * m, -1))
        q = torch.nn.functional.normalize(d_q + d_q.new_tensor([1.0, 0.0, 0.0, 0.0]), dim=-1)
        return d_xyz.reshape(b, m, 3) * self.scene_radius, q.reshape(b, m, 4)

    def skinning_weights(self, knn: Tensor) -> Tensor:
        """``[N,K]`` weights ``exp(−d²/(2r²))`` over each Gaussian's K control points,
        normalized (differentiable in positions and radii)."""
        n, k = knn.shape
        flat = knn.reshape(-1)  # index_select: its backward is index_add_, far faster on a CPU than indexing's
        d2 = ((self.params["means"][:, None, :] - self.control_points.index_select(0, flat).view(n, k, 3)) ** 2).sum(-1)
        r2 = torch.exp(2 * self.control_log_radius).index_select(0, flat).view(n, k)
        w = torch.exp(-d2 / (2 * r2)) + 1e-7
        return w / w.sum(-1, keepdim=True)

    def at(self, t: Tensor) -> Gaussians:
        """The Gaussians at B normalized times.

        ``x_i(t) = Σ_k w_ik (R_k(t)(x_i − p_k) + p_k + T_k(t))`` and
        ``q_i(t) = normalize(Σ_k w_ik q_k(t)) ⊗ q_i``; scales, opacities and colours are
        those of the canonical Gaussians.

        Args:
            t: ``[B]`` times in [0, 1].

        Returns:
            :class:`Gaussians` with leading dim B (static tensors are expanded views).
        """
        p = self.params
        B, N = t.shape[0], self.num_gaussians
        means, quats = p["means"].expand(B, N, 3), p["quats"].expand(B, N, 4)
        if self.use_deformation:
            knn = self._neighbours()
            w = self.skinning_weights(knn)  # [N,K]
            trans, rot = self.control_transforms(t)  # [B,M,3], [B,M,4]
            R = quat_to_rotmat(rot)  # [B,M,3,3]
            ctrl = self.control_points
            offset = ctrl + trans - torch.einsum("bmij,mj->bmi", R, ctrl)  # [B,M,3]
            # one gather of each control point's [R | offset | q] (16 numbers), blended
            per_ctrl = torch.cat([R.flatten(-2), offset, rot], dim=-1)  # [B,M,16]
            gathered = per_ctrl.index_select(1, knn.reshape(-1)).view(B, N, knn.shape[1], 16)
            blended = (gathered * w[None, :, :, None]).sum(2)  # [B,N,16]
            A, b = blended[..., :9].unflatten(-1, (3, 3)), blended[..., 9:12]
            means = (A @ p["means"][None, :, :, None])[..., 0] + b
            q_blend = torch.nn.functional.normalize(blended[..., 12:], dim=-1)
            quats = quat_multiply(q_blend, p["quats"].expand(B, N, 4))
        sh = p["sh0"] if "shN" not in p else torch.cat([p["sh0"], p["shN"]], dim=1)
        return Gaussians(means=means, quats=quats, log_scales=p["scales"].expand(B, N, 3),
                         opacity_logits=p["opacities"].expand(B, N), sh=sh.expand((B,) + sh.shape))

    def state(self) -> dict:
        """Serializable state (CPU tensors): ``{"kind", "config", "scene_radius",
        "params", "control_points", "control_log_radius", "centre", "mlp"}``."""
        return {"kind": self.kind, "config": asdict(self.config), "scene_radius": self.scene_radius,
                "image_formation": self.image_formation,
                "params": {k: v.detach().cpu() for k, v in self.params.items()},
                "control_points": self.control_points.detach().cpu(),
                "control_log_radius": self.control_log_radius.detach().cpu(), "centre": self.centre.cpu(),
                "mlp": {k: v.detach().cpu() for k, v in self.mlp.state_dict().items()}}

    @classmethod
    def from_state(cls, state: dict) -> "ControlPointGaussians4D":
        """Rebuild a model (CPU) from :meth:`state`; the deformation is on.

        Raises:
            ValueError: the state is not a control-point model's.
        """
        if state.get("kind") != cls.kind:
            raise ValueError(f"not a control-point model state: kind={state.get('kind')!r}")
        p = state["params"]
        sh = p["sh0"] if "shN" not in p else torch.cat([p["sh0"], p["shN"]], 1)
        model = cls(p["means"], p["quats"], p["scales"], p["opacities"], sh, ControlPointConfig(**{"encode_pi": False, **state["config"]}),
                    scene_radius=state["scene_radius"], control_points=state["control_points"])
        with torch.no_grad():
            model.control_log_radius.copy_(state["control_log_radius"])
            model.centre.copy_(state["centre"])
        model.mlp.load_state_dict(state["mlp"])
        return model
