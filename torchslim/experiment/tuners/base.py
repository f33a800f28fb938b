"""What every tuner is: it proposes points of a search space and learns from results."""
from __future__ import annotations

import json
import random
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Iterable, Mapping

from torchslim.errors import ConfigError
from torchslim.experiment.searchspace import FixedSuggester, SearchSpace, Suggester

OPTIMIZE_MODES = ("maximize", "minimize")
# fresh draws a tuner gets to avoid a point already run, before looking for an unused one
_DEDUP_TRIES = 20
# (sequence, raw point, result or None, finished?) of a stored trial, replayed on resume
HistoryItem = tuple[int, Mapping[str, Any], "float | None", bool]


def point_key(raw: Mapping[str, Any]) -> str:
    """A hashable identity of a raw point."""
    return json.dumps(raw, sort_keys=True, default=str)


class NoMoreTrials(Exception):
    """The tuner has nothing left to propose (e.g. the grid is exhausted)."""


def check_optimize_mode(mode: str, key: str = "optimize_mode") -> str:
    if mode not in OPTIMIZE_MODES:
        raise ConfigError(f"{key} is {mode!r}; allowed: {', '.join(OPTIMIZE_MODES)}")
    return mode


class Tuner(ABC):
    """Base class: ``generate`` a trial's parameters, ``receive`` its result.

    Tuners minimise a *loss* internally (the negated value when maximising). ``observe``
    re-registers a point that was generated before (resume), so results reported for it
    reach the tuner as if it had just proposed it; :meth:`restore` replays a whole stored
    history. No point is proposed twice while unused ones remain (NNI's dedup).
    """

    name: ClassVar[str] = "?"
    # False for tuners that schedule their proposals themselves (Hyperband's rungs, PBT's
    # generations, Batch, a user's tuner): a proposal dropped as a duplicate would leave a
    # rung or a generation waiting forever
    dedup: ClassVar[bool] = True

    def __init__(self, search_space: SearchSpace | Mapping[str, Any],
                 optimize_mode: str = "maximize", seed: int | None = None) -> None:
        self.space = SearchSpace.parse(search_space)
        self.optimize_mode = check_optimize_mode(optimize_mode)
        self.seed = seed
        self.rng = random.Random(seed)
        # sequence -> raw point of trials proposed (or observed) but without a result yet
        self.pending: dict[int, dict[str, Any]] = {}
        self.seen: set[str] = set()  # every point proposed or observed
        self._unused: list[dict[str, Any]] | None = None  # finite spaces: lazily, for dedup

    def loss(self, value: float) -> float:
        return -value if self.optimize_mode == "maximize" else value

    def generate(self, sequence: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Parameters and raw point of trial ``sequence``; None = wait for a result first.

        Raises :class:`NoMoreTrials` when the tuner is exhausted.
        """
        proposal = self._propose(sequence)
        tries = 1
        while self.dedup and proposal is not None and point_key(proposal[1]) in self.seen:
            self._discard(sequence)
            if tries >= _DEDUP_TRIES:  # a small space: pick an unused point, if any is left
                proposal = self._unused_point(sequence) or self._propose(sequence)
                break
            proposal = self._propose(sequence)
            tries += 1
        if proposal is None:
            return None
        params, raw = proposal
        self.pending[sequence] = raw
        self.seen.add(point_key(raw))
        return params, raw

    def restore(self, history: Iterable[HistoryItem]) -> None:
        """Replay a stored history (resume): every point is known as proposed, every result
        as received, and a seeded tuner continues on a stream that depends on the history
        length, so it does not re-walk the points of the first run."""
        history = list(history)
        if self.seed is not None:
            self._reseed(f"{self.seed}/{len(history)}")
        for sequence, raw, value, finished in history:
            self.observe(sequence, raw)
            if finished:
                self.receive(sequence, value)

    def _reseed(self, seed: str) -> None:
        self.rng.seed(seed)

    def _discard(self, sequence: int) -> None:
        """Forget a proposal that was a duplicate (Optuna tuners close its trial)."""

    def _unused_point(self, sequence: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """A point of a finite space not proposed yet (None: continuous space or all used)."""
        if self._unused is None:
            try:
                self._unused = self.space.grid()
            except ConfigError:
                self._unused = []
            self.rng.shuffle(self._unused)
        while self._unused:
            raw = self._unused.pop()
            if point_key(raw) not in self.seen:
                return self._fixed(sequence, raw)
        return None

    def _fixed(self, sequence: int, raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Propose exactly ``raw`` (Optuna tuners also register it with their study)."""
        return self.space.sample(FixedSuggester(raw))

    def observe(self, sequence: int, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Register a previously generated point; returns its parameters."""
        params, raw = self.space.sample(FixedSuggester(raw))
        self.pending[sequence] = raw
        self.seen.add(point_key(raw))
        return params

    def receive(self, sequence: int, value: float | None) -> None:
        """Result of trial ``sequence`` (None when it failed)."""
        raw = self.pending.pop(sequence, None)
        if raw is not None:
            self._learn(sequence, raw, None if value is None else self.loss(value))

    @abstractmethod
    def _propose(self, sequence: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Sample a new point (parameters, raw)."""

    def _learn(self, sequence: int, raw: dict[str, Any], loss: float | None) -> None:
        """Use a result; the default tuner does not learn."""

    def _sample(self, suggester: Suggester) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.space.sample(suggester)
