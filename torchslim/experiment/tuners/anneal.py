"""Simulated-annealing-style search: sample around good points with a shrinking step."""
from __future__ import annotations

from typing import Any, Mapping

from torchslim.experiment.searchspace import RandomSuggester, SearchSpace
from torchslim.experiment.tuners.base import Tuner
from torchslim.experiment.tuners.mutation import NeighbourSuggester


class AnnealTuner(Tuner):
    """NNI's ``Anneal``: start from the prior, then move around the best points so far.

    The centre is drawn from the best ``top_k`` results (better ranks likelier) and the
    step shrinks as ``1 / (1 + n_results / shrink_every)``, so the search narrows over time.
    """

    name = "Anneal"

    def __init__(self, search_space: SearchSpace | Mapping[str, Any],
                 optimize_mode: str = "maximize", seed: int | None = None,
                 n_startup_jobs: int = 5, top_k: int = 3, shrink_every: float = 10.0) -> None:
        super().__init__(search_space, optimize_mode, seed)
        self.n_startup_jobs = int(n_startup_jobs)
        self.top_k = max(int(top_k), 1)
        self.shrink_every = float(shrink_every)
        self.history: list[tuple[float, dict[str, Any]]] = []

    def _propose(self, sequence: int) -> tuple[dict[str, Any], dict[str, Any]]:
        if len(self.history) < self.n_startup_jobs:
            return self._sample(RandomSuggester(self.rng))
        best = sorted(self.history, key=lambda item: item[0])[: self.top_k]
        weights = [1.0 / (rank + 1) for rank in range(len(best))]
        center = self.rng.choices(best, weights=weights)[0][1]
        scale = 0.5 / (1.0 + len(self.history) / self.shrink_every)
        return self._sample(NeighbourSuggester(center, self.rng, scale))

    def _learn(self, sequence: int, raw: dict[str, Any], loss: float | None) -> None:
        if loss is not None:
            self.history.append((loss, raw))
