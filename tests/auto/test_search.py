"""Searches on a synthetic problem with a known answer: unit 0 is expensive and harmless to
prune, unit 1 is cheap and fragile, unit 2 in between."""
import numpy as np
import pytest

from torchslim.auto.search import Problem, get_search
from torchslim.auto.target import Bound
from torchslim.errors import ConfigError

COST = np.array([60.0, 10.0, 30.0])
FRAGILITY = np.array([0.05, 3.0, 0.5])


def problem(budget=50.0):
    return Problem(3, lambda s: {"params": float(COST @ (1 - np.asarray(s)))},
                   [Bound("params", "params", budget, None)],
                   lambda s: 100.0 - float(FRAGILITY @ (100 * np.asarray(s) ** 2)) / 100, max_sparsity=0.9)


@pytest.mark.parametrize("name", ["uniform", "netadapt", "anneal", "tuner"])
def test_every_search_meets_the_budget(name):
    p = problem()
    s = get_search(name)(p, seed=0, trials=15)
    assert p.excess(s) <= 1.0 + 1e-9
    assert p.excess(s) > 0.97  # and does not prune much more than needed
    assert all(0.0 <= v <= 0.9 + 1e-9 for v in s)


@pytest.mark.parametrize("name", ["netadapt", "anneal", "tuner"])
def test_searches_beat_uniform_where_layers_differ(name):
    base = problem()
    uniform_score = base.score(get_search("uniform")(base))
    p = problem()
    s = get_search(name)(p, seed=0, trials=20)
    assert p.score(s) > uniform_score
    if name == "netadapt":
        assert s[0] > 0.8 and s[1] < 0.05  # the harmless, expensive unit goes first, the fragile one stays


def test_scale_reaches_budget_even_when_direction_saturates():
    p = problem(budget=12.0)
    s = p.scale(np.array([1.0, 0.0, 0.0]))
    assert p.excess(s) <= 1.0 + 1e-9 and s[0] == pytest.approx(0.9)


def test_unknown_algorithm_is_named():
    with pytest.raises(ConfigError, match="'greedyy'"):
        get_search("greedyy")
