"""Evolution: tournament selection and single-parameter mutation over a population."""
from __future__ import annotations

from typing import Any, Mapping

from torchslim.experiment.searchspace import RandomSuggester, SearchSpace
from torchslim.experiment.tuners.base import Tuner
from torchslim.experiment.tuners.mutation import NeighbourSuggester


class EvolutionTuner(Tuner):
    """NNI's ``Evolution``: ``population_size`` random individuals, then each new trial
    mutates one parameter of the winner of a random pair; the population keeps the best
    ``population_size`` results (ageing out the worst)."""

    name = "Evolution"

    def __init__(self, search_space: SearchSpace | Mapping[str, Any],
                 optimize_mode: str = "maximize", seed: int | None = None,
                 population_size: int = 20) -> None:
        super().__init__(search_space, optimize_mode, seed)
        self.population_size = max(int(population_size), 2)
        self.population: list[tuple[float, dict[str, Any]]] = []
        self.proposed = 0

    def observe(self, sequence: int, raw: Mapping[str, Any]) -> dict[str, Any]:
        self.proposed += 1  # a replayed individual counts toward the random start
        return super().observe(sequence, raw)

    def _propose(self, sequence: int) -> tuple[dict[str, Any], dict[str, Any]]:
        self.proposed += 1
        if len(self.population) < 2 or self.proposed <= self.population_size:
            return self._sample(RandomSuggester(self.rng))
        a, b = self.rng.sample(self.population, 2)
        parent = min(a, b, key=lambda item: item[0])[1]
        gene = self.rng.choice(sorted(parent))
        return self._sample(NeighbourSuggester(parent, self.rng, scale=1.0, mutate={gene}))

    def _learn(self, sequence: int, raw: dict[str, Any], loss: float | None) -> None:
        if loss is None:
            return
        self.population.append((loss, raw))
        if len(self.population) > self.population_size:
            self.population.remove(max(self.population, key=lambda item: item[0]))
