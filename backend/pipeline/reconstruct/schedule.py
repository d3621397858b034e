"""Where a fit stands in its schedule: by steps, or by wall-clock time within a budget.

Every phase of a fit is placed at a fraction of the run: the coarse-to-fine switch
(``data.low_res_fraction``), the end of densification (``densification.stop_fraction``),
the static warm-up of the motion models, the decay of the learning rates. Without a time
budget the run is ``optimization.iterations`` steps and step ``s`` is at ``s / iterations``
(each part of the fit then keeps its own step arithmetic, as before). With
``optimization.time_budget_s`` the run's progress is the larger of that and the fraction
of the budget spent, so a slower machine (or a slower scene) goes through every phase,
decay included, and ends at the budget instead of being cut off mid-run; a faster one ends
at ``iterations`` steps. ``optimization.time_limit_s`` is the separate hard stop
(:func:`backend.pipeline.reconstruct.stage.reconstruct`).
"""

from __future__ import annotations

import time
from typing import Callable


class FitSchedule:
    """Progress of a fit in [0, 1].

    Args:
        iterations: the planned steps (the run never takes more).
        time_budget_s: wall-clock budget in seconds; 0 = none.
        started: the ``clock()`` reading the budget counts from (default: now).
        clock: seconds, monotonic (injectable for tests).

    Raises:
        ValueError: ``iterations < 1`` or a negative budget.
    """

    def __init__(self, iterations: int, time_budget_s: float = 0.0, started: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if iterations < 1 or time_budget_s < 0:
            raise ValueError(f"need iterations ≥ 1 and a budget ≥ 0, got {iterations}, {time_budget_s}")
        self.iterations, self.time_budget_s, self.clock = iterations, float(time_budget_s), clock
        self.started = clock() if started is None else started

    @property
    def by_time(self) -> bool:
        """Whether progress also counts time (a budget is set)."""
        return self.time_budget_s > 0

    def progress(self, step: int) -> float:
        """Progress at the start of ``step`` (0-based): ``step / iterations``, or with a
        budget ``max(step / iterations, elapsed / budget)``; clamped to [0, 1]."""
        p = step / self.iterations
        if self.by_time:
            p = max(p, (self.clock() - self.started) / self.time_budget_s)
        return min(max(p, 0.0), 1.0)

    def finished(self, step: int, progress: float) -> bool:
        """Whether the run is over before ``step``: all planned steps taken, or the budget
        spent (never before the first step)."""
        return step >= self.iterations or (step > 0 and self.by_time and progress >= 1.0)
