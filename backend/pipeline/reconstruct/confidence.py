"""Confidence set-up of the reconstruct stage: Efficient4D confidence maps for the footage's
frames (:func:`backend.optim.confidence.confidence_maps` on the (view, time) grid)."""

from __future__ import annotations

import torch

from backend.errors import JobError
from backend.optim.confidence import confidence_maps
from backend.pipeline.ingest import Footage


def footage_confidence(footage: Footage, check_cancelled=None) -> torch.Tensor:
    """Efficient4D confidence ``[F, H, W]`` in [0, 1] for every training frame.

    Frames are grouped into views by identical camera matrices (to 1e-5) and ordered by
    time.

    ``check_cancelled`` (a job's :meth:`JobContext.check_cancelled`) is called before each
    frame's optical flows.

    Raises:
        JobError: ``invalid_option`` when the footage is not synchronized multi-view
            video (every camera at every time, at least 3 times), e.g. an orbital video.
        JobCancelled: from ``check_cancelled``.
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
    conf = confidence_maps(grid, check_cancelled=check_cancelled)
    return conf[view_of, time_of]
