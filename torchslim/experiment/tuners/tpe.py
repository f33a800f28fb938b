"""TPE (and any other Optuna sampler) driven through Optuna's ask/tell API.

The search space is walked define-by-run: each question the walk asks becomes one Optuna
``suggest_*`` call named by the parameter path, so nested ``choice`` spaces flatten into
conditional Optuna parameters (``prune_method``, ``prune_method[level].conv0_sparsity``...).
"""
from __future__ import annotations

import warnings
from typing import Any, Mapping

from torchslim.errors import require
from torchslim.experiment.searchspace import SearchSpace
from torchslim.experiment.tuners.base import Tuner, point_key


class OptunaSuggester:
    """Answers the walk's questions by asking an Optuna trial."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def categorical(self, path: str, n: int) -> int:
        return self.trial.suggest_categorical(path, list(range(n)))

    def floating(self, path: str, low: float, high: float, log: bool = False) -> float:
        return self.trial.suggest_float(path, low, high, log=log)

    def integer(self, path: str, low: int, high: int) -> int:
        return self.trial.suggest_int(path, low, high)


class OptunaTuner(Tuner):
    """A tuner backed by an Optuna sampler (subclasses choose which)."""

    feature = "This tuner"

    def __init__(self, search_space: SearchSpace | Mapping[str, Any],
                 optimize_mode: str = "maximize", seed: int | None = None) -> None:
        super().__init__(search_space, optimize_mode, seed)
        self.optuna = require("optuna", "experiment", self.feature)
        self.optuna.logging.set_verbosity(self.optuna.logging.WARNING)
        self.sampler_seed = seed
        self.study = self._new_study()
        self.trials: dict[int, Any] = {}

    def _new_study(self) -> Any:
        return self.optuna.create_study(
            direction="minimize", sampler=self._sampler())  # we always pass the loss

    def _sampler(self) -> Any:
        return self.optuna.samplers.RandomSampler(seed=self.sampler_seed)

    def _reseed(self, seed: str) -> None:
        # a fresh study on a history-dependent seed; restore() then replays the history
        super()._reseed(seed)
        self.sampler_seed = self.rng.randrange(2**32)
        self.study = self._new_study()
        self.trials.clear()

    def _discard(self, sequence: int) -> None:
        trial = self.trials.pop(sequence, None)
        if trial is not None:  # a duplicate: not a result, so not a failure either
            self.study.tell(trial, state=self.optuna.trial.TrialState.PRUNED)

    def _fixed(self, sequence: int, raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        return self._ask(sequence, enqueue=raw)

    def _ask(self, sequence: int, enqueue: Mapping[str, Any] | None = None
             ) -> tuple[dict[str, Any], dict[str, Any]]:
        if enqueue is not None:
            self.study.enqueue_trial(dict(enqueue), skip_if_exists=False)
        trial = self.study.ask()
        self.trials[sequence] = trial
        return self._sample(OptunaSuggester(trial))

    def _propose(self, sequence: int) -> tuple[dict[str, Any], dict[str, Any]]:
        return self._ask(sequence)

    def observe(self, sequence: int, raw: Mapping[str, Any]) -> dict[str, Any]:
        # Optuna replays an enqueued point on the next ask: the study learns it as its own
        params, raw = self._ask(sequence, enqueue=raw)
        self.pending[sequence] = raw
        self.seen.add(point_key(raw))
        return params

    def _learn(self, sequence: int, raw: dict[str, Any], loss: float | None) -> None:
        trial = self.trials.pop(sequence, None)
        if trial is None:
            return
        state = self.optuna.trial.TrialState
        if loss is None:
            self.study.tell(trial, state=state.FAIL)
        else:
            self.study.tell(trial, loss)


class TPETuner(OptunaTuner):
    """NNI's ``TPE``: Optuna's TPESampler.

    ``n_startup_jobs`` random trials come first (NNI's name); ``constant_liar`` lets
    concurrent trials avoid proposing the same region while results are pending.
    """

    name = "TPE"
    feature = "The TPE tuner"

    def __init__(self, search_space: SearchSpace | Mapping[str, Any],
                 optimize_mode: str = "maximize", seed: int | None = None,
                 n_startup_jobs: int = 10, multivariate: bool = True,
                 constant_liar: bool = True) -> None:
        self.n_startup_jobs = int(n_startup_jobs)
        self.multivariate = bool(multivariate)
        self.constant_liar = bool(constant_liar)
        super().__init__(search_space, optimize_mode, seed)

    def _sampler(self) -> Any:
        with warnings.catch_warnings():
            # multivariate/group/constant_liar are "experimental" in Optuna: fine for us
            warnings.simplefilter("ignore")
            return self.optuna.samplers.TPESampler(
                seed=self.sampler_seed, n_startup_trials=self.n_startup_jobs,
                multivariate=self.multivariate, group=self.multivariate,
                constant_liar=self.constant_liar,
            )
