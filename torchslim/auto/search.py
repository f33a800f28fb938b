"""Searches of per-unit sparsities that meet a budget: uniform, NetAdapt-style greedy,
simulated annealing, and tuner-driven (AMC-style) search on the experiment engine's tuners.

Every search works on a :class:`Problem`: a cost function (cheap: the cost model and the
latency table, no model is built), the bounds, and a score to maximise (accuracy of the
masked model, a sensitivity estimate, or a magnitude proxy). Candidates are scaled onto the
budget by bisection, so every search returns a feasible point when one exists.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from torchslim.auto.target import Bound
from torchslim.errors import ConfigError


@dataclass
class Problem:
    """What a search optimises: ``score`` (higher is better) subject to ``bounds``."""

    n_units: int
    cost: Callable[[np.ndarray], dict[str, float]]
    bounds: Sequence[Bound]
    score: Callable[[np.ndarray], float]
    max_sparsity: float = 0.9
    key: Callable[[np.ndarray], tuple] = lambda s: tuple(np.round(s, 4))
    history: list[dict[str, Any]] = field(default_factory=list)
    # ``record(s, source, costs, compute) -> score``: where scores are kept (an experiment's
    # store: candidates scored before are read back); None computes them here
    record: Callable[[np.ndarray, str, dict[str, float], Callable[[], float]], float] | None = None
    # ``submit(s) -> result()``: start scoring ``s`` elsewhere (a Ray task), so that
    # :meth:`evaluate_many` scores a batch at once; ``stored(s)``: the record has its score
    submit: Callable[[np.ndarray], Callable[[], float]] | None = None
    stored: Callable[[np.ndarray], bool] | None = None
    _scores: dict[tuple, float] = field(default_factory=dict)

    def excess(self, s: np.ndarray) -> float:
        """max over bounds of cost / budget: ≤ 1 means every budget is met."""
        costs = self.cost(s)
        return max(costs[b.metric] / b.value for b in self.bounds)

    def evaluate(self, s: np.ndarray, source: str, result: Callable[[], float] | None = None) -> float:
        k = self.key(s)
        if k not in self._scores:
            compute = result or (lambda: self.score(s))
            if self.record is None:
                self._scores[k] = float(compute())
            else:
                self._scores[k] = float(self.record(s, source, self.cost(s), compute))
            self.history.append({"sparsity": [float(v) for v in s], "score": self._scores[k],
                                 "source": source, **self.cost(s)})
        return self._scores[k]

    def evaluate_many(self, candidates: Sequence[np.ndarray], source: str) -> list[float]:
        """Scores of several candidates; with ``submit``, those not known yet are scored at once."""
        results: dict[tuple, Callable[[], float]] = {}
        if self.submit is not None:
            for s in candidates:
                k = self.key(s)
                if k not in self._scores and k not in results and not (self.stored and self.stored(s)):
                    results[k] = self.submit(s)
        return [self.evaluate(s, source, results.get(self.key(s))) for s in candidates]

    def scale(self, direction: np.ndarray) -> np.ndarray:
        """The least ``alpha * direction`` (clipped to max_sparsity) that meets every budget."""
        direction = np.clip(np.asarray(direction, dtype=float), 0.0, None)
        if self.excess(np.zeros(self.n_units)) <= 1.0:
            return np.zeros(self.n_units)
        if not direction.any():
            direction = np.ones(self.n_units)
        hi = self.max_sparsity / max(direction.max(), 1e-12)
        if self.excess(np.clip(hi * direction, 0, self.max_sparsity)) > 1.0:
            # this direction saturates before the budget: fill the remaining units too
            return _bisect(lambda a: np.clip(np.maximum(hi * direction, a * np.ones(self.n_units)), 0,
                                             self.max_sparsity), self.excess, self.max_sparsity)
        return _bisect(lambda a: np.clip(a * direction, 0, self.max_sparsity), self.excess, hi)


def _bisect(point: Callable[[float], np.ndarray], excess: Callable[[np.ndarray], float], hi: float) -> np.ndarray:
    lo = 0.0
    if excess(point(hi)) > 1.0:
        return point(hi)  # infeasible: the caller reports the shortfall
    for _ in range(40):
        mid = (lo + hi) / 2
        if excess(point(mid)) <= 1.0:
            hi = mid
        else:
            lo = mid
    return point(hi)


def uniform(problem: Problem, *, widths: Sequence[int] | None = None, **_: Any) -> np.ndarray:
    """The same sparsity everywhere, as high as the budget needs; with ``widths`` (channels per
    unit), channels that rounding left unused are handed back one at a time, round-robin,
    while the budget holds — uniform at its best, not handicapped by rounding."""
    s = problem.scale(np.ones(problem.n_units))
    if widths is not None and problem.excess(s) <= 1.0:
        step = 1.0 / np.asarray(widths, dtype=float)
        grown = True
        while grown:
            grown = False
            for u in range(problem.n_units):
                candidate = s.copy()
                candidate[u] = max(candidate[u] - step[u], 0.0)
                if candidate[u] < s[u] and problem.excess(candidate) <= 1.0:
                    s, grown = candidate, True
    problem.evaluate(s, "uniform")
    return s


def netadapt(problem: Problem, *, iterations: int = 8, widths: Sequence[int] | None = None, **_: Any) -> np.ndarray:
    """NetAdapt-style greedy (Yang et al., 2018): in each of ``iterations`` steps the budget
    excess shrinks by an equal share; every unit proposes the least extra sparsity that
    reaches it alone, and the proposal with the best score is taken. The result is compared
    with uniform sparsity at the same budget, and the better-scoring one returned."""
    s = np.zeros(problem.n_units)
    start = problem.excess(s)
    if start <= 1.0:
        return s
    for step in range(1, 4 * iterations + 1):
        want = max(1.0, start - (start - 1.0) * min(step, iterations) / iterations)
        proposals = []
        for u in range(problem.n_units):
            if s[u] >= problem.max_sparsity - 1e-9:
                continue
            cand = _least_on_unit(problem, s, u, want)
            proposals.append((problem.excess(cand) <= want + 1e-9, cand))
        if not proposals:
            break
        reaching = [c for ok, c in proposals if ok]
        pool = reaching or [min((c for _, c in proposals), key=problem.excess)]
        s = max(pool, key=lambda c: problem.evaluate(c, "netadapt"))
        if problem.excess(s) <= 1.0:
            break
    if problem.excess(s) > 1.0:
        s = problem.scale(np.maximum(s, 1e-3))
    baseline = uniform(problem, widths=widths)
    return s if problem.evaluate(s, "netadapt") >= problem.evaluate(baseline, "uniform") else baseline


def _least_on_unit(problem: Problem, s: np.ndarray, u: int, want: float) -> np.ndarray:
    def with_u(v: float) -> np.ndarray:
        out = s.copy()
        out[u] = v
        return out
    lo, hi = s[u], problem.max_sparsity
    if problem.excess(with_u(hi)) > want:
        return with_u(hi)
    for _ in range(30):
        mid = (lo + hi) / 2
        if problem.excess(with_u(mid)) <= want:
            hi = mid
        else:
            lo = mid
    return with_u(hi)


def anneal(problem: Problem, *, start_temperature: float = 1.0, stop_temperature: float = 0.05,
           cool_down_rate: float = 0.85, perturbation_magnitude: float = 0.35, seed: int = 0, **_: Any) -> np.ndarray:
    """Simulated annealing over the *direction* of sparsity (NNI v2's SimulatedAnnealingPruner):
    perturb, scale onto the budget, accept by the Metropolis rule on the score (temperatures
    are in score units, e.g. accuracy points)."""
    if not 0 < cool_down_rate < 1 or stop_temperature <= 0 or start_temperature <= stop_temperature:
        raise ConfigError("anneal needs 0 < cool_down_rate < 1 and start_temperature > stop_temperature > 0")
    rng = np.random.default_rng(seed)
    direction = np.ones(problem.n_units)
    current = problem.scale(direction)
    current_score = problem.evaluate(current, "anneal")
    best, best_score = current, current_score
    temperature = start_temperature
    while temperature > stop_temperature:
        proposal = np.clip(direction + rng.normal(0, perturbation_magnitude, problem.n_units), 0.05, None)
        candidate = problem.scale(proposal / proposal.max())
        score = problem.evaluate(candidate, "anneal")
        if score >= current_score or rng.uniform() < math.exp((score - current_score) / temperature):
            direction, current, current_score = proposal / proposal.max(), candidate, score
            if score > best_score:
                best, best_score = candidate, score
        temperature *= cool_down_rate
    return best


def tuner(problem: Problem, *, trials: int = 30, tuner_name: str = "TPE", seed: int = 0,
          widths: Sequence[int] | None = None, concurrency: int = 1, **_: Any) -> np.ndarray:
    """AMC-style search (He et al., 2018) with one of the experiment engine's tuners (TPE by
    default): the tuner proposes a per-unit sparsity direction, it is scaled onto the budget,
    and the tuner learns from the score. With ``concurrency`` > 1 the tuner proposes that many
    candidates before it hears their scores (scored at once when the problem can ``submit``)."""
    from torchslim.experiment.tuners import create_tuner

    if not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency must be a positive integer, got {concurrency!r}")
    space = {f"u{i}": {"_type": "uniform", "_value": [0.05, 1.0]} for i in range(problem.n_units)}
    engine = create_tuner(tuner_name, space, {"optimize_mode": "maximize", "seed": seed})
    best = uniform(problem, widths=widths)
    best_score = problem.evaluate(best, "uniform")
    sequence = 0
    while sequence < trials:
        batch = []
        while len(batch) < concurrency and sequence < trials:
            proposal = engine.generate(sequence)
            if proposal is None:
                break
            params, _raw = proposal
            batch.append((sequence, problem.scale(np.array([params[f"u{i}"] for i in range(problem.n_units)]))))
            sequence += 1
        if not batch:
            break
        scores = problem.evaluate_many([c for _, c in batch], f"tuner:{tuner_name}")
        for (seq, candidate), score in zip(batch, scores):
            engine.receive(seq, score if math.isfinite(score) else None)  # -inf: a failed candidate
            if score > best_score:
                best, best_score = candidate, score
    return best


SEARCHES: Mapping[str, Callable[..., np.ndarray]] = {
    "uniform": uniform,
    "netadapt": netadapt,
    "anneal": anneal,
    "tuner": tuner,
}
_ALIASES = {"greedy": "netadapt", "sa": "anneal", "simulated_annealing": "anneal", "amc": "tuner", "tpe": "tuner"}


def get_search(name: str) -> Callable[..., np.ndarray]:
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in SEARCHES:
        raise ConfigError(f"algorithm {name!r} is unknown; allowed: {', '.join([*SEARCHES, *_ALIASES])}")
    return SEARCHES[key]


__all__ = ["Problem", "SEARCHES", "anneal", "get_search", "netadapt", "tuner", "uniform"]
