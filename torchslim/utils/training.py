"""Plain training / evaluation loops used by the demo, examples and benchmarks."""
from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset


def _progress(iterable: Iterable, desc: str, enabled: bool, total: int | None = None) -> Iterable:
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    # disable=None: bars on a terminal only, so logs and CI output stay readable
    return tqdm(iterable, desc=desc, total=total, leave=False, disable=None)


def train_epochs(
    model: nn.Module,
    data: Dataset | DataLoader,
    epochs: int = 1,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = False,
    desc: str = "train",
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    after_step: Callable[[], None] | None = None,
) -> nn.Module:
    """Train ``model`` for ``epochs`` (Adam by default); returns the model."""
    loader = data if isinstance(data, DataLoader) else DataLoader(
        data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for epoch in range(epochs):
        for x, y in _progress(loader, f"{desc} {epoch + 1}/{epochs}", progress, len(loader)):
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step()
    return model


@torch.no_grad()
def evaluate_accuracy(model: nn.Module | Callable, data: Dataset | DataLoader, batch_size: int = 500) -> float:
    """Top-1 accuracy in percent."""
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=batch_size)
    if isinstance(model, nn.Module):
        model.eval()
    correct = total = 0
    for x, y in loader:
        correct += int((model(x).argmax(dim=1) == y).sum())
        total += len(y)
    return 100.0 * correct / max(total, 1)
