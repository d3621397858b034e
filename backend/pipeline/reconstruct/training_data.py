"""The footage on the training device, with the coarse-to-fine resolution schedule."""

from __future__ import annotations

import torch
from torch import Tensor

from backend.optim.loss_terms import TrainingBatch
from backend.pipeline.ingest import Footage, resize_footage_images
from protocol.config import DataConfig


class TrainingData:
    """Training frames on ``device`` at full and (for the first phase) reduced resolution.

    The first ``int(iterations · low_res_fraction)`` steps (or, on a time budget, the first
    ``low_res_fraction`` of the run's progress: :mod:`.schedule`) fit images downsampled by
    ``low_res_factor`` (STAG4D's 128 → 256 → 512, in two phases); ``low_res_factor = 1``
    skips that phase. Confidence maps, when given, are area-downsampled alike.

    Args:
        footage: the training footage (already at the working resolution).
        cfg: the data section.
        iterations: the fit's steps.
        device: where the tensors live.
        confidence: ``[F, H, W]`` full-resolution confidence, or None.
    """

    def __init__(self, footage: Footage, cfg: DataConfig, iterations: int, device, confidence: Tensor | None = None):
        self.n_frames = len(footage)
        self.low_fraction = cfg.low_res_fraction if cfg.low_res_factor > 1 else 0.0
        self.low_steps = int(iterations * self.low_fraction)
        self.full = (footage.images.to(device), footage.Ks.to(device), confidence)
        self.low = self.full
        if self.low_fraction > 0:
            small, small_Ks = resize_footage_images(footage.images, footage.Ks,
                                                    max(footage.width, footage.height) // cfg.low_res_factor)
            low_conf = None
            if confidence is not None:
                low_conf = torch.nn.functional.interpolate(confidence[:, None], size=small.shape[1:3],
                                                           mode="area")[:, 0]
            self.low = (small.to(device), small_Ks.to(device), low_conf)
        self.viewmats, self.times = footage.viewmats.to(device), footage.times.to(device)

    def batch(self, step: int, idx: Tensor, background: Tensor, progress: float | None = None) -> TrainingBatch:
        """The frames ``idx`` (``[B]`` int64 on the device) at ``step``'s resolution, over
        ``background`` (``[B,3]``); with ``progress`` (a time-budgeted run) the phase is
        chosen by progress instead of the step."""
        low = step < self.low_steps if progress is None else progress < self.low_fraction
        images, Ks, conf = self.low if low else self.full
        return TrainingBatch(step=step, times=self.times[idx], viewmats=self.viewmats[idx], Ks=Ks[idx],
                             width=images.shape[2], height=images.shape[1], target=images[idx],
                             background=background, confidence=None if conf is None else conf[idx])
