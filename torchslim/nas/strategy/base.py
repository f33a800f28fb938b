"""Strategy objects: what users pass to ``NasExperiment`` (NNI's ``nni.nas.strategy``).

A multi-trial strategy is a recipe for a tuner of the experiment engine
(:meth:`MultiTrialStrategy.make_tuner`); a one-shot strategy trains a weight-sharing
supernet itself (:mod:`torchslim.nas.strategy.oneshot`).
"""
from __future__ import annotations

from typing import Any, Callable

from torchslim.errors import ConfigError
from torchslim.experiment.searchspace import SearchSpace
from torchslim.experiment.tuners.base import Tuner
from torchslim.nas.strategy import tuners as t

__all__ = ["Strategy", "MultiTrialStrategy", "Random", "GridSearch", "RegularizedEvolution",
           "TPE", "PolicyBasedRL", "Filter", "Chain"]


class Strategy:
    """Base of every strategy."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class MultiTrialStrategy(Strategy):
    """A strategy that proposes architectures to train as separate trials."""

    engine_tuner = "Random"  # the closest engine tuner name, shown in stored configs

    def make_tuner(self, space: SearchSpace, optimize_mode: str = "maximize") -> Tuner:
        raise NotImplementedError


class Random(MultiTrialStrategy):
    """Uniform random architectures; ``dedup`` never proposes one twice."""

    def __init__(self, dedup: bool = True, seed: int | None = None) -> None:
        self.dedup, self.seed = dedup, seed

    def make_tuner(self, space: SearchSpace, optimize_mode: str = "maximize") -> Tuner:
        return t.DedupRandomTuner(space, optimize_mode, self.seed, dedup=self.dedup)


class GridSearch(MultiTrialStrategy):
    """Every architecture once, in order (``shuffle``: in random order)."""

    engine_tuner = "GridSearch"

    def __init__(self, shuffle: bool = False, seed: int | None = None) -> None:
        self.shuffle, self.seed = shuffle, seed

    def make_tuner(self, space: SearchSpace, optimize_mode: str = "maximize") -> Tuner:
        from torchslim.experiment.tuners.grid import GridSearchTuner

        tuner = GridSearchTuner(space, optimize_mode, self.seed)
        if self.shuffle:
            tuner.rng.shuffle(tuner.points)
        return tuner


class RegularizedEvolution(MultiTrialStrategy):
    """Ageing evolution (NNI's defaults: population 100, sample 25, mutation 0.05)."""

    engine_tuner = "Evolution"

    def __init__(self, population_size: int = 100, sample_size: int = 25,
                 mutation_prob: float = 0.05, dedup: bool = True, seed: int | None = None) -> None:
        if sample_size > population_size:
            raise ConfigError(f"RegularizedEvolution sample_size ({sample_size}) must not "
                              f"exceed population_size ({population_size})")
        self.population_size, self.sample_size = population_size, sample_size
        self.mutation_prob, self.dedup, self.seed = mutation_prob, dedup, seed

    def make_tuner(self, space: SearchSpace, optimize_mode: str = "maximize") -> Tuner:
        return t.RegularizedEvolutionTuner(space, optimize_mode, self.seed, self.population_size,
                                           self.sample_size, self.mutation_prob, self.dedup)


class TPE(MultiTrialStrategy):
    """Tree-structured Parzen estimator (Optuna's TPESampler, through the engine's TPE tuner)."""

    engine_tuner = "TPE"

    def __init__(self, n_startup_jobs: int = 10, seed: int | None = None) -> None:
        self.n_startup_jobs, self.seed = n_startup_jobs, seed

    def make_tuner(self, space: SearchSpace, optimize_mode: str = "maximize") -> Tuner:
        from torchslim.experiment.tuners.tpe import TPETuner

        return TPETuner(space, optimize_mode, self.seed, n_startup_jobs=self.n_startup_jobs)


class PolicyBasedRL(MultiTrialStrategy):
    """A REINFORCE controller over the labels (NNI's PolicyBasedRL without tianshou)."""

    def __init__(self, learning_rate: float = 0.5, baseline_decay: float = 0.8,
                 dedup: bool = True, seed: int | None = None) -> None:
        self.learning_rate, self.baseline_decay = learning_rate, baseline_decay
        self.dedup, self.seed = dedup, seed

    def make_tuner(self, space: SearchSpace, optimize_mode: str = "maximize") -> Tuner:
        return t.PolicyTuner(space, optimize_mode, self.seed, self.learning_rate,
                             self.baseline_decay, dedup=self.dedup)


class Filter:
    """A middleware: architectures for which ``filter_fn(sample)`` is False never run.

    Use it as ``Chain(Random(), Filter(lambda s: profiler.profile(s) < 1e6))`` (NNI's form).
    """

    def __init__(self, filter_fn: Callable[[dict[str, Any]], bool], patience: int = 1000) -> None:
        if not callable(filter_fn):
            raise ConfigError(f"Filter needs a callable sample -> bool, got {filter_fn!r}")
        self.filter_fn, self.patience = filter_fn, patience


class Chain(MultiTrialStrategy):
    """A strategy followed by middlewares (only :class:`Filter` is provided)."""

    def __init__(self, strategy: MultiTrialStrategy, *middlewares: Filter) -> None:
        if not isinstance(strategy, MultiTrialStrategy):
            raise ConfigError(f"Chain needs a multi-trial strategy first, got {strategy!r}")
        bad = [m for m in middlewares if not isinstance(m, Filter)]
        if bad:
            raise ConfigError(f"Chain middlewares must be Filter(...), got {bad}")
        self.strategy, self.middlewares = strategy, list(middlewares)

    @property
    def engine_tuner(self) -> str:  # type: ignore[override]
        return self.strategy.engine_tuner

    def make_tuner(self, space: SearchSpace, optimize_mode: str = "maximize") -> Tuner:
        tuner = self.strategy.make_tuner(space, optimize_mode)
        for m in self.middlewares:
            tuner = t.FilterTuner(tuner, m.filter_fn, m.patience)
        return tuner
