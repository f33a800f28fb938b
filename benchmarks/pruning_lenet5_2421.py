"""Structured pruning pipeline: LeNet5 (44,426 params) -> <= 2,421 params, >= 97.5% accuracy.

The seeds (NNI docs) reach 97.25% at 2,421 parameters with one-shot L1 + speedup + 5 epochs
of fine-tuning. Here, on the 8,000 embedded MNIST training images:

1. train the dense LeNet5 (random 2-px shifts, one-cycle Adam); keep a copy as teacher;
2. AGP (cubic schedule) around a Taylor (or L1) channel pruner, driven through
   ``TorchEvaluator`` with a distillation loss from the teacher in the user's training step;
3. ``ModelSpeedup`` shrinks the masked model physically;
4. fine-tune the small model with the same distillation loss.

Run: ``python benchmarks/pruning_lenet5_2421.py [--importance taylor|l1] [--widths 4,8,10,9]``
"""
from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from torchslim import TorchEvaluator
from torchslim.datasets import load_mnist
from torchslim.models import LeNet5
from torchslim.pruning import AGPPruner, L1NormPruner, TaylorPruner
from torchslim.speedup import ModelSpeedup
from torchslim.utils.metrics import count_params
from torchslim.utils.training import evaluate_accuracy

LAYERS = ("conv1", "conv2", "fc1", "fc2")
FULL = {"conv1": 6, "conv2": 16, "fc1": 120, "fc2": 84}


def shift(x: torch.Tensor, pixels: int = 2) -> torch.Tensor:
    """Random translation of a batch by up to ``pixels`` (background value padding)."""
    padded = F.pad(x, (pixels,) * 4, value=float(x.min()))
    i, j = torch.randint(0, 2 * pixels + 1, (2,)).tolist()
    return padded[:, :, i:i + x.shape[2], j:j + x.shape[3]]


def distill_step(teacher: nn.Module | None, temperature: float = 4.0, alpha: float = 0.7):
    """A ``training_step``: cross-entropy on shifted images, plus KL to the teacher if given."""

    def training_step(batch, model):
        x, y = batch
        x = shift(x)
        out = model(x)
        loss = F.cross_entropy(out, y)
        if teacher is None:
            return loss
        with torch.no_grad():
            soft = F.softmax(teacher(x) / temperature, 1)
        kd = F.kl_div(F.log_softmax(out / temperature, 1), soft, reduction="batchmean") * temperature ** 2
        return (1 - alpha) * loss + alpha * kd

    return training_step


def train(model: nn.Module, loader: DataLoader, epochs: int, lr: float, teacher: nn.Module | None = None) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * len(loader))
    ev = TorchEvaluator.from_dataloader(loader, opt, distill_step(teacher), sched, lr_step="step")
    ev.bind_model(model)
    ev.train(max_epochs=epochs)


def config_for(widths: dict[str, int]) -> list[dict]:
    return [{"op_names": [name], "sparse_ratio": (FULL[name] - widths[name]) / FULL[name]}
            for name in LAYERS if widths[name] < FULL[name]]


def run(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    train_set, test_set = load_mnist()
    loader = DataLoader(train_set, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(args.seed))
    t0 = time.time()
    model = LeNet5()
    train(model, loader, args.dense_epochs, 3e-3)
    dense_acc = evaluate_accuracy(model, test_set)
    teacher = copy.deepcopy(model).eval() if args.distill else None

    widths = dict(zip(LAYERS, (int(w) for w in args.widths.split(","))))
    opt = torch.optim.Adam(model.parameters(), lr=args.prune_lr)
    evaluator = TorchEvaluator.from_dataloader(loader, opt, distill_step(teacher))
    cfg = config_for(widths)
    if args.importance == "taylor":
        sub = TaylorPruner(model, cfg, evaluator, training_steps=args.interval)
    else:
        sub = L1NormPruner(model, cfg)
    pruner = AGPPruner(sub, interval_steps=args.interval, total_times=args.times, evaluator=evaluator)
    pruner.compress(max_steps=args.interval * (args.times + 2))
    masked_acc = evaluate_accuracy(model, test_set)
    masks = pruner.get_masks()
    pruner.unwrap_model()
    small = ModelSpeedup(model, torch.randn(2, 1, 28, 28), masks).speedup_model()
    speedup_acc = evaluate_accuracy(small, test_set)
    train(small, loader, args.finetune_epochs, args.finetune_lr, teacher)
    return {
        "dense_params": count_params(LeNet5()), "dense_acc": dense_acc, "masked_acc": masked_acc,
        "speedup_acc": speedup_acc, "params": count_params(small), "acc": evaluate_accuracy(small, test_set),
        "shape": [small.conv1.out_channels, small.conv2.out_channels, small.fc1.out_features,
                  small.fc2.out_features], "seconds": time.time() - t0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--importance", choices=("taylor", "l1"), default="taylor")
    parser.add_argument("--widths", default="4,8,10,9", help="channels kept in conv1,conv2,fc1,fc2")
    parser.add_argument("--dense-epochs", type=int, default=20)
    parser.add_argument("--interval", type=int, default=50)
    parser.add_argument("--times", type=int, default=20)
    parser.add_argument("--prune-lr", type=float, default=1e-3)
    parser.add_argument("--finetune-epochs", type=int, default=30)
    parser.add_argument("--finetune-lr", type=float, default=3e-3)
    parser.add_argument("--no-distill", dest="distill", action="store_false",
                        help="plain cross-entropy instead of distilling from the dense model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    r = run(args)
    print(f"dense LeNet5: {r['dense_params']:,} params, {r['dense_acc']:.2f}%")
    print(f"AGP({args.importance}{', distilled' if args.distill else ''}) masked: {r['masked_acc']:.2f}%  after speedup: {r['speedup_acc']:.2f}%")
    print(f"pruned {r['shape']}: {r['params']:,} params, {r['acc']:.2f}% after fine-tuning ({r['seconds']:.0f}s)")


if __name__ == "__main__":
    main()
