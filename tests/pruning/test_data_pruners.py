"""Data-driven pruners rank channels right on constructed cases where magnitude would not."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from torchslim import TorchEvaluator
from torchslim.errors import ConfigError
from torchslim.pruning import (
    ActivationAPoZRankPruner, ActivationMeanRankPruner, DataPruner, L1NormPruner, MovementPruner, SlimPruner,
    TaylorFOWeightPruner, TaylorPruner,
)


def _evaluator(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float = 0.0, loss=F.mse_loss,
               batch_size: int = 32) -> TorchEvaluator:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size)
    return TorchEvaluator.from_dataloader(loader, opt, lambda batch, m: loss(m(batch[0]), batch[1]))


class TwoLayer(nn.Module):
    """layer (pruned) -> fixed head; the head ignores some of the layer's channels."""

    def __init__(self, weight: list[list[float]], bias: list[float], head: list[float]) -> None:
        super().__init__()
        self.layer = nn.Linear(len(weight[0]), len(weight))
        self.head = nn.Linear(len(weight), 1, bias=False)
        with torch.no_grad():
            self.layer.weight.copy_(torch.tensor(weight))
            self.layer.bias.copy_(torch.tensor(bias))
            self.head.weight.copy_(torch.tensor([head]))
        self.head.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.layer(x))).squeeze(1)


def _kept(masks, name: str = "layer") -> list[int]:
    return masks[name]["weight"].amax(1).nonzero().flatten().tolist()


CFG = [{"op_names": ["layer"], "sparse_ratio": 1 / 3}]


def test_taylor_drops_the_large_channel_the_loss_ignores():
    torch.manual_seed(0)
    x = torch.rand(64, 2)
    # channel 0 has the largest weights but the head ignores it; channel 1 is small but used
    model = TwoLayer([[5.0, 5.0], [0.1, 0.1], [1.0, 1.0]], [0.0, 0.0, 0.0], [0.0, 1.0, 1.0])
    _, masks = TaylorPruner(model, CFG, _evaluator(model, x, torch.zeros(64)), training_steps=2).compress()
    assert _kept(masks) == [1, 2]
    assert masks["layer"]["bias"].tolist() == [0.0, 1.0, 1.0]
    # magnitude would have kept channel 0
    other = TwoLayer([[5.0, 5.0], [0.1, 0.1], [1.0, 1.0]], [0.0, 0.0, 0.0], [0.0, 1.0, 1.0])
    assert _kept(L1NormPruner(other, CFG).compress()[1]) == [0, 2]


