"""Render ``results/pruning_mnist.json`` (written by ``pruning_mnist.py``) to markdown and a plot."""
from __future__ import annotations

import statistics
from typing import Any

from results_io import RESULTS, mean_sd, save


def _mean(values: list[float]) -> float:
    return statistics.mean(values) if values else float("nan")


def _order(data: dict[str, Any], order: list[str]) -> tuple[list[str], list[float]]:
    """Pruners (in the script's order) and sparsities that have rows."""
    seen = {r["pruner"] for r in data["runs"] + data["select"]} | {f["pruner"] for f in data["failures"] if "pruner" in f}
    names = [n for n in order if n in seen] + sorted(seen - set(order))
    return names, sorted({r["sparsity"] for r in data["runs"]})


def _dense(data: dict[str, Any], arch: str) -> list[dict]:
    return [r for r in data["dense"] if r["arch"] == arch and r["test_acc"] is not None]


def render(data: dict[str, Any], order: list[str]) -> str:
    p = data["protocol"]
    names, sparsities = _order(data, order)
    seeds = sorted({r["seed"] for r in data["runs"]})
    lines = [
        f"## Every pruner on LeNet + MNIST at {' / '.join(f'{s:.0%}' for s in sparsities) or '-'} sparsity",
        "",
        f"Written by `benchmarks/pruning_mnist.py` from `results/pruning_mnist.json`. {data['machine']}. "
        f"Embedded MNIST: {data.get('train')} training images, {data.get('val_size')} more held out for "
        f"validation, {data.get('test_size')} test images read once per run. Dense models trained per seed "
        f"({p['dense_epochs']} epochs, Adam lr {p['dense_lr']:g}); every run starts from its seed's dense weights. "
        f"Fine-tuning lr (from {', '.join(f'{x:g}' for x in p['lrs'])}) and budget (from "
        f"{', '.join(str(e) for e in p['epoch_choices'])} epochs, fine-tuning included) chosen per pruner on the "
        f"validation split at {p['select_sparsity']:.0%} sparsity with a separate seed ({p['select_seed']}). "
        f"Test accuracy: mean ± sd over seeds {', '.join(str(s) for s in seeds)}. One-shot: validation accuracy right "
        "after pruning, before fine-tuning (pruners that prune while training have none). Params: structured "
        "results shrunk by `ModelSpeedup` and counted, fine-grained ones count non-zero parameters; % of the dense "
        "model. Conv2d + Linear layers pruned except the classifier `fc2`; Slim prunes the BatchNorm layers.",
        "",
        "| dense model | params | validation % | test % |",
        "|---|---|---|---|",
    ]
    for arch in ("LeNet", "LeNet+BN"):
        rows = _dense(data, arch)
        if rows:
            lines.append(f"| {arch} | {rows[0]['params']:,} | {mean_sd([r['val_acc'] for r in rows])} | "
                         f"{mean_sd([r['test_acc'] for r in rows])} |")
    lines += ["", "| pruner | kind | lr, epochs | sparsity | one-shot val % | test % | params kept |",
              "|---|---|---|---|---|---|---|"]
    for name in names:
        for sparsity in sparsities:
            rs = [r for r in data["runs"] if r["pruner"] == name and r["sparsity"] == sparsity]
            if not rs:
                continue
            dense = _dense(data, rs[0]["arch"])
            params = _mean([r["params"] for r in rs])
            share = f" ({100 * params / dense[0]['params']:.1f}%)" if dense else ""
            shot = [r["one_shot_val_acc"] for r in rs if r["one_shot_val_acc"] is not None]
            lines.append(f"| {name} | {'structured' if rs[0]['structured'] else 'fine-grained'} | "
                         f"{rs[0]['lr']:g}, {rs[0]['epochs']} | {sparsity:.0%} | {mean_sd(shot, 1) if shot else '-'} | "
                         f"{mean_sd([r['test_acc'] for r in rs])} | {params:,.0f}{share} |")
    lines += ["", "Reading it: one-shot accuracy on LeNet+BN is at chance whatever ranks the channels (Slim and L1Norm "
              "alike): after a structured cut BatchNorm's running statistics no longer match its input, and "
              "fine-tuning restores them. Movement pruning learns its scores during the run itself (it was made for long fine-tuning of "
              "pretrained models); with a budget of one or two epochs it is the weakest here and the most sensitive "
              "to lr and budget (selection table below). A structured cut of a share of channels removes more than that "
              "share of parameters: the next layer loses the same inputs."]
    lines += _selection(data, names)
    lines += ["", "![test accuracy vs parameters kept, per pruner](pruning_mnist.png)"]
    if data["failures"]:
        lines += ["", "Failed runs:"] + [f"- {f.get('pruner', f.get('arch'))} {f.get('sparsity', '')} seed {f['seed']}: "
                                          f"{f['error']}" for f in data["failures"]]
    return "\n".join(lines)


