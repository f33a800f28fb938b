"""SMAC-like tuner: a random-forest surrogate with expected improvement (Hutter et al., 2011).

Our own small implementation on scikit-learn's RandomForestRegressor (SMAC3 itself needs a
SWIG build): after ``n_startup_jobs`` random trials, each proposal is the candidate with the
highest expected improvement among random points and local moves around the best points;
the forest's per-tree spread is the uncertainty. A share ``random_fraction`` stays random
(SMAC's interleaved random configurations).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from torchslim.errors import require
from torchslim.experiment.searchspace import RandomSuggester, SearchSpace
from torchslim.experiment.tuners.base import Tuner
from torchslim.experiment.tuners.mutation import NeighbourSuggester


class SMACTuner(Tuner):
    """NNI's ``SMAC`` (a stand-in with the same idea, see the module docstring)."""

    name = "SMAC"
    feature = "The SMAC tuner"

    def __init__(self, search_space: SearchSpace | Mapping[str, Any],
                 optimize_mode: str = "maximize", seed: int | None = None,
                 n_startup_jobs: int = 10, n_candidates: int = 300, n_trees: int = 30,
                 random_fraction: float = 0.2) -> None:
        super().__init__(search_space, optimize_mode, seed)
        self.np = require("numpy", "experiment", self.feature)
        self.ensemble = require("sklearn.ensemble", "experiment", self.feature)
        self.n_startup_jobs = int(n_startup_jobs)
        self.n_candidates = int(n_candidates)
        self.n_trees = int(n_trees)
        self.random_fraction = float(random_fraction)
        self.history: list[tuple[float, dict[str, Any]]] = []
        self.columns: list[str] = []

    def _encode(self, raw: Mapping[str, Any]) -> list[float]:
        # raw answers are numbers (choice: the option index); absent (inactive) -> -1
        return [float(raw.get(c, -1.0)) for c in self.columns]

    def _propose(self, sequence: int) -> tuple[dict[str, Any], dict[str, Any]]:
        if len(self.history) < self.n_startup_jobs or self.rng.random() < self.random_fraction:
            return self._sample(RandomSuggester(self.rng))
        np = self.np
        self.columns = sorted({k for _, raw in self.history for k in raw})
        x = np.array([self._encode(raw) for _, raw in self.history])
        y = np.array([loss for loss, _ in self.history])
        forest = self.ensemble.RandomForestRegressor(
            n_estimators=self.n_trees, min_samples_leaf=2, max_features=0.8,
            random_state=self.rng.randrange(2**31)).fit(x, y)
        best = sorted(self.history, key=lambda item: item[0])[:5]
        candidates = [self._sample(RandomSuggester(self.rng)) for _ in range(self.n_candidates)]
        for _, center in best:
            for scale in (0.02, 0.1, 0.3):
                candidates += [self._sample(NeighbourSuggester(center, self.rng, scale))
                               for _ in range(self.n_candidates // 30)]
        cx = np.array([self._encode(raw) for _, raw in candidates])
        per_tree = np.stack([tree.predict(cx) for tree in forest.estimators_])
        mu, sigma = per_tree.mean(0), per_tree.std(0) + 1e-9
        z = (y.min() - mu) / sigma
        cdf = 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
        pdf = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        ei = sigma * (z * cdf + pdf)
        return candidates[int(ei.argmax())]

    def _learn(self, sequence: int, raw: dict[str, Any], loss: float | None) -> None:
        if loss is not None:
            self.history.append((loss, raw))