def test_apoz_drops_the_dead_channel_and_mean_rank_the_quiet_one():
    x = torch.rand(64, 2)  # non-negative inputs
    weight = [[-5.0, -5.0], [0.1, 0.1], [0.2, 0.2]]  # channel 0: large but always negative -> dead
    model = TwoLayer(weight, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    _, masks = ActivationAPoZRankPruner(model, CFG, _evaluator(model, x, torch.zeros(64)), training_steps=2).compress()
    assert _kept(masks) == [1, 2]

    # all channels alive; mean activation ranks 3 > 2 > 1 by bias
    model = TwoLayer([[0.0, 0.0]] * 3, [3.0, 1.0, 2.0], [1.0, 1.0, 1.0])
    pruner = ActivationMeanRankPruner(model, [{"op_names": ["layer"], "sparse_ratio": 0.34}],
                                      _evaluator(model, x, torch.zeros(64)), training_steps=1)
    assert _kept(pruner.compress()[1]) == [0, 2]


def test_activation_statistics_follow_conv_channels():
    conv = nn.Conv2d(1, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([1.0, -1.0, 2.0, -2.0]))  # channels 1 and 3 are dead after relu
    model = nn.Sequential(conv, nn.Flatten(), nn.Linear(4 * 5 * 5, 1))
    x = torch.randn(32, 1, 5, 5)
    ev = _evaluator(model, x, torch.zeros(32), loss=lambda out, y: F.mse_loss(out.squeeze(1), y))
    _, masks = ActivationAPoZRankPruner(model, [{"op_names": ["0"], "sparse_ratio": 0.5}], ev, 1).compress()
    assert masks["0"]["weight"].flatten(1).amax(1).tolist() == [1.0, 0.0, 1.0, 0.0]


class BNNet(nn.Module):
    """fc -> BN -> head; the head reads BN channels 0 and 2 only (frozen)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)
        self.head = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]))
            self.bn.weight.copy_(torch.tensor([1.0, 1.5, 1.0, 1.5]))  # useless channels start larger
        self.head.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(self.fc(x)))


@pytest.mark.parametrize("scale, kept", [(0.0, [1, 3]), (0.3, [0, 2])])
def test_slim_regularisation_makes_useless_scaling_factors_lose(scale, kept):
    torch.manual_seed(0)
    x = torch.randn(256, 3)
    y = x @ torch.tensor([[0.3, 0.0], [-0.4, 0.3], [0.0, 0.4]])
    model = BNNet()
    ev = _evaluator(model, x, y, lr=0.3, batch_size=64)
    pruner = SlimPruner(model, [{"op_types": ["BatchNorm1d"], "sparse_ratio": 0.5}], ev, training_steps=30,
                        regular_scale=scale)
    _, masks = pruner.compress()
    assert masks["bn"]["weight"].nonzero().flatten().tolist() == kept  # without the penalty: wrong channels
    assert torch.equal(masks["bn"]["bias"], masks["bn"]["weight"])


def test_slim_refuses_layers_without_scaling_factors():
    with pytest.raises(ConfigError, match="BatchNorm2d"):
        SlimPruner(nn.Sequential(nn.Linear(2, 2)), [{"op_types": ["Linear"], "sparse_ratio": 0.5}])


def test_movement_prunes_weights_moving_towards_zero_not_the_smallest():
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = x @ torch.tensor([1.0, 1.0, 0.0, 0.0])
    model = nn.Sequential(nn.Linear(4, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.5, 0.5, 2.0, 2.0]]))  # magnitude would drop the first two
    ev = _evaluator(model, x, y.unsqueeze(1), lr=0.01)
    pruner = MovementPruner(model, [{"op_types": ["Linear"], "sparse_ratio": 0.5}], ev, warmup_step=2,
                            cooldown_begin_step=12, update_interval=5)
    _, masks = pruner.compress(max_steps=16)
    assert masks["0"]["weight"].tolist() == [[1.0, 1.0, 0.0, 0.0]]
    assert pruner.frozen and ev.global_step == 16


def test_movement_warns_when_training_stops_before_cooldown():
    model = nn.Sequential(nn.Linear(4, 2))
    ev = _evaluator(model, torch.randn(64, 4), torch.randn(64, 2), lr=0.01)
    pruner = MovementPruner(model, [{"op_types": ["Linear"], "sparse_ratio": 0.5}], ev, 0, 100)
    with pytest.warns(UserWarning, match="before cooldown_begin_step"):
        _, masks = pruner.compress(max_steps=3)
    assert masks["0"]["weight"].mean() == 0.5


def test_v2_positional_form_and_global_allocation_with_cap():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
    x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
    steps = []

    def trainer(model, optimizer, criterion, epoch):
        for i in range(0, 64, 16):
            optimizer.zero_grad()
            criterion(model(x[i:i + 16]), y[i:i + 16]).backward()
            optimizer.step()
            steps.append(i)

    cfg = [{"op_names": ["0", "2"], "total_sparsity": 0.5, "max_sparsity_per_layer": 0.6}]
    pruner = TaylorFOWeightPruner(model, cfg, torch.optim.SGD(model.parameters(), lr=0.01), trainer,
                                  F.cross_entropy, 6)
    _, masks = pruner.compress()
    assert len(steps) == 6
    pruned = {n: 1 - float(masks[n]["weight"].amax(1).mean()) for n in ("0", "2")}
    assert max(pruned.values()) <= 0.6 + 1e-6  # the per-layer cap holds
    # one budget in parameters over both layers: 50% of 384, short of it by less than one channel
    removed = pruned["0"] * 16 * 8 + pruned["2"] * 16 * 16
    assert 192 - 16 < removed <= 192


def test_dependency_group_shares_channel_choice():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(4, 6))  # 0 and 2 feed a (virtual) add
    model.forward = lambda x: model[1](model[0](x)) + model[2](x)  # type: ignore[method-assign]
    ev = _evaluator(model, torch.randn(64, 4), torch.randn(64, 6), lr=0.0)
    cfg = [{"op_names": ["0", "2"], "sparse_ratio": 0.5, "dependency_group_id": 1}]
    _, masks = DataPruner(model, cfg, ev, 2, importance="taylor").compress()
    assert torch.equal(masks["0"]["weight"], masks["2"]["weight"]) and masks["0"]["weight"].mean() == 0.5


def test_needs_an_evaluator_and_says_so():
    pruner = TaylorPruner(nn.Sequential(nn.Linear(2, 2)), [{"op_types": ["Linear"], "sparse_ratio": 0.5}])
    with pytest.raises(ValueError, match="TorchEvaluator"):
        pruner.compress()
    with pytest.raises(RuntimeError, match="needs training data"):
        L1NormPruner(nn.Sequential(nn.Linear(2, 2)), [{"op_types": ["Linear"], "sparse_ratio": 0.5}],
                     importance="taylor").compress()


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.a(x))
        y = F.relu(self.b(y) + y)  # a and b are coupled by the add
        return self.head(y.mean((2, 3)))


def test_dependency_aware_mode_traces_coupled_layers():
    pytest.importorskip("torchslim.graph.groups")
    torch.manual_seed(0)
    model = Residual()
    x = torch.randn(32, 3, 6, 6)
    ev = _evaluator(model, x, torch.randint(0, 2, (32,)), loss=F.cross_entropy)
    cfg = [{"op_types": ["Conv2d"], "sparse_ratio": 0.5}]
    pruner = TaylorPruner(model, cfg, ev, training_steps=1, mode="dependency_aware", dummy_input=x[:2])
    _, masks = pruner.compress()
    keep_a, keep_b = (masks[n]["weight"].flatten(1).amax(1) for n in ("a", "b"))
    assert torch.equal(keep_a, keep_b) and keep_a.sum() == 4
