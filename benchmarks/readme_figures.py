"""Fill README.md's figure blocks from the benchmarks' raw JSON (no hand-typed numbers).

A block is ``<!-- figures:NAME -->`` ... ``<!-- /figures:NAME -->``; its content is replaced by
what ``BLOCKS[NAME]`` renders from ``benchmarks/results/*.json``. A block whose JSON is missing
is left as it is (and reported).

    python benchmarks/readme_figures.py [--check]   # --check: exit 1 if README is out of date
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path
from typing import Callable

from results_io import load, mean_sd, median

README = Path(__file__).resolve().parents[1] / "README.md"


def demo() -> str | None:
    d = load("demo")
    if d is None:
        return None
    shared = "shared" in d["machine"]  # latency read on a shared machine is not a headline figure
    lines = [f"What the demo prints ({d['machine']}; {d['seconds']:.0f} s; `benchmarks/results/demo.md`"
             + ("; latency left out: measured on a shared machine" if shared else "") + "):", "",
             "| stage | params | MACs | accuracy % |" + ("" if shared else " ms / batch of 64 |") + " size KB |",
             "|---|---|---|---|" + ("" if shared else "---|") + "---|"]
    for r in d["rows"]:
        params = f"{r['params']:,}" + (f" ({r['nonzero_params']:,} non-zero)" if r["nonzero_params"] != r["params"] else "")
        batch = f"{r['batch_latency_ms']:.2f}" if r.get("batch_latency_ms") is not None else "-"
        lines.append(f"| {r['stage']} | {params} | {r['macs'] / 1e6:.2f}M | {r['accuracy']:.2f} |"
                     + ("" if shared else f" {batch} |") + f" {r['size_kb']:.0f} |")
    return "\n".join(lines)


def zoo_sentence() -> str | None:
    d = load("speedup_zoo")
    if d is None:
        return None
    rows = [r for r in d["rows"] if "torchslim" in r]
    ours = [r for r in rows if r["torchslim"].get("ok")]
    equal = [r for r in ours if r["torchslim"]["check"]["status"] == "equal"]
    caught = [r for r in ours if r["torchslim"].get("mutation_caught")]
    theirs = [r for r in rows if r["torch_pruning"].get("ok")]
    both = [r for r in rows if r["torchslim"].get("ok") and r["torch_pruning"].get("ok")]

    def kept(tool: str) -> float:
        return 100 * sum(r[tool]["params"] for r in both) / max(sum(r["params"] for r in both), 1)

    def secs(tool: str) -> float:
        return sum(r[tool]["tool_s"] for r in both)

    not_done = f" ({len(d['not_done'])} models not reached in this run)" if d.get("not_done") else ""
    return (f"On {len(rows)} torchvision classification models with calibrated BatchNorm{not_done}, 30% channel "
            f"request: torchslim shrinks {len(ours)}/{len(rows)}, the shrunk output equals the user's masked model "
            f"on {len(equal)} (within 1e-3 of the output's spread over 4 inputs), and its check catches a swapped "
            f"channel on {len(caught)}; Torch-Pruning {d.get('tp_version', '')} (its documented recipe) prunes "
            f"{len(theirs)}/{len(rows)}. On the {len(both)} models both prune, torchslim keeps {kept('torchslim'):.0f}% "
            f"of the parameters vs Torch-Pruning's {kept('torch_pruning'):.0f}% (it removes only what the channel "
            f"graph proves removable), in {secs('torchslim'):.0f} s vs {secs('torch_pruning'):.0f} s for the same "
            "scope (prune + graph + shrink; one run each on a shared machine, indicative). "
            "`benchmarks/results/speedup_zoo.md`.")


def lenet5_sentence() -> str | None:
    d = load("pruning_lenet5")
    if d is None:
        return None
    tests = [r["test"] for r in d["runs"]]
    return (f"LeNet5 → {d['runs'][0]['params']:,} parameters at {mean_sd(tests, unit='%')} test accuracy (median "
            f"{median(tests):.2f}; widths chosen on a validation split) on the embedded MNIST split: "
            "`python benchmarks/pruning_lenet5_2421.py`.")


def overhead_sentence() -> str | None:
    d = load("experiment_overhead")
    if d is None:
        return None
    return (f"{d['trials']} trivial experiment trials at concurrency {d['concurrency']} cost "
            f"{d['ratio_vs_same_command']:.2f}x a bare pool running the same trial command and "
            f"{d['ratio_vs_python_pass']:.2f}x bare `python -c pass` (median of paired ratios).")


def pruners_sentence() -> str | None:
    d = load("pruning_mnist")
    if d is None or not d.get("runs") or "protocol" not in d:
        return None
    sparsity = max(r["sparsity"] for r in d["runs"])
    dense = [r["test_acc"] for r in d["dense"] if r["arch"] == "LeNet" and r["test_acc"] is not None]

    def best(structured: bool) -> str:
        groups: dict[str, list[dict]] = {}
        for r in d["runs"]:
            if r["sparsity"] == sparsity and r["structured"] == structured:
                groups.setdefault(r["pruner"], []).append(r)
        if not groups:
            return "-"
        # "best" by validation accuracy: the test split is not used to pick
        name, rs = max(groups.items(), key=lambda kv: sum(r["val_acc"] for r in kv[1]) / len(kv[1]))
        params = sum(r["params"] for r in rs) / len(rs)
        return f"{name} ({params:,.0f} params, {mean_sd([r['test_acc'] for r in rs], unit='%')})"

    return (f"Every pruner on LeNet + MNIST at {sparsity:.0%} sparsity, lr and budget chosen on a validation split, "
            f"test accuracy over seeds: best structured (shrunk) {best(True)}, best fine-grained {best(False)}; "
            f"dense LeNet {mean_sd(dense, unit='%')}. All pruners, one-shot accuracy and plot: "
            "`benchmarks/results/pruning_mnist.md`.")


def int8_table() -> str | None:
    d = load("quantization_int8")
    if d is None or not d.get("summary"):
        return None
    lines = ["| model | batch | ours vs best fp32 | ours vs best stock int8 | ours rel. logit error |", "|---|---|---|---|---|"]
    for s in d["summary"]:
        lines.append(f"| {s['model']} | {s['batch']} | {s['vs_fp32']:.2f}x ({s['best_fp32']}) "
                     f"| {s['vs_stock']:.2f}x ({s['best_stock']}) | {s['ours_rel_err']:.3f} |")
    return "\n".join(lines + ["", "Measured side by side in one run per model (2 threads, interleaved rounds, "
                               "medians); load and rounds per run, every row and the MobileNetV2 note: "
                               "`benchmarks/results/quantization_int8.md`." + trained_mobilenet_sentence()])


def trained_mobilenet_sentence() -> str:
    """Why random-init MobileNetV2 is over 0.1 and what int8 does to a trained one (int8_mnist_seeds.py)."""
    m = (load("quantization_int8_mnist") or {}).get("mobilenet_v2")
    if not m or not m.get("rows"):
        return ""
    rows = m["rows"]
    delta = {b: statistics.mean([r["accuracy"][b] - r["accuracy"]["fp32"] for r in rows]) for b in ("onnxruntime", "x86")}
    error = {b: statistics.mean([r["rel_err"][b] for r in rows]) for b in ("onnxruntime", "x86")}
    gain = statistics.mean([r["noise"]["trained"]["gain"] for r in rows])
    grid = [r for r in (load("quantization_int8") or {}).get("rows", [])
            if r["key"] == "mobilenet_v2" and r["variant"].startswith("fp32, only its input rounded")]
    on_grid = f" (its input alone rounded to 8 bits: {max(r['rel_err_fp32'] for r in grid):.2f})" if grid else ""
    return (f" Random-init MobileNetV2 amplifies any perturbation {m['random_224']['gain']:.0f}-fold{on_grid}, so no "
            f"int8 model of it is within 0.1; trained in "
            f"place on the embedded MNIST ({len(rows)} seeds, gain {gain:.2f}x), our deployed int8 MobileNetV2 is "
            f"{delta['onnxruntime']:+.2f} / {delta['x86']:+.2f} pt from fp32 accuracy at relative logit error "
            f"{error['onnxruntime']:.3f} / {error['x86']:.3f} (onnxruntime / x86): "
            "`benchmarks/results/quantization_int8_mnist.md`.")


BLOCKS: dict[str, Callable[[], str | None]] = {
    "demo": demo, "zoo": zoo_sentence, "lenet5": lenet5_sentence, "overhead": overhead_sentence,
    "pruners": pruners_sentence, "int8": int8_table,
}


def fill(text: str) -> tuple[str, list[str]]:
    missing = []
    for name, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- figures:{name} -->\n)(.*?)(<!-- /figures:{name} -->)", re.S)
        if not pattern.search(text):
            continue
        body = make()
        if body is None:
            missing.append(name)
            continue
        text = pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(3), text)
    return text, missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    old = README.read_text()
    new, missing = fill(old)
    if missing:
        print(f"no results yet for README blocks: {', '.join(missing)} (left as they were)")
    if args.check:
        sys.exit(0 if new == old else 1)
    README.write_text(new)
    print(f"README.md figures {'updated' if new != old else 'already up to date'}")


if __name__ == "__main__":
    main()
