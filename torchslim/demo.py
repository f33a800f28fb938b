"""The end-to-end demo: train → prune → fine-tune → speed up → quantize → report.

Runs on the embedded MNIST split in a few minutes on 2 CPU cores. Each stage adds a row to
the before/after table; the per-layer sparsity plot and the table are saved to ``out_dir``.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import Subset

from torchslim.datasets import load_mnist
from torchslim.models import LeNet, LeNet5
from torchslim.pruning import L1NormPruner
from torchslim.report import (
    Row, layer_removed, layer_sizes, layer_sparsity, measure_row, plot_layer_sparsity, print_table, save_rows,
)
from torchslim.utils.training import evaluate_accuracy, train_epochs

MODELS: dict[str, Callable[[], nn.Module]] = {"lenet": LeNet, "lenet5": LeNet5}


@dataclass
class DemoResult:
    rows: list[Row]
    files: list[Path]
    sparsity: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0

    def row(self, stage_prefix: str) -> Row:
        return next(r for r in self.rows if r.stage.startswith(stage_prefix))


def _say(message: str) -> None:
    print(f"[torchslim demo] {message}", flush=True)


def run_demo(
    out_dir: str | Path = "torchslim-demo",
    *,
    model_name: str = "lenet",
    epochs: int = 3,
    finetune_epochs: int = 2,
    sparsity: float = 0.5,
    quick: bool = False,
    progress: bool = True,
    seed: int = 0,
) -> DemoResult:
    """Run the whole pipeline; ``quick`` trains on a 1,000-image subset (for tests)."""
    start = time.perf_counter()
    out = Path(out_dir)
    torch.manual_seed(seed)
    train, test = load_mnist()
    if quick:
        train = Subset(train, range(1000))
    example = test.tensors[0][:1]
    model = MODELS[model_name]()
    rows: list[Row] = []
    sparsity_plot: dict[str, dict[str, float]] = {}

    _say(f"training {type(model).__name__} on {len(train)} embedded MNIST images ({epochs} epochs)")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(epochs):
        train_epochs(model, train, 1, optimizer=optimizer, seed=seed + epoch, progress=progress, desc=f"train {epoch + 1}/{epochs}")
        _say(f"  epoch {epoch + 1}/{epochs}: test accuracy {evaluate_accuracy(model, test):.2f}%")
    rows.append(measure_row("dense", model, example, evaluate_accuracy(model, test)))
    sparsity_plot["dense"] = layer_sparsity(model)

    config_list = [{"op_types": ["Conv2d", "Linear"], "exclude_op_names": [_classifier(model)], "sparse_ratio": sparsity}]
    _say(f"pruning with L1NormPruner: {config_list}")
    pruner = L1NormPruner(model, config_list)
    _, masks = pruner.compress()
    pruned_acc = evaluate_accuracy(model, test)
    for epoch in range(finetune_epochs):
        train_epochs(model, train, 1, optimizer=optimizer, seed=seed + 100 + epoch, progress=progress,
                     desc=f"fine-tune {epoch + 1}/{finetune_epochs}")
        _say(f"  fine-tune epoch {epoch + 1}/{finetune_epochs}: test accuracy {evaluate_accuracy(model, test):.2f}%")
    rows.append(measure_row("pruned + fine-tuned (masked)", model, example, evaluate_accuracy(model, test),
                            note=f"{pruned_acc:.2f}% before fine-tuning"))
    sparsity_plot["pruned (masked)"] = layer_sparsity(model)
    masks = pruner.get_masks()
    pruner.unwrap_model()

    shrunk = _speedup_stage(model, masks, example, test, rows)
    if shrunk is not None:  # speedup also removes the inputs that pruned channels fed
        sparsity_plot["speedup (removed)"] = layer_removed(shrunk, layer_sizes(model))
    _quantize_stage(shrunk if shrunk is not None else model, train, test, example, rows, out, progress)

    print_table(rows, title=f"torchslim demo: {type(model).__name__} on embedded MNIST")
    files = save_rows(rows, out)
    plot = plot_layer_sparsity(sparsity_plot, out / "layer_sparsity.png", f"{type(model).__name__}: per-layer sparsity")
    if plot:
        files.append(plot)
    seconds = time.perf_counter() - start
    _say(f"done in {seconds:.0f} s; wrote {', '.join(str(f) for f in files)}")
    return DemoResult(rows, files, sparsity_plot, seconds)


def _classifier(model: nn.Module) -> str:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)][-1]


def _speedup_stage(model: nn.Module, masks: Any, example: torch.Tensor, test: Any, rows: list[Row]) -> nn.Module | None:
    try:
        from torchslim.speedup import ModelSpeedup
    except ImportError:
        _say("speedup is not available in this build; skipping")
        return None
    _say("speeding up: masks → physically smaller layers")
    shrunk = copy.deepcopy(model)
    t0 = time.perf_counter()
    ModelSpeedup(shrunk, torch.randn(8, *example.shape[1:]), masks).speedup_model()
    took = time.perf_counter() - t0
    rows.append(measure_row("speedup (shrunk)", shrunk, example, evaluate_accuracy(shrunk, test),
                            note=f"speedup took {took:.2f} s"))
    return shrunk


def _quantize_stage(model: nn.Module, train: Any, test: Any, example: torch.Tensor, rows: list[Row], out: Path,
                    progress: bool) -> None:
    try:
        from torchslim.quantization import demo_rows
    except ImportError:
        _say("quantization is not available in this build; skipping")
        return
    _say("quantization-aware training and int8 deployment")
    rows.extend(demo_rows(model, train, test, example, out_dir=out, progress=progress))
