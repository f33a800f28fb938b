"""Sampling near a known point: the move shared by the Anneal and Evolution tuners."""
from __future__ import annotations

import math
import random
from typing import Any, Collection, Mapping


class NeighbourSuggester:
    """Answers the walk's questions with values near ``center``.

    ``scale`` in (0, 1] is the move size as a fraction of each parameter's range (1 = draw
    afresh from the prior). Only paths in ``mutate`` move (all when None); the others keep
    the centre's value. Paths the centre lacks (a newly chosen nested branch) are drawn
    afresh.
    """

    def __init__(self, center: Mapping[str, Any], rng: random.Random, scale: float,
                 mutate: Collection[str] | None = None) -> None:
        self.center = center
        self.rng = rng
        self.scale = scale
        self.mutate = mutate

    def _moves(self, path: str) -> bool:
        return self.mutate is None or path in self.mutate

    def categorical(self, path: str, n: int) -> int:
        if path not in self.center:
            return self.rng.randrange(n)
        keep = int(self.center[path])
        if not self._moves(path) or self.rng.random() >= self.scale:
            return min(keep, n - 1)
        return self.rng.randrange(n)

    def floating(self, path: str, low: float, high: float, log: bool = False) -> float:
        to = math.log if log else float
        back = math.exp if log else float
        lo, hi = to(low), to(high)
        if path not in self.center:
            return back(self.rng.uniform(lo, hi))
        x = to(min(max(float(self.center[path]), low), high))
        if self._moves(path):
            x = min(max(self.rng.gauss(x, self.scale * (hi - lo)), lo), hi)
        return min(max(back(x), low), high)

    def integer(self, path: str, low: int, high: int) -> int:
        if path not in self.center:
            return self.rng.randint(low, high)
        x = int(self.center[path])
        if self._moves(path):
            x = round(self.rng.gauss(x, max(self.scale * (high - low + 1), 0.5)))
        return min(max(x, low), high)
