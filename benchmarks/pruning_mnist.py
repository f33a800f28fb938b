"""Every pruner at 50%, 70% and 90% sparsity on LeNet + the embedded MNIST, same training budget.

Protocol: the dense LeNet is trained once; every run starts from a copy of its weights and
gets the same number of optimizer steps (``--epochs`` passes over the 8,000 training images).
One-shot pruners prune first and fine-tune for the whole budget; schedules and movement
pruning prune *during* that budget (finishing at ~60%) and fine-tune for the rest.
Config for all: Conv2d + Linear layers except the classifier ``fc2``.

Remaining params: structured results are shrunk with ``ModelSpeedup`` and counted; fine-
grained ones count non-zero parameters. Slim needs BatchNorm: it runs on LeNet with a BN
after conv1, conv2 and fc1 (its own dense model, trained the same way).

Run: ``python benchmarks/pruning_mnist.py [--epochs 2] [--out benchmarks/results/pruning.md]``
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from torchslim import TorchEvaluator
from torchslim.datasets import load_mnist
from torchslim.models import LeNet
from torchslim.pruning import (
    ActivationAPoZRankPruner, ActivationMeanRankPruner, AGPPruner, FPGMPruner, L1NormPruner, L2NormPruner,
    LevelPruner, LinearPruner, LotteryTicketPruner, MovementPruner, SlimPruner, TaylorPruner,
)
from torchslim.utils.metrics import count_nonzero_params, count_params
from torchslim.utils.training import evaluate_accuracy

SPARSITIES = (0.5, 0.7, 0.9)


class LeNetBN(LeNet):
    """LeNet with BatchNorm after conv1, conv2 and fc1 (for Network Slimming)."""

    def __init__(self) -> None:
        super().__init__()
        self.bn1, self.bn2, self.bn3 = nn.BatchNorm2d(20), nn.BatchNorm2d(50), nn.BatchNorm1d(500)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2, 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2, 2)
        x = F.relu(self.bn3(self.fc1(torch.flatten(x, 1))))
        return self.fc2(x)


def step(batch, model):
    return F.cross_entropy(model(batch[0]), batch[1])


# name -> (structured?, builder(model, config, evaluator, budget_steps) -> object with compress)
def _one_shot(cls: type, **kw) -> Callable:
    return lambda model, cfg, ev, steps: cls(model, cfg, **kw)


def _data(cls: type) -> Callable:
    return lambda model, cfg, ev, steps: cls(model, cfg, ev, training_steps=20)


def _schedule(schedule: type, sub: Callable) -> Callable:
    def build(model, cfg, ev, steps):
        times = 10
        return schedule(sub(model, cfg, ev, steps), interval_steps=max(1, int(0.6 * steps) // times),
                        total_times=times, evaluator=ev)

    return build


def _movement(model, cfg, ev, steps):
    return MovementPruner(model, cfg, ev, warmup_step=int(0.1 * steps), cooldown_begin_step=int(0.6 * steps))


PRUNERS: dict[str, tuple[bool, Callable]] = {
    "Level (one-shot)": (False, _one_shot(LevelPruner)),
    "L1Norm": (True, _one_shot(L1NormPruner)),
    "L2Norm": (True, _one_shot(L2NormPruner)),
    "FPGM": (True, _one_shot(FPGMPruner)),
    "Taylor": (True, _data(TaylorPruner)),
    "APoZ": (True, _data(ActivationAPoZRankPruner)),
    "MeanRank": (True, _data(ActivationMeanRankPruner)),
    "Slim (LeNet+BN)": (True, lambda model, cfg, ev, steps: SlimPruner(
        model, [{"op_types": ["BatchNorm2d", "BatchNorm1d"], "sparse_ratio": cfg[0]["sparse_ratio"]}], ev,
        training_steps=steps // 4, regular_scale=1e-4)),
    "Movement": (False, _movement),
    "Linear(Level)": (False, _schedule(LinearPruner, _one_shot(LevelPruner))),
    "AGP(Level)": (False, _schedule(AGPPruner, _one_shot(LevelPruner))),
    "AGP(Taylor)": (True, _schedule(AGPPruner, _data(TaylorPruner))),
    "LotteryTicket(Level)": (False, _schedule(LotteryTicketPruner, _one_shot(LevelPruner))),
}


def remaining_params(model: nn.Module, masks: dict, structured: bool) -> int:
    if not structured:
        return count_nonzero_params(model)
    from torchslim.speedup import ModelSpeedup

    small = ModelSpeedup(copy.deepcopy(model), torch.randn(2, 1, 28, 28), masks).speedup_model()
    return count_params(small)


def run_one(name: str, dense: nn.Module, sparsity: float, loader: DataLoader, test, steps: int) -> dict:
    structured, build = PRUNERS[name]
    model = copy.deepcopy(dense)
    cfg = [{"op_types": ["Conv2d", "Linear"], "exclude_op_names": ["fc2"], "sparse_ratio": sparsity}]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ev = TorchEvaluator.from_dataloader(loader, opt, step)
    pruner = build(model, cfg, ev, steps)
    t0 = time.time()
    if isinstance(pruner, (MovementPruner, AGPPruner, LinearPruner, LotteryTicketPruner)):
        pruner.compress(max_steps=steps)  # prunes while training: the budget includes fine-tuning
        one_shot_acc = None
    else:
        pruner.compress()
        one_shot_acc = evaluate_accuracy(model, test)
        ev.bind_model(model)
        ev.train(max_steps=steps)
    masks = pruner.get_masks()
    pruner.unwrap_model()
    return {"acc": evaluate_accuracy(model, test), "one_shot": one_shot_acc,
            "params": remaining_params(model, masks, structured), "seconds": time.time() - t0}


def train_dense(model: nn.Module, loader: DataLoader, epochs: int) -> nn.Module:
    ev = TorchEvaluator.from_dataloader(loader, torch.optim.Adam(model.parameters(), lr=1e-3), step)
    ev.bind_model(model)
    ev.train(max_epochs=epochs)
    ev.close()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2, help="training budget per run (fine-tuning included)")
    parser.add_argument("--dense-epochs", type=int, default=4)
    parser.add_argument("--only", nargs="*", help="subset of pruner names")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    train_set, test = load_mnist()
    loader = DataLoader(train_set, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    steps = args.epochs * len(loader)
    dense = {False: train_dense(LeNet(), loader, args.dense_epochs)}
    names = args.only or list(PRUNERS)
    if any("Slim" in n for n in names):
        torch.manual_seed(0)
        dense[True] = train_dense(LeNetBN(), loader, args.dense_epochs)
    lines = [
        f"Dense LeNet: {count_params(dense[False]):,} params, {evaluate_accuracy(dense[False], test):.2f}% "
        f"({args.dense_epochs} epochs). Every run: {args.epochs} epochs ({steps} steps) from the dense weights.",
        "" if True not in dense else f"Dense LeNet+BN (Slim only): {count_params(dense[True]):,} params, "
        f"{evaluate_accuracy(dense[True], test):.2f}%.",
        "",
        "| pruner | kind | " + " | ".join(f"{int(s * 100)}%: acc / params" for s in SPARSITIES) + " |",
        "|---|---|" + "---|" * len(SPARSITIES),
    ]
    for name in names:
        cells = []
        for sparsity in SPARSITIES:
            r = run_one(name, dense["Slim" in name], sparsity, loader, test, steps)
            shot = f" (one-shot {r['one_shot']:.1f})" if r["one_shot"] is not None else ""
            cells.append(f"{r['acc']:.2f}%{shot} / {r['params']:,}")
            print(name, sparsity, r, flush=True)
        kind = "structured" if PRUNERS[name][0] else "fine-grained"
        lines.append(f"| {name} | {kind} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
