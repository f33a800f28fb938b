"""Assessors: decide from intermediate results whether a running trial should stop early."""
from __future__ import annotations

import statistics
from typing import Any, Mapping, Sequence

from torchslim.errors import ConfigError
from torchslim.experiment.tuners.base import check_optimize_mode

ASSESSORS = ("Medianstop", "Curvefitting")


class MedianStopAssessor:
    """NNI's ``Medianstop``: stop a trial at step t when its best result so far is worse
    than the median of the running averages (up to step t) of the completed trials.

    Nothing is stopped before ``start_step`` results were reported, nor before some
    completed trial reached step t.
    """

    name = "Medianstop"

    def __init__(self, optimize_mode: str = "maximize", start_step: int = 0) -> None:
        self.optimize_mode = check_optimize_mode(optimize_mode, "assessor.classArgs.optimize_mode")
        if int(start_step) < 0:
            raise ConfigError(f"assessor.classArgs.start_step is {start_step!r}; allowed: an int >= 0")
        self.start_step = int(start_step)
        # running averages of each completed trial, one per step
        self.completed: list[list[float]] = []

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.optimize_mode == "maximize" else a < b

    def should_stop(self, history: Sequence[float], trial_id: str | None = None) -> bool:
        """Whether a running trial with these intermediate results should stop now."""
        step = len(history)
        if step == 0 or step < self.start_step:
            return False
        averages = [curve[step - 1] for curve in self.completed if len(curve) >= step]
        if not averages:
            return False
        best = max(history) if self.optimize_mode == "maximize" else min(history)
        return self._better(statistics.median(averages), best)

    def trial_end(self, history: Sequence[float], succeeded: bool,
                  trial_id: str | None = None) -> None:
        """Record a finished trial's curve (only successful trials set the bar)."""
        if succeeded and history:
            total, curve = 0.0, []
            for i, value in enumerate(history, 1):
                total += value
                curve.append(total / i)
            self.completed.append(curve)


def create_assessor(name: str | None, class_args: Mapping[str, Any] | None = None,
                    default_mode: str = "maximize", code_directory: str | None = None) -> Any:
    """Build the assessor named ``name`` (None: no assessor); with ``code_directory``,
    ``name`` is a user's ``module.Class`` there (NNI's codeDirectory/className)."""
    if name is None:
        return None
    if code_directory is not None:
        from torchslim.experiment.custom import create_user_assessor

        return create_user_assessor(code_directory, name, class_args)
    lowered = str(name).lower()
    if lowered not in {a.lower() for a in ASSESSORS}:
        raise ConfigError(f"assessor.name is {name!r}; allowed: {', '.join(ASSESSORS)}")
    from torchslim.experiment.tuners import check_class_args

    if lowered == "curvefitting":
        from torchslim.experiment.curvefitting import CurvefittingAssessor as cls
    else:
        cls = MedianStopAssessor
    args = {"optimize_mode": default_mode, **(class_args or {})}
    check_class_args(cls, args, "assessor.classArgs", skip=())
    return cls(**args)
