"""Shared NAS fixtures: an isolated experiments folder and a small cell space."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from torchslim.datasets import load_mnist
from torchslim.experiment import store as st
from torchslim.nas import Cell, Classification, ModelSpace


@pytest.fixture
def exp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "experiments"
    monkeypatch.setenv(st.ENV_EXPERIMENTS_DIR, str(folder))
    return folder


class TinyCellSpace(ModelSpace):
    """stem -> DARTS cell (3 candidate ops, 2 nodes x 2 edges) -> linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4))
        self.cell = Cell({"conv": lambda: nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()),
                          "skip": lambda: nn.Identity(), "pool": lambda: nn.MaxPool2d(3, 1, 1)},
                         num_nodes=2, num_ops_per_node=2, label="cell")
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.adaptive_avg_pool2d(self.cell(self.stem(x)), 1).flatten(1))


@pytest.fixture
def cell_space() -> TinyCellSpace:
    torch.manual_seed(0)
    return TinyCellSpace()


@pytest.fixture
def tiny_classification() -> Classification:
    train, _ = load_mnist()
    return Classification(DataLoader(Subset(train, range(128)), batch_size=32),
                          DataLoader(Subset(train, range(7000, 7128)), batch_size=64),
                          max_epochs=1)
