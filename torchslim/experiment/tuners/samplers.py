"""Tuners that are one Optuna sampler each: GP, CMAES, Metis (stand-in), NSGA2 and MOTPE.

Multi-objective tuners (``NSGA2``, ``MOTPE``) take the experiment's ``objectives`` (names and
directions) and learn from the vector of those metrics each trial reports.
"""
from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

from torchslim.errors import ConfigError
from torchslim.experiment.searchspace import RandomSuggester, SearchSpace
from torchslim.experiment.tuners.tpe import OptunaTuner


def _quiet(factory: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental" warnings: fine for us
        return factory()


class GPTuner(OptunaTuner):
    """NNI's ``GPTuner``: Gaussian-process Bayesian optimisation (Optuna's GPSampler, logEI).

    ``cold_start_num`` random trials come first (NNI's name).
    """

    name = "GP"
    feature = "The GP tuner"

    def __init__(self, search_space: SearchSpace | Mapping[str, Any],
                 optimize_mode: str = "maximize", seed: int | None = None,
                 cold_start_num: int = 10) -> None:
        self.cold_start_num = int(cold_start_num)
        super().__init__(search_space, optimize_mode, seed)

    def _sampler(self) -> Any:
        return _quiet(lambda: self.optuna.samplers.GPSampler(
            seed=self.sampler_seed, n_startup_trials=self.cold_start_num,
            warn_independent_sampling=False))


class MetisTuner(GPTuner):
    """NNI's ``MetisTuner``, as a documented stand-in: GP Bayesian optimisation (as Metis)
    plus Metis' exploration step (a random point with probability
    ``exploration_probability``). Metis' outlier re-sampling and its own GP code are not
    reproduced."""

    name = "Metis"
    feature = "The Metis tuner"

    def __init__(self, search_space: SearchSpace | Mapping[str, Any],
                 optimize_mode: str = "maximize", seed: int | None = None,
                 cold_start_num: int = 10, exploration_probability: float = 0.1) -> None:
        if not 0 <= float(exploration_probability) <= 1:
            raise ConfigError(f"tuner.classArgs.exploration_probability is "
                              f"{exploration_probability!r}; allowed: a number in [0, 1]")
        self.exploration_probability = float(exploration_probability)
        super().__init__(search_space, optimize_mode, seed, cold_start_num)

    def _propose(self, sequence: int) -> tuple[dict[str, Any], dict[str, Any]]:
        if len(self.study.trials) >= self.cold_start_num and self.rng.random() < self.exploration_probability:
            _, raw = self._sample(RandomSuggester(self.rng))
            return self._ask(sequence, enqueue=raw)  # the study learns the random point too
        return self._ask(sequence)


class CMAESTuner(OptunaTuner):
    """CMA-ES (Optuna's CmaEsSampler); categorical parameters are sampled independently."""

    name = "CMAES"
    feature = "The CMAES tuner"

    def __init__(self, search_space: SearchSpace | Mapping[str, Any],
                 optimize_mode: str = "maximize", seed: int | None = None,
                 n_startup_jobs: int = 1, popsize: int | None = None, sigma0: float | None = None,
                 restart_strategy: str | None = None) -> None:
        self.n_startup_jobs = int(n_startup_jobs)
        self.popsize = popsize
        self.sigma0 = sigma0
        self.restart_strategy = restart_strategy
        super().__init__(search_space, optimize_mode, seed)

    def _sampler(self) -> Any:
        optuna = self.optuna
        return _quiet(lambda: optuna.samplers.CmaEsSampler(
            seed=self.sampler_seed, n_startup_trials=self.n_startup_jobs, popsize=self.popsize,
            sigma0=self.sigma0, restart_strategy=self.restart_strategy,
            warn_independent_sampling=False,
            independent_sampler=optuna.samplers.RandomSampler(seed=self.sampler_seed)))


class MultiObjectiveTuner(OptunaTuner):
    """An Optuna multi-objective study; results are lists of objective values."""

    multi_objective = True

    def __init__(self, search_space: SearchSpace | Mapping[str, Any],
                 objectives: Sequence[Mapping[str, str]] | None = None,
                 seed: int | None = None, optimize_mode: str | None = None) -> None:
        if not objectives or len(objectives) < 2:
            raise ConfigError(f"tuner {self.name} is multi-objective: give the experiment at "
                              f"least two objectives (objectives: [{{name: accuracy, direction: "
                              f"maximize}}, {{name: latency, direction: minimize}}])")
        self.objectives = [dict(o) for o in objectives]
        super().__init__(search_space, optimize_mode or self.objectives[0]["direction"], seed)

    def _new_study(self) -> Any:
        return self.optuna.create_study(
            directions=[o["direction"] for o in self.objectives], sampler=self._sampler())

    def receive(self, sequence: int, value: Any) -> None:
        self.pending.pop(sequence, None)
        trial = self.trials.pop(sequence, None)
        if trial is None:
            return
        if value is None or not isinstance(value, (list, tuple)):
            self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, [float(v) for v in value])


class NSGA2Tuner(MultiObjectiveTuner):
    """NSGA-II (Optuna's NSGAIISampler) over the experiment's objectives."""

    name = "NSGA2"
    feature = "The NSGA2 tuner"

    def __init__(self, search_space: SearchSpace | Mapping[str, Any],
                 objectives: Sequence[Mapping[str, str]] | None = None,
                 seed: int | None = None, optimize_mode: str | None = None,
                 population_size: int = 20) -> None:
        self.population_size = int(population_size)
        super().__init__(search_space, objectives, seed, optimize_mode)

    def _sampler(self) -> Any:
        return self.optuna.samplers.NSGAIISampler(population_size=self.population_size,
                                                  seed=self.sampler_seed)


class MOTPETuner(MultiObjectiveTuner):
    """Multi-objective TPE (Optuna's TPESampler on a multi-objective study)."""

    name = "MOTPE"
    feature = "The MOTPE tuner"

    def __init__(self, search_space: SearchSpace | Mapping[str, Any],
                 objectives: Sequence[Mapping[str, str]] | None = None,
                 seed: int | None = None, optimize_mode: str | None = None,
                 n_startup_jobs: int = 10) -> None:
        self.n_startup_jobs = int(n_startup_jobs)
        super().__init__(search_space, objectives, seed, optimize_mode)

    def _sampler(self) -> Any:
        return _quiet(lambda: self.optuna.samplers.TPESampler(
            seed=self.sampler_seed, n_startup_trials=self.n_startup_jobs, multivariate=True))
