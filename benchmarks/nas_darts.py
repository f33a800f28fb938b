"""DARTS on a small cell space, on CPU, then the exported cell retrained (embedded MNIST).

Search: first-order DARTS, 4,000 training images for the weights and 1,000 validation
images for the architecture, ``SEARCH_EPOCHS`` epochs, one torch thread. Retrain: the
exported architecture from scratch on all 8,000 training images (random 2-pixel shifts),
``RETRAIN_EPOCHS`` epochs; the 2,000 test images are touched once, at the end. Writes
``benchmarks/results/nas_darts.json`` (the markdown comes from ``nas_report.py``).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from torchslim.datasets import load_mnist
from torchslim.nas import Cell, Classification, ModelSpace, NasExperiment
from torchslim.nas import strategy
from torchslim.nas.evaluator import accuracy

RESULTS = Path(__file__).resolve().parent / "results"
SEARCH_EPOCHS = int(sys.argv[1]) if len(sys.argv) > 1 else 2
RETRAIN_EPOCHS = int(sys.argv[2]) if len(sys.argv) > 2 else 8


def ops(c: int) -> dict:
    return {
        "sep_conv_3x3": lambda: nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c), nn.ReLU()),
        "conv_3x3": lambda: nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False),
                                          nn.BatchNorm2d(c), nn.ReLU()),
        "max_pool_3x3": lambda: nn.MaxPool2d(3, 1, 1),
        "skip_connect": lambda: nn.Identity(),
    }


class DartsMnistSpace(ModelSpace):
    """Stem, cell (16 ch, 14x14), cell (32 ch, 7x7); both cells share the label 'cell'."""

    def __init__(self, nodes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU(), nn.MaxPool2d(2))
        self.cell1 = Cell(ops(16), nodes, num_ops_per_node=2, label="cell")
        self.reduce = nn.Sequential(nn.Conv2d(16 * nodes, 32, 1, bias=False), nn.BatchNorm2d(32),
                                    nn.ReLU(), nn.MaxPool2d(2))
        self.cell2 = Cell(ops(32), nodes, num_ops_per_node=2, label="cell")
        self.head = nn.Linear(32 * nodes, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(self.cell1(self.stem(x)))
        return self.head(F.adaptive_avg_pool2d(self.cell2(x), 1).flatten(1))


def shift(x: torch.Tensor) -> torch.Tensor:
    """Random translation by up to 2 pixels (padding with the background value)."""
    padded = F.pad(x, (2, 2, 2, 2), value=float(x.min()))
    i, j = torch.randint(0, 5, (2,))
    return padded[..., i:i + 28, j:j + 28]


def retrain(model: nn.Module, train: object, test: object, epochs: int) -> float:
    torch.manual_seed(0)
    loader = DataLoader(train, batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 4e-3, total_steps=epochs * len(loader))
    for epoch in range(epochs):
        model.train()
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(shift(x)), y).backward()
            opt.step()
            sched.step()
        print(f"retrain epoch {epoch + 1}/{epochs}", flush=True)
    return accuracy(model, DataLoader(test, batch_size=500))


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    train, test = load_mnist()
    evaluator = Classification(
        DataLoader(Subset(train, range(4000)), batch_size=64, shuffle=True,
                   generator=torch.Generator().manual_seed(0)),
        DataLoader(Subset(train, range(7000, 8000)), batch_size=64, shuffle=True,
                   generator=torch.Generator().manual_seed(1)),
        max_epochs=SEARCH_EPOCHS, learning_rate=2e-3)
    space = DartsMnistSpace()
    darts = strategy.DARTS()
    start = time.perf_counter()
    NasExperiment(space, evaluator, darts).run()
    search_s = time.perf_counter() - start
    arch = darts.export_top_models(1)[0]
    print(f"DARTS search {search_s:.0f}s -> {arch}", flush=True)
    model = space.freeze(arch)
    start = time.perf_counter()
    acc = retrain(model, train, test, RETRAIN_EPOCHS)
    retrain_s = time.perf_counter() - start
    print(f"retrained test accuracy {acc:.4f} ({retrain_s:.0f}s)", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "nas_darts.json").write_text(json.dumps({
        "search_seconds": search_s, "search_epochs": SEARCH_EPOCHS, "architecture": arch,
        "alphas": darts.alphas, "retrain_epochs": RETRAIN_EPOCHS, "retrain_seconds": retrain_s,
        "test_accuracy": acc, "params": sum(p.numel() for p in model.parameters()),
        "machine": "shared 2-core CPU (other jobs running), 1 torch thread",
    }, indent=1))


if __name__ == "__main__":
    main()
