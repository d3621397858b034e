"""Load any 4D Gaussian model from its ``state()`` dict (what ``model.pt`` holds)."""

from __future__ import annotations

from torch import nn

from backend.gaussians.hexplane import HexPlaneGaussians4D
from backend.gaussians.trajectories import TrajectoryGaussians4D

#: ``state["kind"]`` → model class with a ``from_state`` classmethod.
MODEL_KINDS: dict[str, type] = {"trajectory": TrajectoryGaussians4D, "hexplane": HexPlaneGaussians4D}


def load_gaussians4d(state: dict) -> nn.Module:
    """Rebuild a 4D Gaussian model (CPU) from ``model.state()``.

    Args:
        state: a dict with ``"kind"`` in :data:`MODEL_KINDS` (``"trajectory"`` →
            :class:`TrajectoryGaussians4D`, ``"hexplane"`` → :class:`HexPlaneGaussians4D`),
            e.g. ``torch.load(path, map_location="cpu", weights_only=True)``.

    Returns:
        The model; both kinds provide ``at(t) -> Gaussians``, ``num_gaussians``,
        ``params``, ``config.sh_degree`` and ``state()``.

    Raises:
        ValueError: when ``state`` is not a dict or its kind is missing or unknown.
    """
    kind = state.get("kind") if isinstance(state, dict) else None
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown 4D model kind {kind!r}; expected one of {sorted(MODEL_KINDS)}")
    return MODEL_KINDS[kind].from_state(state)
