"""Tuner quality at equal budget: every tuner vs Random and TPE on standard functions.

In-process (the tuners' own generate/receive, no trial processes), mean ± sd over seeds:

1. best value found in N trials on Branin (2-d), Hartmann-6 (6-d) and a 10-d mixed
   discrete/continuous function (known optima: 0.397887, -3.32237, 0);
2. multi-objective (NSGA2, MOTPE vs Random): hypervolume on ZDT1 (6-d, 2 objectives).

Multi-fidelity tuners (Hyperband, BOHB) are measured by benchmarks/tuners_fidelity.py, the
LeNet auto-compression search by benchmarks/tuners_lenet.py.

Writes benchmarks/results/tuners.json and renders benchmarks/results/tuners.md from it.

    python benchmarks/tuners.py [--seeds 5] [--quick]
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from torchslim.experiment.tuners import create_tuner  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT_JSON = HERE / "results" / "tuners.json"
OUT_MD = HERE / "results" / "tuners.md"

# ---- functions (all minimised) --------------------------------------------------------

BRANIN_SPACE = {"x1": {"_type": "uniform", "_value": [-5, 10]},
                "x2": {"_type": "uniform", "_value": [0, 15]}}


def branin(p: dict) -> float:
    x1, x2 = p["x1"], p["x2"]
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


HARTMANN_SPACE = {f"x{i}": {"_type": "uniform", "_value": [0, 1]} for i in range(6)}
_HA = [1.0, 1.2, 3.0, 3.2]
_HA_A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
         [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
_HA_P = [[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]]


def hartmann6(p: dict) -> float:
    x = [p[f"x{i}"] for i in range(6)]
    return -sum(_HA[i] * math.exp(-sum(_HA_A[i][j] * (x[j] - _HA_P[i][j] * 1e-4) ** 2
                                       for j in range(6))) for i in range(4))


MIXED_SPACE = {
    **{f"c{i}": {"_type": "uniform", "_value": [-2, 2]} for i in range(4)},
    "lr": {"_type": "loguniform", "_value": [1e-5, 1]},
    **{f"n{i}": {"_type": "randint", "_value": [0, 16]} for i in range(3)},
    "act": {"_type": "choice", "_value": ["relu", "gelu", "tanh", "sigmoid"]},
    "norm": {"_type": "choice", "_value": ["batch", "layer", "none"]},
}
_ACT = {"relu": 0.4, "gelu": 0.0, "tanh": 0.8, "sigmoid": 1.5}
_NORM = {"batch": 0.0, "layer": 0.3, "none": 1.0}


def mixed10(p: dict) -> float:
    """0 at c=(0.5,-0.5,1,0), lr=1e-3, n=(3,8,12), gelu, batch; interactions on purpose."""
    targets = (0.5, -0.5, 1.0, 0.0)
    cont = sum((p[f"c{i}"] - t) ** 2 for i, t in enumerate(targets))
    cont += 0.5 * (p["c0"] - 0.5) * (p["c1"] + 0.5)
    lr = (math.log10(p["lr"]) + 3) ** 2 / 4
    ints = sum(((p[f"n{i}"] - t) / 4) ** 2 for i, t in enumerate((3, 8, 12)))
    return max(cont, 0.0) + lr + ints + _ACT[p["act"]] + _NORM[p["norm"]]


PROBLEMS = {  # name -> (space, function, optimum, trials)
    "Branin (2-d)": (BRANIN_SPACE, branin, 0.397887, 40),
    "Hartmann-6": (HARTMANN_SPACE, hartmann6, -3.32237, 60),
    "Mixed 10-d": (MIXED_SPACE, mixed10, 0.0, 60),
}
NOT_SINGLE = {  # tuners that are not single-objective optimisers of a function, and where they are measured
    "NSGA2": "multi-objective: hypervolume below", "MOTPE": "multi-objective: hypervolume below",
    "Hyperband": "multi-fidelity: `tuners_fidelity.md`", "BOHB": "multi-fidelity: `tuners_fidelity.md`",
    "PBT": "trains a population from checkpoints", "Batch": "runs a given list of configurations",
}
SINGLE_TUNERS = {  # name -> classArgs (seed and optimize_mode added)
    "Random": {}, "TPE": {}, "GP": {}, "CMAES": {}, "Metis": {}, "SMAC": {},
    "Anneal": {}, "Evolution": {},
}


def run_single(tuner: str, args: dict, space: dict, fn, trials: int, seed: int) -> float:
    t = create_tuner(tuner, space, {"optimize_mode": "minimize", "seed": seed, **args})
    best = math.inf
    for seq in range(trials):
        proposal = t.generate(seq)
        value = fn(proposal[0])
        t.receive(seq, value)
        best = min(best, value)
    return best


# ---- multi-objective ----------------------------------------------------------------------

ZDT_SPACE = {f"x{i}": {"_type": "uniform", "_value": [0, 1]} for i in range(6)}
ZDT_OBJECTIVES = [{"name": "f1", "direction": "minimize"}, {"name": "f2", "direction": "minimize"}]


def zdt1(p: dict) -> list[float]:
    x = [p[f"x{i}"] for i in range(6)]
    g = 1 + 9 * sum(x[1:]) / 5
    return [x[0], g * (1 - math.sqrt(x[0] / g))]


def hypervolume(points: list[list[float]], ref: tuple[float, float] = (1.1, 11.0)) -> float:
    pts = sorted(p for p in points if p[0] < ref[0] and p[1] < ref[1])
    volume, last = 0.0, ref[1]
    for f1, f2 in pts:
        if f2 < last:
            volume += (ref[0] - f1) * (last - f2)
            last = f2
    return volume


def run_multi(tuner: str, seed: int, trials: int) -> float:
    args = {"population_size": 10} if tuner == "NSGA2" else {}
    t = create_tuner(tuner, ZDT_SPACE, {"seed": seed, **args},
                     objectives=ZDT_OBJECTIVES if tuner != "Random" else None)
    points = []
    for seq in range(trials):
        params = t.generate(seq)[0]
        values = zdt1(params)
        points.append(values)
        t.receive(seq, values if tuner != "Random" else values[0])
    return hypervolume(points)


# ---- report ---------------------------------------------------------------------------------

def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4g} ± {sd:.2g}"


def render(data: dict) -> str:
    lines = ["## Tuners: quality at equal budget", "",
             f"`python benchmarks/tuners.py` — mean ± sd over {data['seeds']} seeds, tuners run "
             f"in-process on analytic functions (minimised; lower is better). Machine: "
             f"{data['machine']}, shared with other jobs (only the `s/run` column depends on it).",
             ""]
    problems = list(data["single"])
    lines.append("| tuner | " + " | ".join(f"{p} ({PROBLEMS[p][3]} trials, optimum {PROBLEMS[p][2]:g})"
                                           for p in problems) + " | s/run (mean) |")
    lines.append("|---" * (len(problems) + 2) + "|")
    for tuner in SINGLE_TUNERS:
        if tuner not in data["single"][problems[0]]:
            continue
        cells, secs = [], []
        for p in problems:
            res = data["single"][p][tuner]
            mark = ""
            for base in ("Random", "TPE"):
                if tuner != base and statistics.mean(res["best"]) < statistics.mean(data["single"][p][base]["best"]):
                    mark += "<" + base[0]
            cells.append(mean_sd(res["best"]) + (f" ({mark})" if mark else ""))
            secs.append(res["seconds"])
        lines.append(f"| {tuner} | " + " | ".join(cells) + f" | {statistics.mean(secs):.2f} |")
    for tuner, why in NOT_SINGLE.items():
        lines.append(f"| {tuner} | " + " | ".join(f"n/a ({why})" for _ in problems) + " | |")
    lines += ["", "(<R / <T: the mean is better than Random's / TPE's on that function.)", ""]
    mo = data["multi"]
    lines += ["", f"### Multi-objective: hypervolume on ZDT1 (6-d, {mo['trials']} trials; higher is better, "
              f"reference point (1.1, 11))", "", "| tuner | hypervolume (mean ± sd) |", "|---|---|"]
    for tuner, hv in mo["tuners"].items():
        lines.append(f"| {tuner} | {mean_sd(hv)} |")
    lines += ["", "Not in the single-objective table, by design: `NSGA2` and `MOTPE` optimise several "
              "objectives at once (their measure is the hypervolume above); `Hyperband` and `BOHB` hand "
              "trials a budget (measured at equal compute in `tuners_fidelity.md`); `PBT` trains a "
              "population from checkpoints (it tunes a training run, not a function); `Batch` runs a "
              "given list of configurations. The LeNet auto-compression search is in `tuners_lenet.md`.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer trials (a smoke run)")
    parser.add_argument("--render-only", action="store_true", help="re-render the .md from the JSON")
    parser.add_argument("--keep-single", action="store_true",
                        help="keep the stored single-objective results (slow: GP); re-run the rest")
    args = parser.parse_args()
    if args.render_only:
        OUT_MD.write_text(render(json.loads(OUT_JSON.read_text())))
        return
    import torch

    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    data: dict = {"seeds": args.seeds, "machine": f"{platform.machine()}, 2 cores", "single": {}}
    if args.keep_single:  # re-run only the multi-objective part
        data["single"] = json.loads(OUT_JSON.read_text())["single"]
    for name, (space, fn, _, trials) in ({} if args.keep_single else PROBLEMS).items():
        trials = 12 if args.quick else trials
        data["single"][name] = {}
        for tuner, targs in SINGLE_TUNERS.items():
            start = time.perf_counter()
            best = [run_single(tuner, targs, space, fn, trials, s) for s in seeds]
            secs = (time.perf_counter() - start) / len(seeds)
            data["single"][name][tuner] = {"best": best, "seconds": secs}
            print(f"{name:14s} {tuner:10s} {mean_sd(best):>18s}  {secs:.2f}s/run", flush=True)
    mo_trials = 20 if args.quick else 80
    data["multi"] = {"trials": mo_trials, "tuners": {}}
    for tuner in ("Random", "NSGA2", "MOTPE"):
        data["multi"]["tuners"][tuner] = [run_multi(tuner, s, mo_trials) for s in seeds]
        print(f"multi {tuner:10s} {mean_sd(data['multi']['tuners'][tuner])}", flush=True)
    if not args.quick:
        OUT_JSON.write_text(json.dumps(data, indent=1))
        OUT_MD.write_text(render(data))
        print(f"wrote {OUT_JSON} and {OUT_MD}")
    else:
        print(render(data))


if __name__ == "__main__":
    main()
