"""STAG4D adaptive densification as a gsplat strategy (docs/design.md "Optimization: defaults
with sources", *STAG4D adaptive densification*; STAG4D, arXiv 2403.14939, Sec. 3.3).

What differs from 3DGS / gsplat's :class:`~gsplat.strategy.DefaultStrategy`:

- **Relative gradient threshold.** 3DGS grows every Gaussian whose average normalized 2D
  mean gradient exceeds a fixed value (2e-4). Under score distillation and generated,
  slightly inconsistent supervision that absolute scale drifts, so STAG4D takes the
  threshold from the ranking instead: the value at rank ⌊0.025·N⌋ of the average
  gradients, i.e. the top 2.5 % of Gaussians are grown at every refinement step.
- **Schedule.** Every ``refine_every`` (100) steps from ``refine_start`` (1200) to
  ``refine_stop`` (6000), both inclusive, on the STAG4D run of 8000 steps. The fields are
  plain dataclass fields so shorter presets can scale them.
- **Pruning** at the same steps: opacity < 0.01, or world scale (the largest of the
  three linear scales ``exp(scales)``) > 0.1 or < 0.001. STAG4D states the scale limits
  in the units of its normalized object (about unit size); here they are metres times
  ``scale_unit`` (default 1.0). For an object that is ``R`` metres across where STAG4D's
  would be ~1, set ``scale_unit = R``.
- **No opacity reset.** (gsplat 1.5.3's ``DefaultStrategy`` reset never fires anyway:
  ``if step % reset_every == 0 & step > 0`` parses, ``&`` binding tighter than the
  comparisons, as the chained comparison ``step % reset_every == (0 & step) > 0``, i.e.
  ``(step % reset_every == 0) and (0 > 0)``, which is always False.)

Clone and split are gsplat's :func:`gsplat.strategy.ops.duplicate` / ``split`` and pruning
is ``remove``; these rewrite *every* tensor of the ``ParameterDict`` (``motion`` and
``rot_motion`` of the trajectory model included) and the matching Adam moments (new rows
start at zero). The order after a refinement step is gsplat's: kept originals, then
clones, then the two halves of each split Gaussian, then pruning removes rows.

It plugs into :class:`backend.optim.densify.Densifier`, which flattens the render info to
the ``[C, N, 2]`` layout this strategy reads.

:func:`cap_scale_ratio` is STAG4D's anisotropy cap (max/min scale ≤ 7.5), meant to run
under ``torch.no_grad()`` right after the optimizer steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Tuple, Union

import torch
from gsplat.strategy import Strategy
from gsplat.strategy.ops import duplicate, remove, split
from torch import Tensor

from backend.optim.densify import growth_budget_mask

Params = Union[Dict[str, torch.nn.Parameter], torch.nn.ParameterDict]


@dataclass
class STAG4DStrategy(Strategy):
    """STAG4D adaptive densification (top-2.5 % gradient rank, absolute-scale pruning,
    no opacity reset) honouring gsplat's strategy contract.

    Use like any gsplat strategy::

        strategy = STAG4DStrategy()
        state = strategy.initialize_state(scene_scale=radius)
        strategy.check_sanity(params, optimizers)
        # per step: render -> step_pre_backward -> loss.backward() -> step_post_backward
        # -> optimizer steps -> cap_scale_ratio(params["scales"])

    or through :class:`backend.optim.densify.Densifier`.

    Attributes:
        refine_start: first step (inclusive) at which Gaussians are grown/pruned. STAG4D: 1200.
        refine_stop: last step (inclusive) of refinement; later calls are no-ops. STAG4D: 6000.
        refine_every: refine at steps with ``step % refine_every == 0`` inside
            ``[refine_start, refine_stop]``. STAG4D: 100.
        grow_fraction: fraction of Gaussians grown per refinement; the threshold is the
            average gradient at rank ⌊grow_fraction·N⌋ (exactly that many are grown, ties
            broken by ``torch.topk``). STAG4D: 0.025.
        min_grad2d: Gaussians whose average normalized gradient is ≤ this are never grown,
            even inside the top fraction (0 excludes only Gaussians never seen since the
            last refinement).
        grow_scale3d: a grown Gaussian is cloned when its largest linear scale is
            ≤ ``grow_scale3d · scene_scale`` (metres), split otherwise (3DGS rule,
            gsplat default 0.01).
        prune_opa: prune when ``sigmoid(opacity) <`` this. STAG4D: 0.01.
        prune_scale_max: prune when the largest linear scale is > ``prune_scale_max ·
            scale_unit`` (m). STAG4D: 0.1.
        prune_scale_min: prune when the largest linear scale is < ``prune_scale_min ·
            scale_unit`` (m). STAG4D: 0.001.
        scale_unit: metres per STAG4D scene unit for the two prune scale limits (1.0: the
            limits are metres as written).
        max_gaussians: growth never takes N above this (the largest gradients grow
            first); 0 = no cap. Not in STAG4D; keeps a job inside its memory budget.
        verbose: print the counts at every refinement.
        key_for_gradient: key of the 2D means in ``info`` (gsplat convention).
    """

    refine_start: int = 1200
    refine_stop: int = 6000
    refine_every: int = 100
    grow_fraction: float = 0.025
    min_grad2d: float = 0.0
    grow_scale3d: float = 0.01
    prune_opa: float = 0.01
    prune_scale_max: float = 0.1
    prune_scale_min: float = 0.001
    scale_unit: float = 1.0
    max_gaussians: int = 0
    verbose: bool = False
    key_for_gradient: str = "means2d"

    def initialize_state(self, scene_scale: float = 1.0) -> Dict[str, Any]:
        """Running state passed to the step callbacks.

        Args:
            scene_scale: scene radius in metres (only the clone/split scale test uses it).

        Returns:
            ``{"grad2d": None, "count": None, "scene_scale": scene_scale, "last_refine":
            None}``; ``grad2d``/``count`` become ``[N]`` float32 accumulators on first use
            (sum of normalized gradient norms and of visible-camera counts) and follow
            every clone/split/prune.
        """
        return {"grad2d": None, "count": None, "scene_scale": float(scene_scale), "last_refine": None}

    def check_sanity(self, params: Params, optimizers: Dict[str, torch.optim.Optimizer]) -> None:
        """gsplat's pairing check plus the keys this strategy reads.

        Raises:
            AssertionError: when params/optimizers keys differ, an optimizer does not hold
                exactly its parameter, ``means``/``scales``/``quats``/``opacities`` are
                missing, or the schedule is inconsistent.
        """
        super().check_sanity(params, optimizers)
        for key in ("means", "scales", "quats", "opacities"):
            assert key in params, f"{key} is required in params but missing."
        assert self.refine_every > 0, "refine_every must be positive"
        assert 0.0 <= self.grow_fraction <= 1.0, "grow_fraction must be in [0, 1]"

    def is_refine_step(self, step: int) -> bool:
        """True when ``step`` grows and prunes: ``refine_start ≤ step ≤ refine_stop`` and
        ``step % refine_every == 0``."""
        return self.refine_start <= step <= self.refine_stop and step % self.refine_every == 0

    def step_pre_backward(self, params: Params, optimizers: Dict[str, torch.optim.Optimizer],
                          state: Dict[str, Any], step: int, info: Dict[str, Any]) -> None:
        """Before ``loss.backward()``: keep the gradient of ``info["means2d"]``.

        Raises:
            AssertionError: when ``info`` has no 2D means.
        """
        assert self.key_for_gradient in info, "The 2D means of the Gaussians is required but missing."
        info[self.key_for_gradient].retain_grad()

    def step_post_backward(self, params: Params, optimizers: Dict[str, torch.optim.Optimizer],
                           state: Dict[str, Any], step: int, info: Dict[str, Any],
                           packed: bool = False) -> None:
        """After backward, before the optimizer steps: accumulate, and on refine steps grow
        the top fraction and prune; may change N (all params and Adam state follow).

        Gradients are accumulated only in the window that feeds a refinement, i.e. for
        ``refine_start − refine_every < step ≤ refine_stop``, so the first refinement
        averages over one full interval (not over warm-up or a static phase).

        Args:
            info: ``means2d`` with ``.grad`` ``[C, N, 2]`` (pixels; ``packed=True``:
                ``[nnz, 2]`` with ``gaussian_ids [nnz]``), ``radii`` ``[C, N, 2]`` (or
                ``[nnz, 2]``), ``width``, ``height``, ``n_cameras``.
        """
        if step > self.refine_stop or step <= self.refine_start - self.refine_every:
            return
        self._update_state(params, state, info, packed)
        if not self.is_refine_step(step):
            return
        n_dupli, n_split = self._grow(params, optimizers, state)
        n_prune = self._prune(params, optimizers, state)
        state["grad2d"].zero_()
        state["count"].zero_()
        state["last_refine"] = {"step": step, "n_dupli": n_dupli, "n_split": n_split, "n_prune": n_prune,
                                "n": len(params["means"])}
        if self.verbose:
            print(f"Step {step}: {n_dupli} cloned, {n_split} split, {n_prune} pruned; "
                  f"now {len(params['means'])} Gaussians.")

    def _update_state(self, params: Params, state: Dict[str, Any], info: Dict[str, Any], packed: bool) -> None:
        """Accumulate the norm of the 2D mean gradient in NDC-like units (gsplat's
        DefaultStrategy: x scaled by W/2·C, y by H/2·C), per visible camera."""
        for key in ("width", "height", "n_cameras", "radii", self.key_for_gradient):
            assert key in info, f"{key} is required but missing."
        grads = info[self.key_for_gradient].grad.clone()
        grads[..., 0] *= info["width"] / 2.0 * info["n_cameras"]
        grads[..., 1] *= info["height"] / 2.0 * info["n_cameras"]
        n = len(params["means"])
        if state["grad2d"] is None or len(state["grad2d"]) != n:
            state["grad2d"] = torch.zeros(n, device=grads.device)
            state["count"] = torch.zeros(n, device=grads.device)
        if packed:
            gs_ids = info["gaussian_ids"]
        else:
            sel = (info["radii"] > 0).all(dim=-1)  # [C, N]
            gs_ids = torch.where(sel)[1]
            grads = grads[sel]
        state["grad2d"].index_add_(0, gs_ids, grads.norm(dim=-1).to(state["grad2d"].dtype))
        state["count"].index_add_(0, gs_ids, torch.ones_like(gs_ids, dtype=state["count"].dtype))

    def grow_mask(self, params: Params, state: Dict[str, Any]) -> Tensor:
        """Which Gaussians the next refinement grows: exactly the top ⌊grow_fraction·N⌋ by
        average gradient (``grad2d / max(count, 1)``), minus those ≤ ``min_grad2d``,
        cut to the ``max_gaussians − N`` largest when a cap is set.

        Returns:
            ``[N]`` bool.
        """
        grads = state["grad2d"] / state["count"].clamp_min(1)
        n = len(grads)
        k = int(math.floor(self.grow_fraction * n))
        mask = torch.zeros(n, dtype=torch.bool, device=grads.device)
        if k > 0:
            mask[torch.topk(grads, k, sorted=False).indices] = True
        mask = mask & (grads > self.min_grad2d)
        if self.max_gaussians > 0:
            mask = growth_budget_mask(grads, mask, self.max_gaussians - n)
        return mask

    @torch.no_grad()
    def _grow(self, params: Params, optimizers: Dict[str, torch.optim.Optimizer],
              state: Dict[str, Any]) -> Tuple[int, int]:
        grow = self.grow_mask(params, state)
        is_small = torch.exp(params["scales"]).max(dim=-1).values <= self.grow_scale3d * state["scene_scale"]
        is_dupli = grow & is_small
        is_split = grow & ~is_small
        n_dupli, n_split = int(is_dupli.sum()), int(is_split.sum())
        if n_dupli > 0:
            duplicate(params=params, optimizers=optimizers, state=state, mask=is_dupli)
        # Clones are appended after the originals and are not split again.
        is_split = torch.cat([is_split, torch.zeros(n_dupli, dtype=torch.bool, device=is_split.device)])
        if n_split > 0:
            split(params=params, optimizers=optimizers, state=state, mask=is_split)
        return n_dupli, n_split

    def prune_mask(self, params: Params) -> Tensor:
        """Gaussians to prune: ``sigmoid(opacity) < prune_opa`` or largest linear scale
        outside ``[prune_scale_min, prune_scale_max] · scale_unit`` (m).

        Returns:
            ``[N]`` bool.
        """
        opa = torch.sigmoid(params["opacities"].flatten())
        world = torch.exp(params["scales"]).max(dim=-1).values
        return ((opa < self.prune_opa) | (world > self.prune_scale_max * self.scale_unit)
                | (world < self.prune_scale_min * self.scale_unit))

    @torch.no_grad()
    def _prune(self, params: Params, optimizers: Dict[str, torch.optim.Optimizer], state: Dict[str, Any]) -> int:
        is_prune = self.prune_mask(params)
        n_prune = int(is_prune.sum())
        if n_prune > 0:
            remove(params=params, optimizers=optimizers, state=state, mask=is_prune)
        return n_prune


@torch.no_grad()
def cap_scale_ratio(log_scales: Tensor, max_ratio: float = 7.5) -> Tensor:
    """Clamp log scales in place so that, per Gaussian, max/min linear scale ≤ ``max_ratio``
    (STAG4D's anisotropy cap, docs/design.md: "Scale-ratio cap max/min ≤ 7.5").

    The largest axis is kept and the smaller axes are raised to at least
    ``max_scale / max_ratio`` (``log s ← max(log s, max(log s) − log max_ratio)``), so a
    needle becomes a thicker ellipsoid of the same extent rather than a shorter one.
    Works on a leaf ``nn.Parameter`` (runs under ``no_grad``); call it after the optimizer
    steps. Adam moments are left as they are.

    Args:
        log_scales: ``[..., 3]`` log of the linear scales (m), e.g. ``params["scales"]``.
        max_ratio: the cap, > 1 (linear, not log).

    Returns:
        ``log_scales`` itself (modified in place).

    Raises:
        ValueError: if ``max_ratio < 1``.
    """
    if max_ratio < 1.0:
        raise ValueError(f"max_ratio must be >= 1, got {max_ratio}")
    floor = log_scales.max(dim=-1, keepdim=True).values - math.log(max_ratio)
    log_scales.clamp_(min=floor)
    return log_scales
