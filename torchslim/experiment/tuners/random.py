"""Random search: every parameter drawn from its prior, independently."""
from __future__ import annotations

from typing import Any

from torchslim.experiment.searchspace import RandomSuggester
from torchslim.experiment.tuners.base import Tuner


class RandomTuner(Tuner):
    """NNI's ``Random`` tuner (pure Python: no Optuna start-up cost)."""

    name = "Random"

    def _propose(self, sequence: int) -> tuple[dict[str, Any], dict[str, Any]]:
        return self._sample(RandomSuggester(self.rng))
