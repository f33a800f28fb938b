"""What every tuner is: it proposes points of a search space and learns from results."""
from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Mapping

from torchslim.errors import ConfigError
from torchslim.experiment.searchspace import FixedSuggester, SearchSpace, Suggester

OPTIMIZE_MODES = ("maximize", "minimize")


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
    reach the tuner as if it had just proposed it.
    """

    name: ClassVar[str] = "?"

    def __init__(self, search_space: SearchSpace | Mapping[str, Any],
                 optimize_mode: str = "maximize", seed: int | None = None) -> None:
        self.space = SearchSpace.parse(search_space)
        self.optimize_mode = check_optimize_mode(optimize_mode)
        self.seed = seed
        self.rng = random.Random(seed)
        # sequence -> raw point of trials proposed (or observed) but without a result yet
        self.pending: dict[int, dict[str, Any]] = {}

    def loss(self, value: float) -> float:
        return -value if self.optimize_mode == "maximize" else value

    def generate(self, sequence: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Parameters and raw point of trial ``sequence``; None = wait for a result first.

        Raises :class:`NoMoreTrials` when the tuner is exhausted.
        """
        proposal = self._propose(sequence)
        if proposal is None:
            return None
        params, raw = proposal
        self.pending[sequence] = raw
        return params, raw

    def observe(self, sequence: int, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Register a previously generated point; returns its parameters."""
        params, raw = self.space.sample(FixedSuggester(raw))
        self.pending[sequence] = raw
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
