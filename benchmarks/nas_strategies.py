"""Multi-trial NAS strategies on the shipped tabular benchmark (known optimum).

Every strategy runs through the full ``NasExperiment`` engine (store, tuner, trials) with
the same budget and the same seeds; trials look their validation accuracy up in
``torchslim/nas/benchmark/mnist_tabular.json`` instead of training. Reported: the best
validation accuracy found, its regret to the optimum of the 108 architectures, and the test
accuracy of the exported architecture (the test column is never used for choices).

A second part is hardware-aware: with a parameter budget (``Filter`` on a meta-device
``NumParamsProfiler``), every trial and every exported model must fit it; the export with
``objectives={'params': ...}`` is the Pareto front of accuracy and size.
Writes ``benchmarks/results/nas_strategies.json``; ``nas_report.py`` renders the markdown.
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from torchslim.nas import LatencyProfiler, NasExperiment, NumParamsProfiler, strategy
from torchslim.nas.benchmark import TabularBenchmark

RESULTS = Path(__file__).resolve().parent / "results"
SEEDS = list(range(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
BUDGET = int(sys.argv[2]) if len(sys.argv) > 2 else 20
PARAM_BUDGET = 60_000


def strategies(seed: int) -> dict[str, strategy.Strategy]:
    return {
        "Random": strategy.Random(seed=seed),
        "RegularizedEvolution": strategy.RegularizedEvolution(
            population_size=8, sample_size=4, mutation_prob=0.2, seed=seed),
        "TPE": strategy.TPE(n_startup_jobs=6, seed=seed),
        "PolicyBasedRL": strategy.PolicyBasedRL(seed=seed),
    }


def run(bench: TabularBenchmark, strat: strategy.Strategy, folder: str,
        budget: int = BUDGET) -> NasExperiment:
    exp = NasExperiment(bench.space, bench.evaluator(), strat)
    exp.config.max_trial_number = budget
    exp.config.experiments_dir = folder
    return exp.run()


def latency_run(bench: TabularBenchmark, folder: str) -> dict:
    """A latency budget (the median predicted latency of the space) as a Filter."""
    profiler = LatencyProfiler(bench.space, torch.randn(1, 1, 28, 28), repeats=10)
    start = time.perf_counter()
    predicted = sorted(profiler.profile(s) for s in bench.space.grid())
    table_s = time.perf_counter() - start
    budget = statistics.median(predicted)
    exp = run(bench, strategy.Chain(strategy.TPE(n_startup_jobs=6, seed=0),
                                    strategy.Filter(lambda s: profiler.profile(s) <= budget)),
              folder)
    top = exp.export_top_models(formatter="dict")[0]
    return {"budget_ms": budget, "table_entries": len(profiler.table),
            "table_seconds": table_s, "trials": len(exp.trials()),
            "all_trials_within_budget": all(profiler.profile(t.parameters) <= budget
                                            for t in exp.trials()),
            "export": top, "export_ms": profiler.profile(top), "export_val": bench.query(top),
            "min_ms": predicted[0], "max_ms": predicted[-1]}


def main() -> None:
    torch.set_num_threads(1)
    bench = TabularBenchmark()
    best_arch, optimum = bench.best()
    rows: dict[str, list[dict]] = {}
    hw: list[dict] = []
    profiler = NumParamsProfiler(bench.space)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        for seed in SEEDS:  # interleaved: every strategy sees the same machine state per seed
            for name, strat in strategies(seed).items():
                t = time.perf_counter()
                exp = run(bench, strat, folder)
                top = exp.export_top_models(formatter="dict")[0]
                values = [r.value for r in exp.trials() if r.value is not None]
                curve = [max(values[:i + 1]) for i in range(len(values))]
                rows.setdefault(name, []).append({
                    "seed": seed, "best_val": max(values), "regret": optimum - max(values),
                    "regret_curve": [optimum - v for v in curve],
                    "found_optimum": top == best_arch, "trials": len(values),
                    "test_of_export": bench.query(top, "test_accuracy"),
                    "seconds": time.perf_counter() - t})
            constrained = strategy.Chain(
                strategy.RegularizedEvolution(population_size=8, sample_size=4,
                                              mutation_prob=0.2, seed=seed),
                strategy.Filter(lambda s: profiler.profile(s) <= PARAM_BUDGET))
            exp = run(bench, constrained, folder)
            tried = [r.parameters for r in exp.trials()]
            front = exp.export_top_models(top_k=5, objectives={"params": profiler.profile})
            top = exp.export_top_models(formatter="dict")[0]
            hw.append({
                "seed": seed, "trials": len(tried),
                "all_trials_within_budget": all(bench.query(s, "params") <= PARAM_BUDGET
                                                for s in tried),
                "export_params": bench.query(top, "params"),
                "export_val": bench.query(top), "budget_optimum_val": bench.best(
                    max_params=PARAM_BUDGET)[1],
                "pareto_front": [{"arch": s, "val": bench.query(s),
                                  "params": bench.query(s, "params")} for s in front]})
        total = time.perf_counter() - start
        latency = latency_run(bench, folder)
    summary = {name: {
        "mean_best_val": statistics.mean(r["best_val"] for r in rs),
        "sd_best_val": statistics.stdev(r["best_val"] for r in rs),
        "mean_regret": statistics.mean(r["regret"] for r in rs),
        "optimum_found": sum(r["found_optimum"] for r in rs),
        "mean_test_of_export": statistics.mean(r["test_of_export"] for r in rs),
    } for name, rs in rows.items()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "nas_strategies.json").write_text(json.dumps({
        "benchmark": "mnist-tabular-108", "optimum": {"arch": best_arch, "val": optimum},
        "budget": BUDGET, "seeds": SEEDS, "param_budget": PARAM_BUDGET, "seconds": total,
        "machine": "shared 2-core CPU (other jobs running), 1 torch thread",
        "summary": summary, "runs": rows, "hardware_aware": hw, "latency": latency}, indent=1))
    for name, s in summary.items():
        print(f"{name:22s} best val {s['mean_best_val']:.4f} ± {s['sd_best_val']:.4f} "
              f"regret {s['mean_regret']:.4f} optimum found {s['optimum_found']}/{len(SEEDS)}")
    print(f"hardware-aware: all trials within budget: "
          f"{all(h['all_trials_within_budget'] for h in hw)}; {total:.0f}s total")


if __name__ == "__main__":
    main()
