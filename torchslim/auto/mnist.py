"""The embedded-MNIST workflow of ``torchslim compress``: splits, dense training, fine-tuning
(optionally distilled from the dense model). Choices are made on a validation split carved
out of the training part; the test split is touched once, for the final figure."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, random_split

from torchslim.datasets import load_mnist
from torchslim.utils.training import evaluate_accuracy, train_epochs


def mnist_splits(seed: int = 0, val_size: int = 1000, limit: int | None = None) -> tuple[Dataset, Dataset, Dataset]:
    """``(train, validation, test)``: the embedded 8,000 training images split by ``seed``."""
    train, test = load_mnist()
    if limit is not None:
        train = Subset(train, range(min(limit, len(train))))
        val_size = min(val_size, len(train) // 5)
    fit, val = random_split(train, [len(train) - val_size, val_size], generator=torch.Generator().manual_seed(seed))
    return fit, val, test


def accuracy_on(data: Dataset) -> Callable[[nn.Module], float]:
    """``evaluate_fn`` for :func:`torchslim.auto.compress`: top-1 accuracy (%) on ``data``."""
    loader = DataLoader(data, batch_size=1000)
    return lambda model: evaluate_accuracy(model, loader)


def finetune(model: nn.Module, data: Dataset, epochs: int, *, teacher: nn.Module | None = None,
             temperature: float = 4.0, alpha: float = 0.5, lr: float = 1e-3, seed: int = 0,
             progress: bool = False) -> nn.Module:
    """Adam fine-tuning; with ``teacher``, the loss mixes cross-entropy and the KL divergence
    to the teacher's softened logits (Hinton et al.), weighted by ``alpha``."""
    if teacher is None:
        return train_epochs(model, data, epochs, lr=lr, seed=seed, progress=progress, desc="fine-tune")
    teacher.eval()
    loader = DataLoader(data, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            with torch.no_grad():
                soft = F.log_softmax(teacher(x) / temperature, dim=1)
            out = model(x)
            kd = F.kl_div(F.log_softmax(out / temperature, dim=1), soft, log_target=True,
                          reduction="batchmean") * temperature ** 2
            loss = (1 - alpha) * F.cross_entropy(out, y) + alpha * kd
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model


__all__ = ["accuracy_on", "finetune", "mnist_splits"]
