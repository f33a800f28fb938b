"""Build the tabular NAS benchmark once: every architecture of a small MNIST space trained.

Each of the 108 architectures of ``torchslim.nas.benchmark.MnistTabularSpace`` is trained
for one short epoch (4,000 embedded MNIST training images, seed 0, one torch thread) and
scored on a held-out validation split (the next 2,000 training images) and on the test
split. The result, ``torchslim/nas/benchmark/mnist_tabular.json``, lets strategy
benchmarks look accuracies up instead of training, so a whole search takes seconds.

Run: ``PYTHONPATH=. python benchmarks/nas_tabular_build.py`` (10-20 minutes on one shared core).
"""
from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from torchslim.datasets import load_mnist
from torchslim.nas.benchmark import SPACE, TabularNet

OUT = Path(__file__).resolve().parent.parent / "torchslim/nas/benchmark/mnist_tabular.json"

TRAIN, VAL = 4000, 2000


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return sum(int((model(x[i:i + 500]).argmax(1) == y[i:i + 500]).sum())
                   for i in range(0, len(x), 500)) / len(x)


def train_one(arch: dict, data: tuple) -> dict:
    xtr, ytr, xva, yva, xte, yte = data
    torch.manual_seed(0)
    model = TabularNet(arch)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    order = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    model.train()
    for i in range(0, len(xtr), 50):
        idx = order[i:i + 50]
        opt.zero_grad()
        F.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
        opt.step()
    seconds = time.perf_counter() - start
    return {"arch": arch, "val_accuracy": accuracy(model, xva, yva),
            "test_accuracy": accuracy(model, xte, yte),
            "params": sum(p.numel() for p in model.parameters()), "train_seconds": seconds}


def main() -> None:
    torch.set_num_threads(1)
    train, test = load_mnist()
    xtr, ytr = train.tensors
    data = (xtr[:TRAIN], ytr[:TRAIN], xtr[TRAIN:TRAIN + VAL], ytr[TRAIN:TRAIN + VAL], *test.tensors)
    archs = [dict(zip(SPACE, values)) for values in itertools.product(*SPACE.values())]
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else len(archs)
    records = []
    for i, arch in enumerate(archs[:limit]):
        records.append(train_one(arch, data))
        r = records[-1]
        print(f"[{i + 1}/{len(archs)}] {arch} val={r['val_accuracy']:.4f} "
              f"params={r['params']} {r['train_seconds']:.1f}s", flush=True)
    if limit < len(archs):
        return
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "name": "mnist-tabular-108",
        "space": SPACE,
        "protocol": {"train_images": TRAIN, "val_images": VAL, "epochs": 1, "batch_size": 50,
                     "optimizer": "Adam(lr=2e-3)", "seed": 0, "torch_threads": 1,
                     "note": "built on a shared 2-core machine; train_seconds are indicative"},
        "records": records,
    }, indent=0))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
