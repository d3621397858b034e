"""The registry of 4D Gaussian model kinds: build one from a :class:`protocol.config.ModelConfig`
and initial Gaussians, or load one from its ``state()`` dict (what ``model.pt`` holds)."""

from __future__ import annotations

from torch import Tensor

from backend.gaussians.control_points import ControlPointGaussians4D
from backend.gaussians.hexplane import HexPlaneGaussians4D
from backend.gaussians.model import Gaussians4D
from backend.gaussians.trajectories import TrajectoryGaussians4D, basis_for_times, static_basis
from protocol.config import ModelConfig
from protocol.formats.image_formation import IMAGE_FORMATIONS, LEGACY_IMAGE_FORMATION

#: ``state["kind"]`` → model class (a :class:`Gaussians4D` with a ``from_state`` classmethod).
MODEL_KINDS: dict[str, type[Gaussians4D]] = {cls.kind: cls for cls in (TrajectoryGaussians4D, HexPlaneGaussians4D,
                                                                         ControlPointGaussians4D)}


def _build_representation(config: ModelConfig, means: Tensor, quats: Tensor, log_scales: Tensor,
                          opacity_logits: Tensor, sh: Tensor, n_times: int | None = None) -> Gaussians4D:
    """A new model of ``config.representation`` around initial (canonical) Gaussians.

    - ``"trajectory"``: :class:`TrajectoryGaussians4D` with ``config.trajectory`` cut to
      ``n_times`` distinct training times (:func:`basis_for_times`);
    - ``"static"``: a trajectory model with an empty basis (:func:`static_basis`);
    - ``"hexplane"``: :class:`HexPlaneGaussians4D` with ``config.hexplane`` (the field's
      bound from the means; its planes and MLP draw from torch's global RNG);
    - ``"control_points"``: :class:`ControlPointGaussians4D` with ``config.control_points``
      (control points farthest-point sampled from the means; its MLP draws from torch's
      global RNG).

    Args:
        config: the model section of the reconstruct settings.
        means, quats, log_scales, opacity_logits: ``[N,3]`` (m), ``[N,4]`` wxyz, ``[N,3]``
            log std (m), ``[N]`` logits.
        sh: ``[N,K,3]`` SH coefficients.
        n_times: distinct training times (None: no cut of the trajectory basis).

    Raises:
        ValueError: an unknown representation.
    """
    if config.representation == "hexplane":
        return HexPlaneGaussians4D(means, quats, log_scales, opacity_logits, sh, config.hexplane)
    if config.representation == "control_points":
        return ControlPointGaussians4D(means, quats, log_scales, opacity_logits, sh, config.control_points)
    if config.representation == "static":
        return TrajectoryGaussians4D(means, quats, log_scales, opacity_logits, sh, static_basis(config.trajectory))
    if config.representation == "trajectory":
        return TrajectoryGaussians4D(means, quats, log_scales, opacity_logits, sh,
                                     basis_for_times(config.trajectory, n_times))
    raise ValueError(f"unknown representation {config.representation!r}; expected one of trajectory, hexplane, control_points, static")


def build_gaussians4d(config: ModelConfig, means: Tensor, quats: Tensor, log_scales: Tensor, opacity_logits: Tensor,
                      sh: Tensor, n_times: int | None = None) -> Gaussians4D:
    """A new model of ``config.representation`` (see :func:`_build_representation`) fitted
    for ``config.image_formation`` (set as the model's :attr:`~Gaussians4D.image_formation`).

    Raises:
        ValueError: an unknown representation or image formation.
    """
    if config.image_formation not in IMAGE_FORMATIONS:
        raise ValueError(f"unknown image formation {config.image_formation!r}; expected one of {list(IMAGE_FORMATIONS)}")
    model = _build_representation(config, means, quats, log_scales, opacity_logits, sh, n_times)
    model.image_formation = config.image_formation
    return model


def load_gaussians4d(state: dict) -> Gaussians4D:
    """Rebuild a 4D Gaussian model (CPU) from ``model.state()``.

    Args:
        state: a dict with ``"kind"`` in :data:`MODEL_KINDS` (``"trajectory"`` →
            :class:`TrajectoryGaussians4D`, ``"hexplane"`` → :class:`HexPlaneGaussians4D`),
            e.g. ``torch.load(path, map_location="cpu", weights_only=True)``.

    Returns:
        The model (a :class:`Gaussians4D`), with ``image_formation`` from the state
        (``"3dgs"`` for states saved before it was recorded).

    Raises:
        ValueError: when ``state`` is not a dict or its kind is missing or unknown, or its
            image formation is unknown.
    """
    kind = state.get("kind") if isinstance(state, dict) else None
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown 4D model kind {kind!r}; expected one of {sorted(MODEL_KINDS)}")
    model = MODEL_KINDS[kind].from_state(state)
    formation = state.get("image_formation", LEGACY_IMAGE_FORMATION)
    if formation not in IMAGE_FORMATIONS:
        raise ValueError(f"unknown image formation {formation!r} in the model state")
    model.image_formation = formation
    return model
