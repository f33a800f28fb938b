"""Multi-trial NAS strategies as tuners of the experiment engine.

A model space's decisions are all categorical, so the engine's search space for it is
``{label: choice(values)}`` and a raw point is ``{label: index}``. The tuners below work on
those indices; ``Random``/``GridSearch``/``TPE`` reuse the engine's own tuners.
"""
from __future__ import annotations

import json
import math
from collections import deque
from typing import Any, Callable, Mapping

from torchslim.experiment.searchspace import SearchSpace
from torchslim.experiment.tuners.base import NoMoreTrials, Tuner

__all__ = ["DedupRandomTuner", "RegularizedEvolutionTuner", "PolicyTuner", "FilterTuner"]

# how many fresh draws a deduplicating tuner tries before it declares the space exhausted
_DRAWS = 1000


def _key(raw: Mapping[str, Any]) -> str:
    return json.dumps(raw, sort_keys=True)


def _sizes(space: SearchSpace) -> dict[str, int]:
    return {p.path: len(p.options) for p in space.params}


class _IndexTuner(Tuner):
    """A tuner over ``{label: index}`` points that can skip points it has seen."""

    def __init__(self, search_space: Any, optimize_mode: str = "maximize",
                 seed: int | None = None, dedup: bool = True) -> None:
        super().__init__(search_space, optimize_mode, seed)
        self.sizes = _sizes(self.space)
        self.dedup = dedup
        self.tried: set[str] = set()  # not "seen": the engine's base class may own that name
        self.total = math.prod(self.sizes.values())

    def observe(self, sequence: int, raw: Mapping[str, Any]) -> dict[str, Any]:
        self.tried.add(_key(raw))
        return super().observe(sequence, raw)

    def random_point(self) -> dict[str, int]:
        return {label: self.rng.randrange(n) for label, n in self.sizes.items()}

    def _propose(self, sequence: int) -> tuple[dict[str, Any], dict[str, Any]]:
        for _ in range(_DRAWS):
            raw = self.candidate()
            if not self.dedup or _key(raw) not in self.tried:
                self.tried.add(_key(raw))
                return self.space.realize(raw), raw
            if len(self.tried) >= self.total:
                break
        raise NoMoreTrials(f"all {len(self.tried)} distinct architectures were tried "
                           f"(dedup=True)")

    def candidate(self) -> dict[str, int]:
        return self.random_point()


class DedupRandomTuner(_IndexTuner):
    """Uniform random architectures, each at most once when ``dedup``."""

    name = "Random"


class RegularizedEvolutionTuner(_IndexTuner):
    """Regularized (ageing) evolution, Real et al. 2019, as NNI's ``RegularizedEvolution``.

    ``population_size`` random architectures first; then each child mutates every label of
    the best of ``sample_size`` random members with probability ``mutation_prob`` (at least
    one label changes), and the oldest member dies.
    """

    name = "RegularizedEvolution"

    def __init__(self, search_space: Any, optimize_mode: str = "maximize",
                 seed: int | None = None, population_size: int = 100, sample_size: int = 25,
                 mutation_prob: float = 0.05, dedup: bool = True) -> None:
        super().__init__(search_space, optimize_mode, seed, dedup)
        self.population_size = max(int(population_size), 2)
        self.sample_size = max(int(sample_size), 1)
        self.mutation_prob = float(mutation_prob)
        self.population: deque[tuple[float, dict[str, int]]] = deque()
        self.proposed = 0

    def _propose(self, sequence: int) -> tuple[dict[str, Any], dict[str, Any]]:
        self.proposed += 1
        return super()._propose(sequence)

    def candidate(self) -> dict[str, int]:
        if self.proposed <= self.population_size or not self.population:
            return self.random_point()
        contenders = self.rng.sample(list(self.population),
                                     min(self.sample_size, len(self.population)))
        parent = min(contenders, key=lambda item: item[0])[1]
        child = dict(parent)
        mutable = [label for label, n in self.sizes.items() if n > 1]
        if not mutable:
            return child
        changed = [label for label in mutable if self.rng.random() < self.mutation_prob]
        for label in changed or [self.rng.choice(mutable)]:
            others = [i for i in range(self.sizes[label]) if i != parent[label]]
            child[label] = self.rng.choice(others)
        return child

    def _learn(self, sequence: int, raw: dict[str, Any], loss: float | None) -> None:
        if loss is None:
            return
        self.population.append((loss, dict(raw)))
        if len(self.population) > self.population_size:
            self.population.popleft()  # ageing: the oldest goes, however good


