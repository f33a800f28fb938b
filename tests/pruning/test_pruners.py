"""One-shot pruners on the shipped LeNet nets: exact sparsity, structure, allocation policies."""
import pytest
import torch

from torchslim.models import LeNet, LeNet5
from torchslim.pruning import FPGMPruner, L1NormPruner, L2NormPruner, LevelPruner, register_importance


def zero_channels(mask: torch.Tensor) -> int:
    return int((mask.flatten(1).sum(1) == 0).sum())


def test_l1_prunes_exactly_half_of_each_conv_output_channels():
    model, masks = L1NormPruner(LeNet(), [{"op_types": ["Conv2d"], "sparse_ratio": 0.5}]).compress()
    assert set(masks) == {"conv1", "conv2"}
    assert zero_channels(masks["conv1"]["weight"]) == 10
    assert zero_channels(masks["conv2"]["weight"]) == 25
    # whole channels: each output channel is all kept or all pruned, bias follows
    for name in ("conv1", "conv2"):
        per_channel = masks[name]["weight"].flatten(1)
        assert torch.all((per_channel.sum(1) == 0) | (per_channel.sum(1) == per_channel.shape[1]))
        assert torch.equal(masks[name]["bias"], per_channel.amax(1))
        assert torch.count_nonzero(getattr(model, name).weight * (1 - masks[name]["weight"])) == 0


def test_l1_keeps_the_largest_norm_channels():
    model = LeNet()
    norms = model.conv2.weight.detach().abs().sum((1, 2, 3))
    _, masks = L1NormPruner(model, [{"op_names": ["conv2"], "sparse_ratio": 0.5}]).compress()
    kept = masks["conv2"]["bias"].bool()
    assert norms[kept].min() >= norms[~kept].max()


def test_level_pruner_zeroes_80_percent_of_weights():
    model = LeNet()
    _, masks = LevelPruner(model, [{"sparsity": 0.8, "op_types": ["default"]}]).compress()
    for name in ("conv1", "conv2", "fc1", "fc2"):
        weight = getattr(model, name).weight
        assert abs(1 - torch.count_nonzero(weight).item() / weight.numel() - 0.8) < 1e-3
        assert set(masks[name]) == {"weight"}  # fine-grained: bias untouched


def test_v2_style_compress_returns_usable_model():
    model = LeNet5()
    pruner = LevelPruner(model, [{"sparsity": 0.5, "op_types": ["default"]}])
    compressed = pruner.compress()
    assert compressed(torch.randn(2, 1, 28, 28)).shape == (2, 10)  # v2: model = pruner.compress()
    same_model, masks = compressed  # 3.0: model, masks = pruner.compress()
    assert same_model is model and "fc3" in masks


@pytest.mark.parametrize("pruner_cls", [L2NormPruner, FPGMPruner])
def test_structured_pruners_prune_requested_channels(pruner_cls):
    _, masks = pruner_cls(LeNet5(), [{"op_types": ["Conv2d", "Linear"], "exclude_op_names": ["fc3"], "sparse_ratio": 0.75}]).compress()
    assert zero_channels(masks["conv2"]["weight"]) == 12
    assert zero_channels(masks["fc1"]["weight"]) == 90


def test_fpgm_drops_the_filter_at_the_geometric_median():
    conv = torch.nn.Conv2d(1, 3, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([-1.0, 0.1, 1.0]).view(3, 1, 1, 1))
    _, masks = FPGMPruner(torch.nn.Sequential(conv), [{"op_types": ["Conv2d"], "sparse_ratio": 0.34}]).compress()
    assert masks["0"]["weight"].flatten().tolist() == [1.0, 0.0, 1.0]


def test_global_sparsity_respects_max_per_layer():
    model = LeNet5()
    with torch.no_grad():
        model.fc1.weight.mul_(1e-3)  # fc1 is by far the least important globally
    pruner = LevelPruner(model, [{"total_sparsity": 0.5, "max_sparsity_per_layer": 0.5, "op_types": ["Linear"]}])
    _, masks = pruner.compress()
    report = {row["module"]: row["achieved"] for row in pruner.sparsity_report()}
    assert report["fc1"] == pytest.approx(0.5, abs=1e-3)  # capped, the rest comes from fc2/fc3
    assert report["fc2"] > 0
    total = sum(m["weight"].numel() for m in masks.values())
    pruned = sum((m["weight"] == 0).sum().item() for m in masks.values())
    assert pruned / total == pytest.approx(0.5, abs=1e-3)


