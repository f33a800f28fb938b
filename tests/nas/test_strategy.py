"""Multi-trial strategies on the shipped tabular benchmark (seconds, known optimum)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from torchslim.nas import NasExperiment, NumParamsProfiler, strategy
from torchslim.nas.benchmark import TabularBenchmark


@pytest.fixture(scope="module")
def bench() -> TabularBenchmark:
    return TabularBenchmark()


def _run(bench: TabularBenchmark, strat, budget: int) -> NasExperiment:
    exp = NasExperiment(bench.space, bench.evaluator(), strat)
    exp.config.max_trial_number = budget
    return exp.run()


def test_table_is_complete_and_consistent_with_the_space(bench: TabularBenchmark) -> None:
    assert len(bench.records) == bench.space.size() == 108
    sample = bench.space.random_sample(0)
    model = bench.space.freeze(sample)
    assert sum(p.numel() for p in model.parameters()) == bench.query(sample, "params")


@pytest.mark.parametrize("make", [
    lambda: strategy.Random(seed=0), lambda: strategy.TPE(n_startup_jobs=4, seed=0),
    lambda: strategy.RegularizedEvolution(population_size=6, sample_size=3, seed=0),
    lambda: strategy.PolicyBasedRL(seed=0)])
def test_strategies_run_on_the_engine_without_repeats(exp_dir: Path, bench, make) -> None:
    exp = _run(bench, make(), 12)
    trials = exp.trials()
    assert len(trials) == 12 and all(t.status == "SUCCEEDED" for t in trials)
    archs = {json.dumps(t.parameters, sort_keys=True) for t in trials}
    if not isinstance(exp.strategy, strategy.TPE):
        assert len(archs) == 12  # dedup=True
    assert exp.export_top_models()[0] == max(trials, key=lambda t: t.value).parameters


def test_grid_search_covers_the_space_then_stops(exp_dir: Path, bench) -> None:
    exp = _run(bench, strategy.GridSearch(), 500)
    assert len(exp.trials()) == 108
    assert exp.export_top_models()[0] == bench.best()[0]  # the known optimum


def test_random_dedup_exhausts_a_small_space(exp_dir: Path, bench) -> None:
    exp = _run(bench, strategy.Random(seed=0), 200)
    assert len({json.dumps(t.parameters, sort_keys=True) for t in exp.trials()}) == 108
    assert len(exp.trials()) == 108


def test_parameter_budget_is_always_met(exp_dir: Path, bench) -> None:
    budget = 60_000
    params = NumParamsProfiler(bench.space)
    exp = _run(bench, strategy.Chain(strategy.RegularizedEvolution(
        population_size=6, sample_size=3, seed=0), strategy.Filter(
        lambda s: params.profile(s) <= budget)), 15)
    assert all(bench.query(t.parameters, "params") <= budget for t in exp.trials())
    front = exp.export_top_models(top_k=5, objectives={"params": params.profile})
    sizes = [bench.query(s, "params") for s in front]
    assert sizes == sorted(sizes, reverse=True)  # better score costs more on a front
    # mutation check: without the filter the same search does go over budget
    free = _run(bench, strategy.RegularizedEvolution(population_size=6, sample_size=3, seed=0), 15)
    assert any(bench.query(t.parameters, "params") > budget for t in free.trials())
