"""A tabular NAS benchmark shipped with torchslim: 108 small MNIST CNNs, all trained.

``mnist_tabular.json`` holds every architecture of :class:`MnistTabularSpace` trained
once (``benchmarks/nas_tabular_build.py``: 1 epoch on 4,000 embedded MNIST images, seed
0) with its validation and test accuracy and parameter count. Strategies evaluated with
:meth:`TabularBenchmark.evaluator` look accuracies up instead of training, so a search
takes seconds and its result can be compared with the known optimum.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchslim.experiment import trial
from torchslim.experiment.searchspace import Categorical
from torchslim.nas.evaluator import FunctionalEvaluator
from torchslim.nas.nn.base import ModelSpace, Mutable, check_sample

__all__ = ["SPACE", "TabularNet", "MnistTabularSpace", "TabularBenchmark", "TABLE"]

TABLE = Path(__file__).parent / "mnist_tabular.json"

# label -> values, in declaration order
SPACE: dict[str, list[Any]] = {
    "width1": [8, 16, 32],
    "conv2": [0, 1, 2],          # 0: conv 3x3, 1: conv 5x5, 2: depthwise-separable 3x3
    "width2": [16, 32, 64],
    "feature": [32, 128],
    "pool": ["max", "avg"],
}


class TabularNet(nn.Module):
    """One architecture of the space as a plain module."""

    def __init__(self, arch: Mapping[str, Any]) -> None:
        super().__init__()
        w1, w2 = arch["width1"], arch["width2"]
        self.conv1 = nn.Conv2d(1, w1, 3, padding=1)
        self.conv2 = [
            lambda: nn.Conv2d(w1, w2, 3, padding=1),
            lambda: nn.Conv2d(w1, w2, 5, padding=2),
            lambda: nn.Sequential(nn.Conv2d(w1, w1, 3, padding=1, groups=w1),
                                  nn.Conv2d(w1, w2, 1)),
        ][arch["conv2"]]()
        self.pool = nn.MaxPool2d(2) if arch["pool"] == "max" else nn.AvgPool2d(2)
        self.fc1 = nn.Linear(w2 * 7 * 7, arch["feature"])
        self.fc2 = nn.Linear(arch["feature"], 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


class _TabularChoice(Mutable):
    """All five decisions at once; frozen it is :class:`TabularNet` (a custom mutable)."""

    def __init__(self) -> None:
        super().__init__()
        self.choices = [Categorical(values, label) for label, values in SPACE.items()]
        self.nets: dict[str, nn.Module] = {}

    def decisions(self) -> list[Categorical]:
        return self.choices

    def freeze(self, sample: Mapping[str, Any]) -> nn.Module:
        return TabularNet(sample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # unfrozen: the active architecture, one net per sample (no weight sharing)
        arch = {c.label: self.value(c) for c in self.choices}
        key = json.dumps(arch, sort_keys=True)
        if key not in self.nets:
            self.nets[key] = TabularNet(arch)
        return self.nets[key](x)


class MnistTabularSpace(ModelSpace):
    """The benchmark's 108-architecture space (3 x 3 x 3 x 2 x 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _TabularChoice()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@lru_cache(maxsize=2)
def _load(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _key(sample: Mapping[str, Any]) -> str:
    return json.dumps({k: sample[k] for k in SPACE}, sort_keys=True)


class TabularBenchmark:
    """Look-ups into the shipped table: accuracy, parameters, the optimum."""

    def __init__(self, path: str | Path = TABLE) -> None:
        data = _load(str(path))
        self.protocol = data["protocol"]
        self.records = {_key(r["arch"]): r for r in data["records"]}
        self.space = MnistTabularSpace()
        self.choices = self.space.simplify()

    def query(self, sample: Mapping[str, Any], metric: str = "val_accuracy") -> float:
        """The tabulated ``metric`` of architecture ``sample``."""
        return self.records[_key(check_sample(self.choices, sample))][metric]

    def best(self, metric: str = "val_accuracy",
             max_params: float | None = None) -> tuple[dict[str, Any], float]:
        """The optimum (architecture, value), optionally under a parameter budget."""
        rows = [r for r in self.records.values()
                if max_params is None or r["params"] <= max_params]
        top = max(rows, key=lambda r: r[metric])
        return dict(top["arch"]), top[metric]

    def evaluator(self, metric: str = "val_accuracy") -> FunctionalEvaluator:
        """An evaluator that reports the tabulated value instead of training."""
        return FunctionalEvaluator(_report_lookup, benchmark=self, metric=metric)


def _report_lookup(model: nn.Module, benchmark: TabularBenchmark, metric: str) -> None:
    trial.report_final_result(benchmark.query(model.frozen_sample, metric))
