"""Tuners whose every proposal must run as given (no duplicate filtering)."""
from __future__ import annotations

from typing import Any

from torchslim.experiment.tuners.base import Tuner, point_key


class ExactTuner(Tuner):
    """A tuner that schedules its proposals itself (Hyperband's rungs, PBT's generations,
    a user's tuner, Batch): a proposal dropped as a duplicate would leave a rung or a
    generation waiting forever, so every proposal is handed out as it is."""

    def generate(self, sequence: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
        proposal = self._propose(sequence)
        if proposal is None:
            return None
        params, raw = proposal
        self.pending[sequence] = raw
        self.seen.add(point_key(raw))
        return params, raw
