"""A small Pareto-front helper for exports with extra objectives (costs to minimise)."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

__all__ = ["pareto_front"]


def pareto_front(ranked: Sequence[dict[str, Any]],
                 costs: Mapping[str, Callable[[dict[str, Any]], float]]) -> list[dict[str, Any]]:
    """The non-dominated samples of ``ranked`` (best score first), keeping that order.

    A sample is dominated when one ranked before it (so scoring at least as well) costs no
    more on every objective.
    """
    kept: list[tuple[dict[str, Any], list[float]]] = []
    for sample in ranked:
        c = [float(fn(sample)) for fn in costs.values()]
        if not any(all(a <= b for a, b in zip(kc, c)) for _, kc in kept):
            kept.append((sample, c))
    return [s for s, _ in kept]
