"""The declared interface of every 4D Gaussian model: :class:`Gaussians4D`.

The reconstruct stage, the loss terms, densification, export and rendering see a model only
through this interface, never through its concrete class, so a new representation is one
new subclass (plus its entry in :data:`backend.gaussians.model_io.MODEL_KINDS`).

A model is

- a function of time: :meth:`Gaussians4D.at` evaluates the N Gaussians at a batch of
  normalized times ``t ∈ [0, 1]`` (0 and 1 are the first and last input frames);
- per-Gaussian parameters :attr:`Gaussians4D.params`: a ``ParameterDict`` whose every
  tensor has N as its first dim, the layout gsplat's densification strategies clone,
  split and prune (what densification needs: ``params`` plus one Adam optimizer per key);
  keys ``means [N,3]`` canonical positions (m), ``quats [N,4]`` wxyz, ``scales [N,3]``
  *log* standard deviations (m), ``opacities [N]`` *logits*, ``sh0 [N,1,3]``,
  ``shN [N,K−1,3]`` when the SH degree is above 0, and the representation's own
  per-Gaussian keys (the trajectory coefficients);
- optionally, parameters that are not per-Gaussian (the HexPlane field) in their own
  optimizer groups (:meth:`Gaussians4D.field_param_groups`);
- its own regularizers (:meth:`Gaussians4D.regularization`) and schedule
  (:meth:`Gaussians4D.on_step`, e.g. the HexPlane coarse phase);
- serializable: :meth:`Gaussians4D.state` / :meth:`Gaussians4D.from_state`, dispatched on
  ``state["kind"]`` by :func:`backend.gaussians.model_io.load_gaussians4d`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from torch import Tensor, nn

from backend.gaussians.gaussians import Gaussians
from protocol.config import OptimizationConfig
from protocol.formats.image_formation import LEGACY_IMAGE_FORMATION


def canonical_params(means: Tensor, quats: Tensor, log_scales: Tensor, opacity_logits: Tensor, sh: Tensor,
                     sh_degree: int) -> dict[str, Tensor]:
    """The canonical per-Gaussian tensors every model stores, under their :attr:`Gaussians4D.params`
    keys: ``means``, ``quats``, ``scales`` (log), ``opacities`` (logits), ``sh0 [N,1,3]``,
    and ``shN [N,K−1,3]`` when ``sh_degree > 0`` (zeros when ``sh`` has only the DC band).

    Args:
        means, quats, log_scales, opacity_logits: ``[N,3]``, ``[N,4]`` wxyz, ``[N,3]``, ``[N]``.
        sh: ``[N,K',3]`` SH coefficients.
        sh_degree: the model's SH degree.
    """
    params = {"means": means, "quats": quats, "scales": log_scales, "opacities": opacity_logits,
              "sh0": sh[:, :1, :]}
    if sh_degree > 0:
        k = (sh_degree + 1) ** 2
        params["shN"] = sh[:, 1:, :] if sh.shape[1] == k else sh.new_zeros(means.shape[0], k - 1, 3)
    return params


class Gaussians4D(nn.Module, ABC):
    """Abstract 4D Gaussian model; see the module docstring for the contract.

    Subclasses set :attr:`kind`, fill :attr:`params` in ``__init__`` and implement
    :meth:`at`, :attr:`is_static`, :meth:`state` and :meth:`from_state`; the other hooks
    have neutral defaults (no field groups, no regularizer, no schedule).

    Attributes:
        kind: the ``state()["kind"]`` tag of the subclass.
        POSITION_PARAMS: per-Gaussian keys whose learning rate is position-like: multiplied
            by the scene radius and decayed over the run
            (:class:`protocol.config.OptimizationConfig`).
        params: the per-Gaussian ``ParameterDict`` (N first).
    """

    kind: ClassVar[str] = ""
    #: the image formation the model is fitted for and rendered with
    #: (:mod:`protocol.formats.image_formation`); set from ``ModelConfig.image_formation``
    #: by :func:`backend.gaussians.model_io.build_gaussians4d`, saved in :meth:`state`
    #: and restored by :func:`~backend.gaussians.model_io.load_gaussians4d` (states saved
    #: before it existed: ``"3dgs"``, what they were fitted with).
    image_formation: str = LEGACY_IMAGE_FORMATION
    POSITION_PARAMS: ClassVar[tuple[str, ...]] = ("means", "motion")
    params: nn.ParameterDict

    @property
    def num_gaussians(self) -> int:
        """N, the Gaussian count (the same at every time)."""
        return self.params["means"].shape[0]

    @property
    @abstractmethod
    def is_static(self) -> bool:
        """True when :meth:`at` currently gives the same Gaussians at every time (a model
        without motion terms, or one in a static schedule phase)."""

    @abstractmethod
    def at(self, t: Tensor) -> Gaussians:
        """The Gaussians at B normalized times.

        Args:
            t: ``[B]`` float times; 0 and 1 are the first and last input frames.

        Returns:
            :class:`Gaussians` with leading batch dim B (means ``[B,N,3]``, quats
            ``[B,N,4]``, log_scales ``[B,N,3]``, opacity_logits ``[B,N]``, sh
            ``[B,N,K,3]``), in the stored (log / logit) convention.
        """

    def learning_rates(self, opt: OptimizationConfig, scene_radius: float) -> dict[str, float]:
        """Adam learning rate of every key of :attr:`params`, in ``params`` order.

        ``means`` and ``motion`` (:attr:`POSITION_PARAMS`) get ``lr × scene_radius``;
        ``quats``, ``rot_motion``, ``scales``, ``opacities``, ``sh0`` their own rate;
        ``shN`` gets ``lr_sh0 / 20``.

        Args:
            opt: the optimization settings.
            scene_radius: scene radius in metres (:func:`scene_bounds`).

        Raises:
            ValueError: a key of :attr:`params` has no rate (a subclass forgot one).
        """
        table = {"means": opt.lr_means * scene_radius, "motion": opt.lr_motion * scene_radius,
                 "quats": opt.lr_quats, "rot_motion": opt.lr_rot_motion, "scales": opt.lr_scales,
                 "opacities": opt.lr_opacities, "sh0": opt.lr_sh0, "shN": opt.lr_sh0 / 20}
        missing = [k for k in self.params if k not in table]
        if missing:
            raise ValueError(f"{type(self).__name__} has parameters without a learning rate: {missing}")
        return {k: table[k] for k in self.params}

    def field_param_groups(self, opt: OptimizationConfig) -> list[dict]:
        """Optimizer groups (``{"params": [...], "lr": float}``) of the parameters that are
        not per-Gaussian, optimized by one Adam of their own and never touched by
        densification; ``[]`` (the default) when the model has none."""
        return []

    def regularization(self) -> Tensor | None:
        """The model's own regularizers, already weighted, at its current schedule phase:
        a scalar tensor, or None (the default) when none applies."""
        return None

    def on_step(self, step: int, total_steps: int, progress: float | None = None) -> None:
        """Schedule hook, called at the start of every training step ``step`` of
        ``total_steps`` (0-based) before :meth:`at`; on a time-budgeted run ``progress``
        (in [0, 1]) places the model's phases instead of ``step / total_steps``. The
        default does nothing."""

    def fit_state(self) -> dict:
        """Run-time state of a fit that is not in :meth:`state` but that the next steps
        depend on (caches rebuilt on a schedule), for a fit checkpoint
        (:mod:`backend.pipeline.reconstruct.checkpoint`): tensors and plain values,
        ``torch.load(weights_only=True)`` safe. The default has none: ``{}``."""
        return {}

    def load_fit_state(self, state: dict) -> None:
        """Restore what :meth:`fit_state` returned (the default ignores it)."""

    @abstractmethod
    def state(self) -> dict:
        """Serializable state (CPU tensors, ``torch.load(weights_only=True)`` safe) with
        ``"kind": self.kind`` and ``"image_formation": self.image_formation``."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict) -> "Gaussians4D":
        """Rebuild a model (on CPU) from :meth:`state`.

        Raises:
            ValueError: the state is not of this kind.
        """
