"""The reconstruct stage, split by job:

- :mod:`.stage` — :func:`reconstruct`, the entry point (set-up, loop, progress, stats);
- :mod:`.initialize` — scene bounds, space carving, kNN scales, the model factory;
- :mod:`.confidence` — Efficient4D confidence maps of the footage;
- :mod:`.training_data` — the frames on the device and the resolution schedule;
- :mod:`.train` — the training step, the loss terms of a config, densification.

The loss terms are :mod:`backend.optim.loss_terms`, the optimizers
:mod:`backend.optim.optimizer`, the render helpers :mod:`backend.render.frames`.
"""

from backend.pipeline.reconstruct.confidence import footage_confidence
from backend.pipeline.reconstruct.initialize import carve_initial_points, init_model, knn_scale, scene_bounds
from backend.pipeline.reconstruct.stage import reconstruct
from backend.pipeline.reconstruct.train import Trainer, make_densifier, make_loss_terms
from protocol.config import ReconstructConfig

__all__ = ["ReconstructConfig", "Trainer", "carve_initial_points", "footage_confidence", "init_model", "knn_scale",
           "make_densifier", "make_loss_terms", "reconstruct", "scene_bounds"]
