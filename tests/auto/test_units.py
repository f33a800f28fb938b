"""The cost model predicts params and MACs of the built model exactly (channel rounding included)."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from torchslim.auto.units import CostModel
from torchslim.errors import ConfigError
from torchslim.models import LeNet5
from torchslim.pruning import L1NormPruner
from torchslim.speedup import ModelSpeedup
from torchslim.utils.metrics import count_macs, count_params


class TinyNet(nn.Module):
    """A residual stage and an inverted-residual (depthwise) block: the couplings of ResNet and MobileNetV2."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(16, 24, 3, padding=1), nn.BatchNorm2d(24), nn.ReLU(),
                                   nn.Conv2d(24, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.expand = nn.Sequential(nn.Conv2d(16, 48, 1), nn.BatchNorm2d(48), nn.ReLU6())
        self.depthwise = nn.Sequential(nn.Conv2d(48, 48, 3, padding=1, groups=48), nn.BatchNorm2d(48), nn.ReLU6())
        self.project = nn.Sequential(nn.Conv2d(48, 32, 1), nn.BatchNorm2d(32))
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        x = self.project(self.depthwise(self.expand(x)))
        return self.fc(x.mean((2, 3)))


def built(model, cost, sparsity, x):
    model = copy.deepcopy(model)
    pruner = L1NormPruner(model, cost.config_list(sparsity))
    _, masks = pruner.compress()
    pruner.unwrap_model()
    ModelSpeedup(model, x, masks).speedup_model()
    return model


@pytest.mark.parametrize("net,shape", [(LeNet5, (1, 1, 28, 28)), (TinyNet, (1, 3, 16, 16))])
def test_cost_model_matches_the_built_model(net, shape):
    torch.manual_seed(0)
    model = net().eval()
    x = torch.randn(shape)
    cost = CostModel(model, x)
    assert cost.evaluate("params", np.zeros(len(cost.units))) == count_params(model)
    assert cost.evaluate("macs", np.zeros(len(cost.units))) == count_macs(model, x)
    rng = np.random.default_rng(0)
    sparsity = rng.uniform(0.1, 0.8, len(cost.units))
    slim = built(model, cost, sparsity, x)
    assert cost.evaluate("params", sparsity) == count_params(slim)
    assert cost.evaluate("macs", sparsity) == count_macs(slim, x)


def test_units_follow_coupling_and_leave_the_output_whole():
    cost = CostModel(TinyNet(), torch.randn(1, 3, 16, 16))
    members = sorted(sorted(u.members) for u in cost.units)
    # the residual stream is one unit; the depthwise conv follows its expansion; fc feeds the output
    assert members == [["block.0"], ["block.3", "stem.0"], ["depthwise.0", "expand.0"], ["project.0"]]
    lenet = CostModel(LeNet5(), torch.randn(1, 1, 28, 28))
    assert [u.members for u in lenet.units] == [["conv1"], ["conv2"], ["fc1"], ["fc2"]]


def test_exclude_and_unknown_names():
    cost = CostModel(LeNet5(), torch.randn(1, 1, 28, 28), exclude=["fc1"])
    assert [u.members for u in cost.units] == [["conv1"], ["conv2"], ["fc2"]]
    with pytest.raises(ConfigError, match="fc9"):
        CostModel(LeNet5(), torch.randn(1, 1, 28, 28), exclude=["fc9"])


def test_config_list_prunes_whole_channels_exactly():
    cost = CostModel(LeNet5(), torch.randn(1, 1, 28, 28))
    config = cost.config_list([5 / 6, 0.0, 0.5, 0.25])
    assert [e["op_names"] for e in config] == [["conv1"], ["fc1"], ["fc2"]]
    assert [d["kept"] for d in cost.describe([5 / 6, 0.0, 0.5, 0.25])] == [1, 16, 60, 63]
