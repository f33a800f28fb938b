"""Auto-compression to a budget (``torchslim.auto.compress``): does the search beat uniform
sparsity at the same budget, and does a latency budget hold when measured?

Part ``lenet`` — LeNet5 on the embedded MNIST, for each seed: the 8,000 training images are
split 7,000 / 1,000 (fit / validation) by the seed; the dense model trains 4 epochs; at a
params budget of 2,421 and at 25% of dense MACs, the searched per-layer sparsities (NetAdapt,
candidates scored on the validation split after a short-term fine-tune of one pass over 2,000
images) and uniform sparsity (the highest one that meets
the same budget) are pruned, sped up and fine-tuned identically (3 epochs); the 2,000-image
test split is touched once per final model. Mean ± sd over the seeds.

Part ``latency`` — torchvision ResNet-18 and MobileNetV2 (random init, structure only): a
budget of 0.5x the dense latency at batch 32 (2 threads); the built model is timed against
the dense one in alternating rounds in the same run; outputs are verified by speedup.

Writes ``benchmarks/results/auto_compress.json`` (raw) and renders ``auto_compress.md`` from it
(``--render-only`` re-renders without running).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from results_io import load, machine, mean_sd, save

BUDGETS = {"params=2421": {"params": 2421}, "macs=25%": {"macs": "25%"}}
ALGORITHMS = {"uniform": {}, "netadapt": {"iterations": 8}, "tuner": {"tuner_name": "TPE", "trials": 25}}
LABELS = {"uniform": "uniform", "netadapt": "searched: NetAdapt greedy", "tuner": "searched: TPE (AMC-style), 25 candidates"}


def lenet_part(seeds: list[int], epochs: int, finetune_epochs: int) -> list[dict]:
    from torch.utils.data import Subset

    from torchslim.auto import compress
    from torchslim.auto.mnist import accuracy_on, finetune, mnist_splits
    from torchslim.models import LeNet5
    from torchslim.utils.training import evaluate_accuracy, train_epochs

    rows = []
    for seed in seeds:
        torch.manual_seed(seed)
        fit, val, test = mnist_splits(seed)
        dense = train_epochs(LeNet5(), fit, epochs, lr=2e-3, seed=seed).eval()
        dense_test = evaluate_accuracy(dense, test)
        short_term = Subset(fit, range(2000))  # NetAdapt's short-term fine-tune of each candidate
        for budget_name, budget in BUDGETS.items():
            for algorithm in ALGORITHMS:
                t0 = time.perf_counter()
                torch.manual_seed(seed)
                result = compress(dense, torch.randn(1, 1, 28, 28), accuracy_on(val), budget,
                                  lambda m: finetune(m, fit, finetune_epochs, seed=seed), algorithm=algorithm,
                                  algorithm_options=ALGORITHMS[algorithm],
                                  short_term_fn=lambda m: finetune(m, short_term, 1, seed=seed), seed=seed)
                rows.append({
                    "seed": seed, "budget": budget_name, "algorithm": algorithm, "met": result.met,
                    "params": result.compressed["params"], "macs": result.compressed["macs"],
                    "dense_params": result.dense["params"], "dense_macs": result.dense["macs"],
                    "val_accuracy": result.compressed["score"], "test_accuracy": evaluate_accuracy(result.model, test),
                    "dense_test_accuracy": dense_test, "kept": [u["kept"] for u in result.units],
                    "seconds": time.perf_counter() - t0})
                print(f"seed {seed} {budget_name:12s} {algorithm:9s} params {rows[-1]['params']:>7,.0f} "
                      f"test {rows[-1]['test_accuracy']:.2f}% kept {rows[-1]['kept']}", flush=True)
    return rows


def latency_part(models: list[str], resolution: int, batch: int, threads: int) -> list[dict]:
    import torchvision
    from speedup_zoo import make_trained_like

    from torchslim.auto import compress

    # random weights with calibrated BN leave denormal floats that slow one side arbitrarily;
    # flushing them (as deployments do) keeps the latency comparison about channels
    torch.set_flush_denormal(True)
    rows = []
    for name in models:
        torch.manual_seed(0)
        model = torchvision.models.get_model(name, weights=None)
        make_trained_like(model, resolution)  # calibrated BN, no zero heads: the output check can fail
        model.eval()
        t0 = time.perf_counter()
        result = compress(model, torch.randn(1, 3, resolution, resolution), None, {"latency_ms": "0.5x"},
                          latency_input=torch.randn(batch, 3, resolution, resolution), threads=threads,
                          progress=True)
        final = next(r for r in result.rounds if r.get("chosen"))["measured"]  # the build compress() kept
        rows.append({
            "model": name, "batch": batch, "resolution": resolution, "threads": threads, "budget_share": 0.5,
            "dense_ms": final["dense_latency"], "compressed_ms": final["latency"],
            "share": final["latency"] / final["dense_latency"], "rounds": len(result.rounds),
            "round_shares": [r["measured"]["latency"] / r["measured"]["dense_latency"] for r in result.rounds],
            "params_kept": result.compressed["params"] / result.dense["params"],
            "macs_kept": result.compressed["macs"] / result.dense["macs"],
            "max_abs_diff": (result.speedup or {}).get("max_abs_diff"), "seconds": time.perf_counter() - t0})
        print(f"{name}: {rows[-1]['share']:.3f} of dense latency ({rows[-1]['compressed_ms']:.1f} vs "
              f"{rows[-1]['dense_ms']:.1f} ms), rounds {rows[-1]['round_shares']}", flush=True)
    return rows


def render(raw: dict) -> str:
    lines = ["# Auto-compression to a budget (`benchmarks/auto_compress.py`)", "",
             *[f"- {part}: {raw.get('machines', {}).get(part, raw.get('machine'))}; {note}"
               for part, note in raw.get('notes', {}).items()], ""]
    lenet = raw.get("lenet") or []
    if lenet:
        seeds = sorted({r["seed"] for r in lenet})
        lines += ["## LeNet5 on the embedded MNIST: searched vs uniform per-layer sparsity at the same budget", "",
                  f"Seeds {seeds}: 7,000/1,000 fit/validation split of the training part by seed, dense "
                  f"{raw['settings']['epochs']} epochs, fine-tune {raw['settings']['finetune_epochs']} epochs for "
                  "both; search candidates scored on validation after a one-pass short-term fine-tune on 2,000 images; "
                  "uniform hands channels left by rounding back while the budget holds; the test split (2,000) touched once per model. "
                  f"Dense test accuracy {mean_sd([r['dense_test_accuracy'] for r in lenet if r['algorithm'] == 'uniform' and r['budget'] == next(iter(BUDGETS))])} %.",
                  "", "| budget | allocation | params (mean) | MACs (mean) | budget met | test accuracy % (mean ± sd) |",
                  "|---|---|---|---|---|---|"]
        for budget in BUDGETS:
            for algorithm in ALGORITHMS:
                rs = [r for r in lenet if r["budget"] == budget and r["algorithm"] == algorithm]
                if not rs:
                    continue
                lines.append(f"| {budget} | {LABELS[algorithm]} | "
                             f"{statistics.mean(r['params'] for r in rs):,.0f} | {statistics.mean(r['macs'] for r in rs):,.0f} | "
                             f"{sum(r['met'] for r in rs)}/{len(rs)} | {mean_sd([r['test_accuracy'] for r in rs])} |")
            for algorithm in ("netadapt", "tuner"):
                wins = [a["test_accuracy"] - b["test_accuracy"] for a in lenet for b in lenet
                        if a["budget"] == b["budget"] == budget and a["seed"] == b["seed"]
                        and a["algorithm"] == algorithm and b["algorithm"] == "uniform"]
                if wins:
                    lines.append(f"| {budget} | {algorithm} − uniform (paired by seed) | | | | "
                                 f"{mean_sd(wins)} ({sum(w > 0 for w in wins)} better, "
                                 f"{sum(w < 0 for w in wins)} worse of {len(wins)}) |")
        lines.append("")
    latency = raw.get("latency") or []
    if latency:
        lines += ["## Latency budget 0.5x dense, measured (structure only, random init)", "",
                  "| model | input | threads | dense ms | compressed ms | share of dense | within 10% of 0.5 | rounds (shares) | params kept | MACs kept | max abs diff (speedup check) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in latency:
            within = abs(r["share"] / r["budget_share"] - 1) <= 0.10
            lines.append(f"| {r['model']} | {r['batch']}x3x{r['resolution']}x{r['resolution']} | {r['threads']} | "
                         f"{r['dense_ms']:.1f} | {r['compressed_ms']:.1f} | {r['share']:.3f} | {'yes' if within else 'no'} | "
                         f"{r['rounds']} ({', '.join(f'{s:.2f}' for s in r['round_shares'])}) | "
                         f"{r['params_kept']:.3f} | {r['macs_kept']:.3f} | {r['max_abs_diff']} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["all", "lenet", "latency"], default="all")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--models", nargs="*", default=["resnet18", "mobilenet_v2"])
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="2 seeds, 1 epoch, small inputs: a smoke run")
    parser.add_argument("--quiet-machine", action="store_true", help="label the run as taken on a quiet machine")
    parser.add_argument("--note", default="", help="recorded with the results (e.g. machine load)")
    parser.add_argument("--render-only", action="store_true", help="re-render the .md from the saved JSON")
    args = parser.parse_args()
    raw = load("auto_compress") or {}
    if not args.render_only:
        torch.set_num_threads(1)
        if args.quick:
            args.seeds, args.epochs, args.finetune_epochs, args.resolution, args.batch = 2, 1, 1, 64, 8
        machines = raw.setdefault("machines", {})
        old = raw.pop("machine", None)  # results from before per-part labels
        for part in raw.get("notes", {}):
            machines.setdefault(part, old)
        for part in ("lenet", "latency"):
            if args.part in ("all", part):
                machines[part] = machine(shared=not args.quiet_machine)
        notes = raw.setdefault("notes", {})
        if args.part in ("all", "lenet"):
            raw["settings"] = {"epochs": args.epochs, "finetune_epochs": args.finetune_epochs}
            notes["lenet"] = args.note
            raw["lenet"] = lenet_part(list(range(args.seeds)), args.epochs, args.finetune_epochs)
        if args.part in ("all", "latency"):
            notes["latency"] = args.note
            raw["latency"] = latency_part(args.models, args.resolution, args.batch, args.threads)
    save("auto_compress", raw, render(raw))
    print(render(raw))


if __name__ == "__main__":
    main()
