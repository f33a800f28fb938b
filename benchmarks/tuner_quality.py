"""Tuner quality: best value found in 60 trials on a known 4-parameter function.

Each tuner runs as a real experiment (function trials, SQLite store) for 5 seeds; the
table gives the best value of each run and the median over seeds. The function's maximum
is 0 at x=1.3, lr=10**-2.5, layers=7, activation='gelu'.

    python benchmarks/tuner_quality.py [--trials 60] [--seeds 5] [--tuners TPE,Random,...]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torchslim  # noqa: E402
from torchslim.experiment import Experiment  # noqa: E402

SPACE = {
    "x": torchslim.uniform(-5, 5),
    "lr": torchslim.loguniform(1e-6, 1),
    "layers": torchslim.randint(1, 17),
    "activation": torchslim.choice("relu", "tanh", "sigmoid", "gelu"),
}
_ACTIVATION_PENALTY = {"relu": 0.5, "tanh": 1.0, "sigmoid": 2.0, "gelu": 0.0}


def objective(p: dict) -> float:
    """To maximise; 0 at the optimum."""
    return -((p["x"] - 1.3) ** 2 + (math.log10(p["lr"]) + 2.5) ** 2
             + 0.25 * (p["layers"] - 7) ** 2 + _ACTIVATION_PENALTY[p["activation"]])


def best_of(tuner: str, seed: int, trials: int, root: str) -> float:
    exp = Experiment(SPACE, trial_function=objective, tuner=tuner, seed=seed,
                     max_trial_number=trials, trial_concurrency=1, experiments_dir=root)
    return exp.run().best_trial().value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--tuners", default="TPE,Random,Anneal,Evolution")
    args = parser.parse_args()
    tuners = args.tuners.split(",")
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as root:
        for tuner in tuners:
            start = time.perf_counter()
            results[tuner] = [best_of(tuner, seed, args.trials, root) for seed in range(args.seeds)]
            print(f"{tuner}: {time.perf_counter() - start:.1f}s", file=sys.stderr)
    seeds = " | ".join(f"seed {s}" for s in range(args.seeds))
    print(f"\n{args.trials} trials per run, best value found (maximise, optimum 0)\n")
    print(f"| tuner | {seeds} | median |")
    print("|---" * (args.seeds + 2) + "|")
    for tuner, values in results.items():
        cells = " | ".join(f"{v:.4f}" for v in values)
        print(f"| {tuner} | {cells} | **{statistics.median(values):.4f}** |")
    if "TPE" in results and "Random" in results:
        tpe, rnd = results["TPE"], statistics.median(results["Random"])
        wins = sum(v > rnd for v in tpe)
        print(f"\nTPE beats Random's median ({rnd:.4f}) in {wins}/{len(tpe)} seeds; "
              f"TPE median {statistics.median(tpe):.4f}")


if __name__ == "__main__":
    main()
