"""Grid search over a discrete space (choice, randint, quniform)."""
from __future__ import annotations

import json
from typing import Any, Mapping

from torchslim.experiment.tuners.base import NoMoreTrials, Tuner


def _key(raw: Mapping[str, Any]) -> str:
    return json.dumps(raw, sort_keys=True)


class GridSearchTuner(Tuner):
    """NNI's ``GridSearch``: each grid point once, in order, then :class:`NoMoreTrials`."""

    name = "GridSearch"

    def __init__(self, search_space: Any, optimize_mode: str = "maximize",
                 seed: int | None = None) -> None:
        super().__init__(search_space, optimize_mode, seed)
        self.points = self.space.grid()  # raises ConfigError for continuous parameters
        self.used: set[str] = set()
        self.cursor = 0

    def observe(self, sequence: int, raw: Mapping[str, Any]) -> dict[str, Any]:
        self.used.add(_key(raw))
        return super().observe(sequence, raw)

    def _propose(self, sequence: int) -> tuple[dict[str, Any], dict[str, Any]]:
        while self.cursor < len(self.points):
            raw = self.points[self.cursor]
            self.cursor += 1
            if _key(raw) not in self.used:
                self.used.add(_key(raw))
                return self.space.realize(raw), raw
        raise NoMoreTrials(f"all {len(self.points)} grid points were tried")
