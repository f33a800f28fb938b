"""Evaluators: how a trial turns an architecture into a number (NNI's ``nni.nas.evaluator``).

- :class:`FunctionalEvaluator` calls ``fn(model, **kwargs)``; inside, ``torchslim.report_*``
  (NNI's ``nni.report_*``) report results.
- :class:`Classification` trains and validates with plain PyTorch loops; one-shot
  strategies take their data and epochs from it.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F
# NNI's nni.nas.evaluator.pytorch.DataLoader is torch's, traced so NNI can rebuild it in a trial
# process; torchslim hands evaluators to trials as objects, so torch's own serves.
from torch.utils.data import DataLoader

from torchslim.errors import ConfigError

__all__ = ["Evaluator", "FunctionalEvaluator", "Classification", "DataLoader", "accuracy"]


class Evaluator:
    """Base: ``evaluate(model)`` trains/tests one frozen architecture and reports."""

    def evaluate(self, model: nn.Module) -> Any:
        raise NotImplementedError


class FunctionalEvaluator(Evaluator):
    """``fn(model, **kwargs)``: the function reports with ``torchslim.report_final_result``."""

    def __init__(self, function: Callable[..., Any], **kwargs: Any) -> None:
        if not callable(function):
            raise ConfigError(f"FunctionalEvaluator needs a callable, got {function!r}")
        self.function, self.arguments = function, kwargs

    def evaluate(self, model: nn.Module) -> Any:
        return self.function(model, **self.arguments)

    @property
    def name(self) -> str:
        fn = self.function
        return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def accuracy(model: nn.Module, loader: Iterable[Any]) -> float:
    """Top-1 accuracy of ``model`` over ``loader`` (eval mode, no grad)."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return correct / max(total, 1)


class Classification(Evaluator):
    """Train with cross-entropy for ``max_epochs``, report validation accuracy per epoch.

    NNI's ``Classification(train_dataloaders=..., val_dataloaders=..., max_epochs=...)``
    without Lightning. ``optimizer`` is a torch optimizer class.
    """

    def __init__(self, train_dataloaders: Iterable[Any], val_dataloaders: Iterable[Any], *,
                 max_epochs: int = 1, learning_rate: float = 1e-3, weight_decay: float = 0.0,
                 optimizer: type[torch.optim.Optimizer] = torch.optim.Adam,
                 criterion: Callable[..., torch.Tensor] = F.cross_entropy) -> None:
        if not isinstance(max_epochs, int) or max_epochs < 1:
            raise ConfigError(f"Classification max_epochs is {max_epochs!r}; allowed: int >= 1")
        self.train_dataloaders, self.val_dataloaders = train_dataloaders, val_dataloaders
        self.max_epochs, self.learning_rate = max_epochs, learning_rate
        self.weight_decay = weight_decay
        self.optimizer, self.criterion = optimizer, criterion

    def evaluate(self, model: nn.Module) -> float:
        from torchslim.experiment import trial

        opt = self.optimizer(model.parameters(), lr=self.learning_rate,
                             weight_decay=self.weight_decay)
        acc = 0.0
        for _ in range(self.max_epochs):
            model.train()
            for x, y in self.train_dataloaders:
                opt.zero_grad()
                self.criterion(model(x), y).backward()
                opt.step()
            acc = accuracy(model, self.val_dataloaders)
            trial.report_intermediate_result(acc)
        trial.report_final_result(acc)
        return acc