def _selection(data: dict[str, Any], names: list[str]) -> list[str]:
    p = data["protocol"]
    choices = [(lr, e) for lr in p["lrs"] for e in p["epoch_choices"]]
    if len(choices) < 2 or not data["select"]:
        return []
    lines = ["", f"Selection (validation %, {p['select_sparsity']:.0%} sparsity, seed {p['select_seed']}; "
             "chosen in bold):", "",
             "| pruner | " + " | ".join(f"lr {lr:g}, {e} ep" for lr, e in choices) + " |",
             "|---|" + "---|" * len(choices)]
    for name in names:
        rows = {(r["lr"], r["epochs"]): r["val_acc"] for r in data["select"] if r["pruner"] == name}
        if not rows:
            continue
        best = max(rows, key=lambda k: (rows[k], -k[1], -k[0]))
        cells = [("-" if c not in rows else f"**{rows[c]:.1f}**" if c == best else f"{rows[c]:.1f}") for c in choices]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def plot(data: dict[str, Any], order: list[str], path: Any) -> None:
    """Test accuracy (mean ± sd) against parameters kept, one line per pruner, dense as a star."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, sparsities = _order(data, order)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, structured in zip(axes, (True, False)):
        for i, name in enumerate(names):
            spread = 1 + 0.015 * (i - len(names) / 2)  # pruners with equal params side by side, not on top
            pts = []
            for s in sparsities:
                rs = [r for r in data["runs"] if r["pruner"] == name and r["sparsity"] == s]
                if rs and rs[0]["structured"] == structured:
                    accs = [r["test_acc"] for r in rs]
                    pts.append((_mean([r["params"] for r in rs]), _mean(accs),
                                statistics.stdev(accs) if len(accs) > 1 else 0.0))
            if pts:
                ax.errorbar([x * spread for x, _, _ in pts], [y for _, y, _ in pts], yerr=[e for _, _, e in pts],
                            marker="o", capsize=3, label=name)
        for arch, marker in (("LeNet", "*"), ("LeNet+BN", "P")):
            rows = _dense(data, arch)
            if rows and (structured or arch == "LeNet"):
                ax.plot([rows[0]["params"]], [_mean([r["test_acc"] for r in rows])], marker, color="black",
                        markersize=12, label=f"dense {arch}")
        ax.set_xscale("log")
        ax.set_xlabel("parameters kept (log; equal counts spread sideways)")
        ax.set_title("structured (shrunk)" if structured else "fine-grained (non-zero)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("test accuracy % (mean ± sd over seeds)")
    fig.suptitle("Pruners on LeNet + MNIST (" + ", ".join(f"{s:.0%}" for s in sparsities) + " sparsity)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_all(name: str, data: dict[str, Any], markdown: str, order: list[str] | None = None) -> None:
    """JSON + markdown (every time), and the plot once there are runs."""
    (RESULTS / name).parent.mkdir(parents=True, exist_ok=True)
    save(name, data, markdown)
    if data["runs"] and order is not None:
        plot(data, order, RESULTS / f"{name}.png")
