"""Speedup 2: sizes written as numbers, reductions over channels, the report of every asked layer."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchslim.pruning import L1NormPruner
from torchslim.speedup import ModelSpeedup, load, save


class SeedNet(nn.Module):
    """The seeds' 002 Net: the flatten is written as ``x.view(-1, 4 * 4 * 50)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5, 1)
        self.conv2 = nn.Conv2d(20, 50, 5, 1)
        self.fc1 = nn.Linear(4 * 4 * 50, 500)
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2, 2)
        x = x.view(-1, 4 * 4 * 50)
        return self.fc2(F.relu(self.fc1(x)))


SEED_CONFIG = [{"op_types": ["Linear", "Conv2d"], "sparsity_per_layer": 0.5}, {"exclude": True, "op_names": ["fc2"]}]


def test_seed_002_literal_view_is_rewritten(tmp_path):
    model = SeedNet()
    _, masks = L1NormPruner(model, SEED_CONFIG).compress()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        masked = model(x)
    speedup = ModelSpeedup(model, torch.randn(1, 1, 28, 28), masks)
    speedup.speedup_model()
    assert (model.conv1.out_channels, model.conv2.out_channels) == (10, 25)
    assert (model.fc1.in_features, model.fc1.out_features) == (400, 250)
    assert not speedup.report.shortfalls() and not speedup.report.barriers
    with torch.no_grad():
        torch.testing.assert_close(model(x), masked)
        torch.testing.assert_close(copy.deepcopy(model)(x), masked)
    save(model, tmp_path / "slim.pt")
    with torch.no_grad():
        torch.testing.assert_close(load(tmp_path / "slim.pt", model=SeedNet())(x), masked)
        torch.testing.assert_close(load(tmp_path / "slim.pt", weights_only=False)(x), masked)


class Flat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8 * 4 * 4, 2)

    def forward(self, x):
        return self.fc(self.conv(x).reshape(-1, 8 * 4 * 4))


class Untraceable(nn.Module):
    """Data-dependent control flow: only the children are traced, so ``Flat``'s literal stays."""

    def __init__(self) -> None:
        super().__init__()
        self.body = Flat()

    def forward(self, x):
        if x.sum() > -1e9:
            return self.body(x)
        return self.body(-x)


def test_literal_in_a_separately_traced_part_is_a_barrier_naming_the_line():
    model = Untraceable()
    _, masks = L1NormPruner(model, [{"op_names": ["body.conv"], "sparse_ratio": 0.5}]).compress()
    speedup = ModelSpeedup(model, torch.randn(1, 3, 6, 6), masks)
    speedup.speedup_model()
    assert model.body.conv.out_channels == 8
    (barrier,) = speedup.report.barriers
    assert "test_written_sizes.py" in barrier.reason and "reshape(-1, 8 * 4 * 4)" in barrier.reason
    assert [r.name for r in speedup.report.shortfalls()] == ["body.conv"]  # asked, unchanged, listed


class TwoSums(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3)
        self.conv2 = nn.Conv2d(3, 16, 3)

    def forward(self, x):
        return torch.sum(self.conv1(x), dim=1) + torch.sum(self.conv2(x), dim=1)


def test_reduction_over_channels_ends_the_group():
    model = TwoSums()
    dead = torch.arange(16) % 2 == 0  # channel 0 is among the removed ones
    masks = {n: {"weight": (~dead).float().reshape(16, 1, 1, 1).expand(16, 3, 3, 3).clone(),
                 "bias": (~dead).float()} for n in ("conv1", "conv2")}
    x = torch.randn(2, 3, 8, 8)
    for name, m in masks.items():
        getattr(model, name).weight.data *= m["weight"]
        getattr(model, name).bias.data *= m["bias"]
    with torch.no_grad():
        expected = model(x)
    ModelSpeedup(model, x, masks).speedup_model()
    assert model.conv1.out_channels == 8 and model.conv2.out_channels == 8
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("op, kept", [(lambda t: t.norm(dim=1), 8), (lambda t: t.sum(1, keepdim=True), 8),
                                      (lambda t: t.mean(1), 16), (lambda t: t.amax(dim=1), 16)])
def test_zeros_leave_sum_and_norm_unchanged_but_not_mean_or_max(op, kept):
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 3)

        def forward(self, x):
            return op(self.conv(x))

    model = Net()
    _, masks = L1NormPruner(model, [{"op_names": ["conv"], "sparse_ratio": 0.5}]).compress()
    model.conv.bias.data.zero_()
    ModelSpeedup(model, torch.randn(1, 3, 8, 8), masks).speedup_model()  # checked against the masked model
    assert model.conv.out_channels == kept
