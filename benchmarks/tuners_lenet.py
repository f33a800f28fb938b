"""Tuner quality on a real search: LeNet5 per-layer sparsities under a params budget.

For each seed: the embedded MNIST's 8,000 training images are split 7,000 / 1,000 (fit /
validation) by the seed and LeNet5 trains 4 epochs. Then every tuner drives the AMC-style
search of ``torchslim.auto.search.tuner`` (the one ``compress()`` uses): it proposes a
per-unit sparsity direction, the direction is scaled onto the budget (2,421 parameters,
exact cost model), and the candidate is scored by ``torchslim.auto.pipeline.masked_scorer``:
validation accuracy of the masked model after a one-pass short-term fine-tune on 2,000 fit
images. Every search starts from the uniform allocation (its first candidate) and has the
same number of tuner proposals. The pick (best validation score) is fine-tuned 2 epochs
with its masks on and the 2,000-image test split is touched once per tuner × seed.

Scores are cached per seed by the candidate's kept channels, so a candidate two tuners both
propose is scored once (the short-term fine-tune is seeded: the score is the same).

Writes benchmarks/results/tuners_lenet.json and renders tuners_lenet.md from it.

    python benchmarks/tuners_lenet.py [--seeds 10] [--trials 30] [--render-only]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from results_io import load, machine, mean_sd, save

TUNERS = ("Random", "TPE", "GP", "CMAES", "Metis", "SMAC", "Anneal", "Evolution")
BUDGET = {"params": 2421}
CHECKPOINTS = (10, 20, 30)  # best validation score after this many tuner proposals


def run_seed(seed: int, tuners: list[str], trials: int, epochs: int, short_images: int,
             finetune_epochs: int) -> dict:
    import numpy as np
    from torch.utils.data import Subset

    from torchslim.auto.mnist import accuracy_on, finetune, mnist_splits
    from torchslim.auto.pipeline import masked_scorer
    from torchslim.auto.search import Problem, tuner, uniform
    from torchslim.auto.target import Target
    from torchslim.auto.units import CostModel
    from torchslim.models import LeNet5
    from torchslim.utils.metrics import count_macs, count_params
    from torchslim.utils.training import evaluate_accuracy, train_epochs

    torch.manual_seed(seed)
    fit, val, test = mnist_splits(seed)
    dense = train_epochs(LeNet5(), fit, epochs, lr=2e-3, seed=seed).eval()
    example = torch.randn(1, 1, 28, 28)
    cost = CostModel(dense, example)
    widths = [u.channels for u in cost.units]
    stats = {"params": float(count_params(dense)), "macs": float(count_macs(dense, example))}
    bounds = Target(BUDGET).resolve(stats).bounds
    short = Subset(fit, range(short_images))
    scorer = masked_scorer(dense, cost, "l1", accuracy_on(val), lambda m: finetune(m, short, 1, seed=seed))
    tester = masked_scorer(dense, cost, "l1", accuracy_on(test), lambda m: finetune(m, fit, finetune_epochs, seed=seed))
    cache: dict[tuple, float] = {}
    scoring = [0.0]  # seconds spent scoring (to report the tuners' own time apart)

    def key(s: np.ndarray) -> tuple:
        return tuple(cost.keep_fractions(s))

    def score(s: np.ndarray) -> float:
        k = key(s)
        if k not in cache:
            t0 = time.perf_counter()
            cache[k] = scorer(s)
            scoring[0] += time.perf_counter() - t0
        return cache[k]

    def costs(s: np.ndarray) -> dict[str, float]:
        return {"params": cost.evaluate("params", s), "macs": cost.evaluate("macs", s)}

    def problem() -> Problem:
        return Problem(len(cost.units), costs, bounds, score, 0.9, key=key)

    base = problem()
    pick = uniform(base, widths=widths)
    out = {"seed": seed, "dense_val": evaluate_accuracy(dense, val), "units": [u.name for u in cost.units],
           "uniform": {"val": base.evaluate(pick, "uniform"), "test": tester(pick),
                       "params": costs(pick)["params"], "kept": [float(v) for v in cost.keep_fractions(pick)]},
           "tuners": {}}
    for name in tuners:
        t0, scored = time.perf_counter(), scoring[0]
        searched = problem()
        evaluated: list[float] = []
        plain = searched.evaluate

        def traced(s: np.ndarray, source: str, _plain=plain, _out=evaluated) -> float:
            value = _plain(s, source)
            _out.append(value)
            return value
        searched.evaluate = traced  # every proposal passes here, repeated candidates included
        pick = tuner(searched, trials=trials, tuner_name=name, seed=seed, widths=widths)
        seconds = time.perf_counter() - t0 - (scoring[0] - scored)  # the tuner's own time
        # uniform() and tuner() both evaluate the uniform start; then one per proposal
        evaluated = evaluated[1: trials + 2]
        best = [max(evaluated[: 1 + n]) for n in range(len(evaluated))]
        out["tuners"][name] = {
            "best_after": best, "val": plain(pick, "pick"), "test": tester(pick),
            "params": costs(pick)["params"], "distinct": len({*map(tuple, (h["sparsity"] for h in searched.history))}),
            "kept": [float(v) for v in cost.keep_fractions(pick)], "seconds": seconds}
        r = out["tuners"][name]
        print(f"seed {seed} {name:10s} val {r['val']:.2f} (uniform {out['uniform']['val']:.2f}) "
              f"test {r['test']:.2f} kept {[round(k, 2) for k in r['kept']]} {seconds:.1f}s", flush=True)
    return out


def _paired(runs: list[dict], name: str, base: str) -> str:
    diffs = [r["tuners"][name]["val"] - r["tuners"][base]["val"] for r in runs]
    return (f"{statistics.mean(diffs):+.2f} ({sum(d > 0 for d in diffs)}↑ "
            f"{sum(d < 0 for d in diffs)}↓)")


def _spread(runs: list[dict], tuners: list[str], key: str, what: str) -> str:
    means = [statistics.mean(r["tuners"][n][key] for r in runs) for n in tuners]
    sd = statistics.mean(statistics.stdev(r["tuners"][n][key] for r in runs) for n in tuners)
    gap = max(means) - min(means)
    return (f"The largest gap between the tuners' mean {what} ({gap:.2f}) is "
            f"{'smaller' if gap < sd else 'larger'} than their typical sd over seeds ({sd:.2f}).")


def render(raw: dict) -> str:
    runs, s = raw["runs"], raw["settings"]
    tuners = [t for t in TUNERS if t in runs[0]["tuners"]]
    checkpoints = sorted({c for c in CHECKPOINTS if c < s["trials"]} | {s["trials"]})
    lines = ["## Tuners on the LeNet auto-compression search (per-layer sparsity, 2,421 parameters)", "",
             f"`python benchmarks/tuners_lenet.py` — {raw['machine']} (accuracy does not depend on it). "
             f"{len(runs)} seeds; per seed LeNet5 trains {s['epochs']} epochs on 7,000 fit images (1,000 "
             "validation carved out by the seed). Each tuner drives `torchslim.auto.search.tuner` "
             f"(AMC-style, what `compress()` runs) for {s['trials']} proposals from the uniform start: "
             "a proposal is a per-unit sparsity direction scaled onto the budget by the exact cost model, "
             "scored by `masked_scorer` = validation accuracy of the masked model after a one-pass "
             f"short-term fine-tune on {s['short_images']:,} images. The pick is fine-tuned "
             f"{s['finetune_epochs']} epochs (masks on) and tested once (2,000 test images). "
             f"Units: {', '.join(runs[0]['units'])}; dense validation accuracy "
             f"{mean_sd([r['dense_val'] for r in runs])} %.", "",
             "| tuner | " + " | ".join(f"best val % after {c}" for c in checkpoints)
             + " | pick − Random (val, paired) | pick − TPE (val, paired) | pick's test % after fine-tune | "
               "distinct candidates | tuner s/search (scoring excluded) |",
             "|---" * (len(checkpoints) + 6) + "|"]
    uni = [r["uniform"] for r in runs]
    lines.append("| uniform (start) | " + " | ".join(mean_sd([u["val"] for u in uni]) for _ in checkpoints)
                 + f" | | | {mean_sd([u['test'] for u in uni])} | 1 | |")
    for name in tuners:
        rs = [r["tuners"][name] for r in runs]
        cells = [mean_sd([x["best_after"][min(c, len(x["best_after"]) - 1)] for x in rs]) for c in checkpoints]
        cells += ["" if name == "Random" else _paired(runs, name, "Random"),
                  "" if name == "TPE" else _paired(runs, name, "TPE"),
                  mean_sd([x["test"] for x in rs]), f"{statistics.mean(x['distinct'] for x in rs):.1f}",
                  f"{statistics.mean(x['seconds'] for x in rs):.1f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    val = {n: statistics.mean(r["tuners"][n]["val"] for r in runs) for n in tuners}
    test = {n: statistics.mean(r["tuners"][n]["test"] for r in runs) for n in tuners}
    top_val, top_test = max(val, key=val.get), max(test, key=test.get)
    uniform_test = statistics.mean(u["test"] for u in uni)
    lines += ["", f"Highest mean validation score of the pick: {top_val} ({val[top_val]:.2f} %); highest mean "
              f"test accuracy after the fine-tune: {top_test} ({test[top_test]:.2f} %), uniform {uniform_test:.2f} %. "
              + _spread(runs, tuners, "val", "validation scores") + " "
              + _spread(runs, tuners, "test", "test accuracies")
              + ("" if top_val == top_test else
                 " The best tuner by the short-term proxy is not the best after fine-tuning.")]
    lines += ["", "Paired columns: mean difference of the pick's validation score over the same seeds "
              "(↑/↓: seeds where the tuner's pick scored higher / lower). Distinct candidates: proposals "
              "scaled onto the budget often land on the same kept channels (4 units, rounding); the count "
              "includes the uniform start.", "",
              "Not in this table: `NSGA2` and `MOTPE` are multi-objective (this search has one score under a "
              "budget constraint; candidates are projected onto the budget, so parameters are the same for "
              "all); their quality is the ZDT1 hypervolume in `tuners.md` and their LeNet use is the "
              "accuracy/parameters/latency front in `auto_compress_pareto.md`. `Hyperband`/`BOHB` need a "
              "budget knob per trial (`tuners_fidelity.md`), `PBT` trains a population from "
              "checkpoints, `Batch` runs a given list: none of them is a black-box optimiser of this score.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--short-images", type=int, default=2000)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--tuners", default=",".join(TUNERS))
    parser.add_argument("--quick", action="store_true", help="2 seeds, 6 trials, 1 epoch: a smoke run (not saved)")
    parser.add_argument("--render-only", action="store_true", help="re-render the .md from the saved JSON")
    args = parser.parse_args()
    if args.render_only:
        raw = load("tuners_lenet")
        save("tuners_lenet", raw, render(raw))
        return
    torch.set_num_threads(1)
    if args.quick:
        args.seeds, args.trials, args.epochs, args.finetune_epochs = 2, 6, 1, 1
    settings = {k: getattr(args, k) for k in ("trials", "epochs", "short_images", "finetune_epochs")}
    raw = {"machine": machine(shared=True), "settings": settings, "runs": []}
    for seed in range(args.seeds):
        raw["runs"].append(run_seed(seed, args.tuners.split(","), args.trials, args.epochs, args.short_images,
                                    args.finetune_epochs))
        if not args.quick:
            save("tuners_lenet", raw, render(raw))  # keep what is done if the run is cut short
    print(render(raw))


if __name__ == "__main__":
    main()