class PolicyTuner(_IndexTuner):
    """A policy-gradient (REINFORCE) controller, NNI's ``PolicyBasedRL`` in spirit.

    The policy is one softmax per label; each result moves it towards the architectures
    that beat the running-average reward (normalised by the running spread).
    """

    name = "PolicyBasedRL"

    def __init__(self, search_space: Any, optimize_mode: str = "maximize",
                 seed: int | None = None, learning_rate: float = 0.5, baseline_decay: float = 0.8,
                 entropy_floor: float = 0.02, dedup: bool = True) -> None:
        super().__init__(search_space, optimize_mode, seed, dedup)
        self.lr, self.decay, self.floor = float(learning_rate), float(baseline_decay), entropy_floor
        self.logits = {label: [0.0] * n for label, n in self.sizes.items()}
        self.baseline: float | None = None
        self.spread = 1.0

    def probs(self, label: str) -> list[float]:
        z = self.logits[label]
        top = max(z)
        e = [math.exp(v - top) for v in z]
        s = sum(e)
        n = len(z)
        # a floor keeps every option reachable (exploration never dies out completely)
        return [(1 - self.floor) * v / s + self.floor / n for v in e]

    def candidate(self) -> dict[str, int]:
        return {label: self.rng.choices(range(n), weights=self.probs(label))[0]
                for label, n in self.sizes.items()}

    def _learn(self, sequence: int, raw: dict[str, Any], loss: float | None) -> None:
        if loss is None:
            return
        reward = -loss
        if self.baseline is None:
            self.baseline = reward
            return
        advantage = reward - self.baseline
        self.spread = self.decay * self.spread + (1 - self.decay) * abs(advantage) + 1e-12
        self.baseline = self.decay * self.baseline + (1 - self.decay) * reward
        step = self.lr * advantage / self.spread
        for label, idx in raw.items():
            p = self.probs(label)
            self.logits[label] = [z + step * ((1.0 if i == idx else 0.0) - p[i])
                                  for i, z in enumerate(self.logits[label])]


class FilterTuner(Tuner):
    """Wraps a tuner; proposals ``accept(sample)`` rejects never become trials.

    A rejected proposal is reported to the wrapped tuner as a failure, so learning tuners
    steer away from it. After ``patience`` rejections in a row the search stops.
    """

    def __init__(self, inner: Tuner, accept: Callable[[dict[str, Any]], bool],
                 patience: int = _DRAWS) -> None:
        super().__init__(inner.space, inner.optimize_mode, inner.seed)
        self.inner, self.accept, self.patience = inner, accept, int(patience)
        self.name = f"{inner.name}+Filter"
        self.rejected = 0

    def generate(self, sequence: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
        for _ in range(self.patience):
            proposal = self.inner.generate(sequence)
            if proposal is None or self.accept(proposal[0]):
                return proposal
            self.rejected += 1
            self.inner.receive(sequence, None)
        raise NoMoreTrials(f"the constraint rejected {self.patience} architectures in a row")

    def _propose(self, sequence: int) -> None:  # generate() is overridden
        raise NotImplementedError

    def observe(self, sequence: int, raw: Mapping[str, Any]) -> dict[str, Any]:
        return self.inner.observe(sequence, raw)

    def receive(self, sequence: int, value: float | None) -> None:
        self.inner.receive(sequence, value)
