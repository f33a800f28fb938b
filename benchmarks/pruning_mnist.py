"""Every pruner at 50%, 70% and 90% sparsity on LeNet + the embedded MNIST, same training budget.

Protocol: the dense LeNet is trained once; every run starts from a copy of its weights and
gets the same number of optimizer steps (``--epochs`` passes over the 8,000 training images).
One-shot pruners prune first and fine-tune for the whole budget; schedules and movement
pruning prune *during* that budget (finishing at ~60%) and fine-tune for the rest.
Config for all: Conv2d + Linear layers except the classifier ``fc2``.

Remaining params: structured results are shrunk with ``ModelSpeedup`` and counted; fine-
grained ones count non-zero parameters. Slim needs BatchNorm: it runs on LeNet with a BN
after conv1, conv2 and fc1 (its own dense model, trained the same way).

Honest figures: every (pruner, sparsity) runs with ``--seeds`` seeds (default 5; the dense
model is retrained per seed); 1,000 of the 8,000 training images are held out as a validation
split (the "one-shot" column is measured there); the test split is touched once per run, at the
end. Cells are mean ± sd over seeds. No choice is made from test results.

Writes ``results/pruning_mnist.json`` (one row per run) and ``results/pruning_mnist.md``.

Run: ``python benchmarks/pruning_mnist.py [--epochs 2] [--seeds 5] [--only L1Norm Taylor] [--quick]``
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
from torch.utils.data import DataLoader, Subset

from torchslim import TorchEvaluator
from torchslim.datasets import load_mnist
from torchslim.models import LeNet
from torchslim.pruning import (
    ActivationAPoZRankPruner, ActivationMeanRankPruner, AGPPruner, FPGMPruner, L1NormPruner, L2NormPruner,
    LevelPruner, LinearPruner, LotteryTicketPruner, MovementPruner, SlimPruner, TaylorPruner,
)
from torchslim.utils.metrics import count_nonzero_params, count_params
from torchslim.utils.training import evaluate_accuracy

from results_io import load, machine, mean_sd, save

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


def run_one(name: str, dense: nn.Module, sparsity: float, loader: DataLoader, val, test, steps: int) -> dict:
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
        one_shot_acc = evaluate_accuracy(model, val)
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
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--val", type=int, default=1000, help="training images held out for validation")
    parser.add_argument("--only", nargs="*", help="subset of pruner names")
    parser.add_argument("--sparsities", default=",".join(str(s) for s in SPARSITIES))
    parser.add_argument("--quick", action="store_true", help="L1Norm and AGP(Level) at 70%%, 2 seeds, 1 epoch")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.quick:
        args.only, args.sparsities, args.seeds, args.epochs, args.dense_epochs = (
            ["L1Norm", "AGP(Level)"], "0.7", 2, 1, 2)
    torch.set_num_threads(args.threads)
    full_train, test = load_mnist()
    order = torch.randperm(len(full_train), generator=torch.Generator().manual_seed(1234)).tolist()
    train_set, val = Subset(full_train, order[args.val:]), Subset(full_train, order[:args.val])
    names = args.only or list(PRUNERS)
    sparsities = [float(s) for s in args.sparsities.split(",")]
    runs, dense_rows = [], []
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        loader = DataLoader(train_set, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(seed))
        steps = args.epochs * len(loader)
        dense = {False: train_dense(LeNet(), loader, args.dense_epochs)}
        if any("Slim" in n for n in names):
            torch.manual_seed(seed)
            dense[True] = train_dense(LeNetBN(), loader, args.dense_epochs)
        dense_rows.append({"seed": seed, "val_acc": evaluate_accuracy(dense[False], val),
                           "params": count_params(dense[False])})
        for name in names:
            for sparsity in sparsities:
                torch.manual_seed(seed)
                r = run_one(name, dense["Slim" in name], sparsity, loader, val, test, steps)
                runs.append({"pruner": name, "structured": PRUNERS[name][0], "sparsity": sparsity, "seed": seed,
                             "test_acc": r["acc"], "one_shot_val_acc": r["one_shot"], "params": r["params"],
                             "seconds": r["seconds"]})
                print(seed, name, sparsity, r, flush=True)
    data = {"machine": machine(shared=True), "epochs": args.epochs, "dense_epochs": args.dense_epochs,
            "steps": steps, "seeds": args.seeds, "train": len(train_set), "val": len(val), "test": len(test),
            "sparsities": sparsities, "pruners": names, "dense": dense_rows, "runs": runs}
    save("pruning_mnist", data, render(data))
    print(render(data))


def render(d: dict) -> str:
    lines = [
        "## Every pruner at 50 / 70 / 90 % on LeNet",
        "",
        f"Written by `benchmarks/pruning_mnist.py` from `results/pruning_mnist.json`. {d['machine']}. "
        f"Embedded MNIST: {d['train']} training images, {d['val']} held out for validation, {d['test']} test "
        f"images touched once per run. Dense LeNet retrained per seed ({d['dense_epochs']} epochs; validation "
        f"accuracy {mean_sd([r['val_acc'] for r in d['dense']])}); every run gets {d['epochs']} epochs "
        f"({d['steps']} steps) from the dense weights. Cells: test accuracy % mean ± sd over {d['seeds']} seeds "
        "(one-shot: validation accuracy right after pruning, before fine-tuning) / remaining params.",
        "",
        "| pruner | kind | " + " | ".join(f"{int(s * 100)}%" for s in d["sparsities"]) + " |",
        "|---|---|" + "---|" * len(d["sparsities"]),
    ]
    for name in d["pruners"]:
        cells = []
        for sparsity in d["sparsities"]:
            rs = [r for r in d["runs"] if r["pruner"] == name and r["sparsity"] == sparsity]
            if not rs:
                cells.append("-")
                continue
            shot = [r["one_shot_val_acc"] for r in rs if r["one_shot_val_acc"] is not None]
            shot_text = f" (one-shot {sum(shot) / len(shot):.1f})" if shot else ""
            cells.append(f"{mean_sd([r['test_acc'] for r in rs])}{shot_text} / {rs[0]['params']:,}")
        kind = "structured" if any(r["structured"] for r in d["runs"] if r["pruner"] == name) else "fine-grained"
        lines.append(f"| {name} | {kind} | " + " | ".join(cells) + " |")
    missing = [n for n in PRUNERS if n not in d["pruners"]]
    if missing:
        lines += ["", f"Not run in this invocation: {', '.join(missing)}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
