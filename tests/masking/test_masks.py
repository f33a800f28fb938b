"""Masks hold through training, saving and optimizers built before or after compression."""
import io

import torch

from torchslim.datasets import load_mnist
from torchslim.masking import MaskKeeper, attach_masks, get_masks
from torchslim.models import LeNet5
from torchslim.pruning import L1NormPruner, LevelPruner
from torchslim.utils.training import train_epochs


def masked_values(model, masks):
    return torch.cat([
        getattr(model.get_submodule(name), target)[mask == 0].detach().abs().flatten()
        for name, targets in masks.items() for target, mask in targets.items()
    ])


def test_masked_weights_stay_exactly_zero_through_training():
    model = LeNet5()
    # optimizer built BEFORE compression, with momentum and weight decay that would revive zeros
    early = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    _, masks = L1NormPruner(model, [{"op_types": ["Conv2d", "Linear"], "exclude_op_names": ["fc3"], "sparse_ratio": 0.5}]).compress()
    train, _ = load_mnist()
    subset = torch.utils.data.Subset(train, range(512))
    train_epochs(model, subset, epochs=1, optimizer=early)
    assert masked_values(model, masks).max() == 0
    late = torch.optim.Adam(model.parameters(), lr=1e-2)  # built AFTER compression
    train_epochs(model, subset, epochs=1, optimizer=late)
    assert masked_values(model, masks).max() == 0


def test_module_types_state_dict_and_pickling_unchanged(tmp_path):
    model = LeNet5()
    keys = list(model.state_dict())
    LevelPruner(model, [{"sparsity": 0.7, "op_types": ["default"]}]).compress()
    assert type(model.conv1) is torch.nn.Conv2d
    assert list(model.state_dict()) == keys
    model.load_state_dict(LeNet5().state_dict())  # plain checkpoints still load...
    assert torch.count_nonzero(model.fc1.weight) > 0.9 * model.fc1.weight.numel()
    model(torch.randn(1, 1, 28, 28))  # ...and the next forward re-applies the masks
    assert abs(1 - torch.count_nonzero(model.fc1.weight).item() / model.fc1.weight.numel() - 0.7) < 1e-3
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert torch.equal(get_masks(loaded.fc1)["weight"], get_masks(model.fc1)["weight"])


def test_unwrap_model_leaves_a_plain_model():
    model = LeNet5()
    pruner = L1NormPruner(model, [{"op_types": ["Linear"], "sparse_ratio": 0.5}])
    pruner.compress()
    x = torch.randn(3, 1, 28, 28)
    masked_out = model(x)
    plain = pruner.unwrap_model()
    assert all(not m._forward_pre_hooks for m in plain.modules())
    assert not any(name.endswith("_mask") for name, _ in plain.named_buffers())
    assert torch.allclose(plain(x), masked_out)
    assert torch.count_nonzero(plain.fc1.weight) == 60 * 256


def test_reused_module_in_one_forward_trains():
    layer = torch.nn.Linear(4, 4)
    attach_masks(layer, {"weight": (torch.rand(4, 4) > 0.5).float()})
    keeper = MaskKeeper([layer])
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        layer(layer(torch.randn(2, 4))).sum().backward()  # same weight used twice
        optimizer.step()
    assert torch.all(layer.weight[get_masks(layer)["weight"] == 0] == 0)
    keeper.close()
