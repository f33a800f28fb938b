"""Pareto fronts of multi-objective results (used by export, the web UI and NAS strategies)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence, TypeVar

T = TypeVar("T")


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """Whether ``a`` is at least as good as ``b`` everywhere and better somewhere."""
    better = False
    for x, y, d in zip(a, b, directions):
        if d == "maximize":
            x, y = -x, -y
        if x > y:
            return False
        better |= x < y
    return better


def pareto_front(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the non-dominated points (``directions``: 'maximize'/'minimize' per value).

    >>> pareto_front([(1, 5), (2, 4), (3, 6), (1, 4)], ['maximize', 'minimize'])
    [1, 2]
    """
    if any(d not in ("maximize", "minimize") for d in directions):
        raise ValueError(f"directions are {list(directions)}; allowed: maximize, minimize")
    return [i for i, p in enumerate(points)
            if not any(dominates(q, p, directions) for j, q in enumerate(points) if j != i)]


def objective_vector(metric: Any, objectives: Sequence[Mapping[str, str]]) -> list[float] | None:
    """The objectives' values in a reported metric (a number counts as 'default')."""
    if not isinstance(metric, Mapping):
        metric = {"default": metric}
    try:
        return [float(metric[o["name"]]) for o in objectives]
    except (KeyError, TypeError, ValueError):
        return None


def pareto_trials(records: Sequence[T], objectives: Sequence[Mapping[str, str]]) -> list[T]:
    """The records (with ``.metric``) on the Pareto front of ``objectives``."""
    vectors = [(r, objective_vector(getattr(r, "metric"), objectives)) for r in records]
    vectors = [(r, v) for r, v in vectors if v is not None]
    front = pareto_front([v for _, v in vectors], [o["direction"] for o in objectives])
    return [vectors[i][0] for i in front]


def mark_pareto(rows: list[dict[str, Any]], objectives: Sequence[Mapping[str, str]] | None
                ) -> list[dict[str, Any]]:
    """Export rows with ``paretoOptimal`` set (only when there are several objectives)."""
    if not objectives or len(objectives) < 2:
        return rows
    ok = [i for i, r in enumerate(rows) if r.get("status") == "SUCCEEDED"
          and objective_vector(r.get("value"), objectives) is not None]
    front = set(pareto_front([objective_vector(rows[i]["value"], objectives) for i in ok],
                             [o["direction"] for o in objectives]))
    for k, i in enumerate(ok):
        rows[i]["paretoOptimal"] = k in front
    for r in rows:
        r.setdefault("paretoOptimal", False)
    return rows