def test_dependency_group_keeps_the_same_channels():
    model = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.Linear(8, 6))
    config = [{"op_types": ["Linear"], "sparse_ratio": 0.5, "dependency_group_id": "residual"}]
    _, masks = L1NormPruner(model, config).compress()
    assert torch.equal(masks["0"]["bias"], masks["1"]["bias"])
    assert masks["0"]["bias"].sum() == 3


def test_repeated_compress_never_revives_pruned_blocks():
    model = LeNet5()
    LevelPruner(model, [{"sparsity": 0.5, "op_names": ["fc1"]}]).compress()
    first = (model.fc1.weight == 0).clone()
    with torch.no_grad():
        model.fc1.weight.add_(torch.randn_like(model.fc1.weight) * (~first))
    _, masks = LevelPruner(model, [{"sparsity": 0.7, "op_names": ["fc1"]}]).compress()
    assert torch.all(masks["fc1"]["weight"][first] == 0)


def test_custom_importance_registered_by_name():
    @register_importance("negative_l1_for_test")
    def negative_l1(ctx):
        return -ctx.units().abs().sum(-1)

    model = LeNet()
    norms = model.conv1.weight.detach().abs().sum((1, 2, 3))
    _, masks = L1NormPruner(model, [{"op_names": ["conv1"], "sparse_ratio": 0.5}], importance="negative_l1_for_test").compress()
    kept = masks["conv1"]["bias"].bool()
    assert norms[kept].max() <= norms[~kept].min()


def test_v2_custom_pruner_with_calc_mask():
    from torchslim.pruning import Pruner

    class FirstHalfPruner(Pruner):
        def calc_mask(self, wrapper, config):
            mask = torch.ones_like(wrapper.module.weight)
            mask[: int(mask.shape[0] * config["sparsity"])] = 0
            return {"weight_mask": mask}

    model = LeNet5()
    _, masks = FirstHalfPruner(model, [{"sparsity": 0.5, "op_types": ["Linear"]}]).compress()
    assert torch.count_nonzero(model.fc1.weight[:60]) == 0 and torch.count_nonzero(model.fc1.weight[60:]) > 0


def test_block_granularity():
    model = LeNet5()
    _, masks = LevelPruner(model, [{"sparse_ratio": 0.5, "op_names": ["fc1"], "granularity": [4, -1]}]).compress()
    rows = masks["fc1"]["weight"][:, 0].view(-1, 4)
    assert torch.all((rows.sum(1) == 0) | (rows.sum(1) == 4)) and rows.sum() == 60


def test_bad_importance_and_mode_are_clear_errors():
    from torchslim import ConfigError

    with pytest.raises(ConfigError, match="unknown importance 'l3'"):
        L1NormPruner(LeNet(), [{"op_types": ["Conv2d"], "sparse_ratio": 0.5}], importance="l3")
    with pytest.raises(ConfigError, match="invalid mode 'fast'"):
        L1NormPruner(LeNet(), [{"op_types": ["Conv2d"], "sparse_ratio": 0.5}], mode="fast")


def test_transformers_conv1d_prunes_output_features():
    pytest.importorskip("transformers")
    from transformers.pytorch_utils import Conv1D

    layer = Conv1D(nf=6, nx=4)  # weight is stored [in=4, out=6]
    _, masks = L1NormPruner(torch.nn.Sequential(layer), [{"op_types": ["Conv1D"], "sparse_ratio": 0.5}]).compress()
    weight_mask = masks["0"]["weight"]
    assert weight_mask.shape == (4, 6)
    assert torch.all(weight_mask.sum(0) % 4 == 0) and weight_mask.sum() == 12  # whole output columns
    assert torch.equal(masks["0"]["bias"], weight_mask.amax(0))
