"""Hyperband and BOHB: successive halving over brackets; trials receive their budget.

Each trial's parameters carry ``TRIAL_BUDGET`` (NNI's key): the resource it may use (epochs,
steps...). A bracket starts ``n`` configurations at a small budget and promotes the best
``1/eta`` of each rung to ``eta`` times the budget, up to ``R``. A promoted configuration runs
again as a new trial with the larger budget (it may resume from its own checkpoint).

``BOHB`` replaces the random configurations of new rungs with TPE proposals fitted on the
results of the largest budget that has enough of them (Falkner et al., 2018). It is our own
implementation on Optuna's TPESampler, not NNI's (ConfigSpace + statsmodels) code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from torchslim.errors import ConfigError
from torchslim.experiment.searchspace import RandomSuggester, SearchSpace
from torchslim.experiment.tuners.base import Tuner, point_key
from torchslim.experiment.tuners.tpe import OptunaSuggester

BUDGET_KEY = "TRIAL_BUDGET"
_FRESH_TRIES = 20  # draws to find a configuration no bracket started yet (finite spaces)


@dataclass
class _Rung:
    budget: float
    configs: list[dict[str, Any] | None]  # raw points to run at this budget (None: drawn when issued)
    issued: int = 0
    results: dict[int, float | None] = field(default_factory=dict)  # index -> loss
    sequences: dict[int, int] = field(default_factory=dict)  # trial sequence -> index

    @property
    def complete(self) -> bool:
        return len(self.results) == len(self.configs)


@dataclass
class _Bracket:
    s: int
    sizes: list[int]
    budgets: list[float]
    rungs: list[_Rung] = field(default_factory=list)

    @property
    def rung(self) -> _Rung:
        return self.rungs[-1]

    @property
    def done(self) -> bool:
        return len(self.rungs) == len(self.sizes) and self.rung.complete


def _budget(value: float) -> float | int:
    value = round(value, 6)
    return int(value) if value == int(value) else value


class HyperbandTuner(Tuner):
    """NNI's ``Hyperband`` (Li et al., 2018). ``R``: the largest budget; ``eta``: the
    promotion ratio. Brackets run one after another; a new bracket starts early only when
    every open one waits for results (so concurrent slots stay busy)."""

    dedup = False  # every proposal runs as scheduled

    name = "Hyperband"

    def __init__(self, search_space: SearchSpace | Mapping[str, Any],
                 optimize_mode: str = "maximize", seed: int | None = None,
                 R: float = 60, eta: float = 3, min_budget: float = 1) -> None:  # noqa: N803
        super().__init__(search_space, optimize_mode, seed)
        if not float(eta) > 1:
            raise ConfigError(f"tuner.classArgs.eta is {eta!r}; allowed: a number > 1")
        if not 0 < float(min_budget) <= float(R):
            raise ConfigError(f"tuner.classArgs.R is {R!r} and min_budget {min_budget!r}; "
                              f"allowed: 0 < min_budget <= R")
        self.R, self.eta, self.min_budget = float(R), float(eta), float(min_budget)
        self.s_max = int(math.floor(math.log(self.R / self.min_budget) / math.log(self.eta)
                                    + 1e-9))
        self.next_s = self.s_max
        self.brackets: list[_Bracket] = []
        self.where: dict[int, tuple[_Bracket, _Rung, int]] = {}
        self.compute = 0.0  # total budget handed out (for benchmarks)
        self.started: set[str] = set()  # configurations a bracket has started

    # ---- bracket bookkeeping -------------------------------------------------------------
    def _new_bracket(self) -> _Bracket:
        s = self.next_s
        self.next_s = self.s_max if s == 0 else s - 1
        n = int(math.ceil((self.s_max + 1) / (s + 1) * self.eta ** s))
        r = self.R * self.eta ** (-s)
        sizes = [max(int(n * self.eta ** (-i)), 1) for i in range(s + 1)]
        budgets = [r * self.eta ** i for i in range(s + 1)]
        bracket = _Bracket(s, sizes, budgets)
        # drawn one at a time when issued (as HpBandSter does): BOHB's model then learns from
        # every result that came in before, also within the first rung
        bracket.rungs.append(_Rung(budgets[0], [None] * sizes[0]))
        self.brackets.append(bracket)
        return bracket

    def _fresh_config(self, budget: float) -> dict[str, Any]:
        """A configuration no bracket has started yet, while a few draws find one: in a
        finite space (choices, integers) a repeat would spend budget to learn nothing new
        (BOHB's model, once confident, proposes its favourites again and again)."""
        for attempt in range(2 * _FRESH_TRIES):
            # the model's draws first, then random ones (a confident model may only repeat)
            raw = self._new_config(budget) if attempt < _FRESH_TRIES else HyperbandTuner._new_config(self, budget)
            if point_key(raw) not in self.started:
                break
        self.started.add(point_key(raw))
        return raw

    def _new_config(self, budget: float) -> dict[str, Any]:
        """A raw point for the first rung of a bracket (random here, TPE in BOHB)."""
        return self._sample(RandomSuggester(self.rng))[1]

    def _advance(self, bracket: _Bracket) -> None:
        """Promote the best of a complete rung to the next one."""
        rung = bracket.rung
        level = len(bracket.rungs)
        if not rung.complete or level >= len(bracket.sizes):
            return
        ranked = sorted((loss, i) for i, loss in rung.results.items() if loss is not None)
        keep = [rung.configs[i] for _, i in ranked[: bracket.sizes[level]]]
        if keep:
            bracket.rungs.append(_Rung(bracket.budgets[level], keep))
        else:  # everything failed: nothing to promote, the bracket ends here
            bracket.sizes = bracket.sizes[:level]

    # ---- Tuner ------------------------------------------------------------------------------
    def _propose(self, sequence: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
        for bracket in [b for b in self.brackets if not b.done]:
            rung = bracket.rung
            if rung.issued < len(rung.configs):
                return self._issue(sequence, bracket, rung)
        if any(not b.done for b in self.brackets) and self._open_waiting() >= 2:
            return None  # wait for results rather than open a third bracket at once
        bracket = self._new_bracket()
        return self._issue(sequence, bracket, bracket.rung)

    def _open_waiting(self) -> int:
        return sum(not b.done for b in self.brackets)

    def _issue(self, sequence: int, bracket: _Bracket, rung: _Rung
               ) -> tuple[dict[str, Any], dict[str, Any]]:
        index = rung.issued
        rung.issued += 1
        rung.sequences[sequence] = index
        self.where[sequence] = (bracket, rung, index)
        raw = rung.configs[index]
        if raw is None:
            raw = rung.configs[index] = self._fresh_config(rung.budget)
        params = self.space.realize(raw)
        budget = _budget(rung.budget)
        self.compute += budget
        return {**params, BUDGET_KEY: budget}, {**raw, BUDGET_KEY: budget}

    def observe(self, sequence: int, raw: Mapping[str, Any]) -> dict[str, Any]:
        # a resumed experiment: the result teaches the model (BOHB); brackets start afresh
        params = super().observe(sequence, raw)
        if BUDGET_KEY in raw:
            params[BUDGET_KEY] = raw[BUDGET_KEY]
        return params

    def receive(self, sequence: int, value: float | None) -> None:
        raw = self.pending.pop(sequence, None)
        loss = None if value is None else self.loss(value)
        if raw is not None:
            self._record(raw, loss)
        found = self.where.pop(sequence, None)
        if found is None:
            return
        bracket, rung, index = found
        rung.results[index] = loss
        self._advance(bracket)

    def _record(self, raw: Mapping[str, Any], loss: float | None) -> None:
        """A result at ``raw[BUDGET_KEY]`` (BOHB's model learns from it)."""


class BOHBTuner(HyperbandTuner):
    """NNI's ``BOHB``: Hyperband whose new configurations come from TPE (Optuna's
    TPESampler) fitted on the largest budget with at least ``min_points_in_model``
    results; ``random_fraction`` of them stay random (NNI's ``random_fraction``). As in
    BOHB, the "good" density is fitted on the best ``top_n_percent`` of the results (NNI's
    default 15; HpBandSter's floor of ``min_points_in_model`` good points made the search
    near-random on benchmarks/tuners_fidelity.py's LeNet curves). ``max_budget`` is NNI's
    name for ``R``."""

    name = "BOHB"
    feature = "The BOHB tuner"

    def __init__(self, search_space: SearchSpace | Mapping[str, Any],
                 optimize_mode: str = "maximize", seed: int | None = None,
                 R: float = 60, eta: float = 3, min_budget: float = 1,  # noqa: N803
                 min_points_in_model: int | None = None, random_fraction: float = 1 / 3,
                 top_n_percent: float = 15, max_budget: float | None = None) -> None:
        from torchslim.errors import require

        super().__init__(search_space, optimize_mode, seed, R if max_budget is None else max_budget,
                         eta, min_budget)
        self.optuna = require("optuna", "experiment", self.feature)
        self.optuna.logging.set_verbosity(self.optuna.logging.WARNING)
        self.min_points = int(min_points_in_model or len(self.space) + 1)
        if not 0 <= float(random_fraction) <= 1:
            raise ConfigError(f"tuner.classArgs.random_fraction is {random_fraction!r}; "
                              f"allowed: a number in [0, 1]")
        self.random_fraction = float(random_fraction)
        if not 0 < float(top_n_percent) < 100:
            raise ConfigError(f"tuner.classArgs.top_n_percent is {top_n_percent!r}; "
                              f"allowed: a number between 0 and 100")
        self.top_n_percent = float(top_n_percent)
        self.studies: dict[float, Any] = {}  # budget -> study of its results
        self.counts: dict[float, int] = {}

    def _study_for(self, budget: float) -> Any:
        if budget not in self.studies:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sampler = self.optuna.samplers.TPESampler(
                    seed=None if self.seed is None else self.seed + len(self.studies),
                    n_startup_trials=0, multivariate=True, group=True, gamma=self._n_good)
            self.studies[budget] = self.optuna.create_study(direction="minimize", sampler=sampler)
        return self.studies[budget]

    def _n_good(self, n: int) -> int:
        """How many of ``n`` results the "good" density is fitted on (at least two are
        left for the other density)."""
        return max(1, min(math.ceil(n * self.top_n_percent / 100), n - 2))

    def _record(self, raw: Mapping[str, Any], loss: float | None) -> None:
        if loss is None or BUDGET_KEY not in raw:
            return
        budget = float(raw[BUDGET_KEY])
        study = self._study_for(budget)
        point = {k: v for k, v in raw.items() if k != BUDGET_KEY}
        study.enqueue_trial(point, skip_if_exists=False)
        trial = study.ask()
        self.space.sample(OptunaSuggester(trial))  # replays the enqueued point
        study.tell(trial, loss)
        self.counts[budget] = self.counts.get(budget, 0) + 1

    def _new_config(self, budget: float) -> dict[str, Any]:
        ready = [b for b, n in self.counts.items() if n >= self.min_points]
        if not ready or self.rng.random() < self.random_fraction:
            return super()._new_config(budget)
        study = self.studies[max(ready)]
        trial = study.ask()
        _, raw = self.space.sample(OptunaSuggester(trial))
        study.tell(trial, state=self.optuna.trial.TrialState.FAIL)  # a proposal, not a result
        return raw
