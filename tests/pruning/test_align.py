"""NNI's ``align`` target setting: a BatchNorm's output channels follow its conv's weight mask."""
import pytest
import torch
from torch import nn

from torchslim.errors import ConfigError
from torchslim.pruning import L1NormPruner


def _net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3)).eval()
    net[1].bias.data.uniform_(0.5, 1.0)  # a trained-looking BN: a pruned conv channel is not 0 after it
    return net


ALIGN = {"op_names": ["1"], "target_names": ["_output_"],
         "target_settings": {"_output_": {"align": {"module_name": "0", "target_name": "weight", "dims": [0]}}}}


def test_aligned_batchnorm_zeroes_the_pruned_channels():
    x = torch.randn(2, 3, 8, 8)
    for config, zero in (([{"op_names": ["0"], "sparse_ratio": 0.5}], False),
                         ([{"op_names": ["0"], "sparse_ratio": 0.5}, ALIGN], True)):
        net = _net()
        pruner = L1NormPruner(net, config)
        pruner.compress()
        pruned = pruner.get_masks()["0"]["weight"].sum((1, 2, 3)) == 0
        with torch.no_grad():
            after_bn = net[1](net[0](x))
        assert bool((after_bn[:, pruned] == 0).all()) is zero
    masks = pruner.get_masks()["1"]
    assert torch.equal(masks["weight"], (~pruned).float()) and torch.equal(masks["bias"], (~pruned).float())


def test_align_errors_name_the_setting():
    bad = {**ALIGN, "target_settings": {"_output_": {"align": {"module_name": "nope"}}}}
    with pytest.raises(ConfigError, match="module_name"):
        L1NormPruner(_net(), [{"op_names": ["0"], "sparse_ratio": 0.5}, bad]).compress()
