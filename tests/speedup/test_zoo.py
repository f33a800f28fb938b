"""Representative real architectures: prune 30% dependency-aware, speed up, shrunk == masked
(trained-like norm layers, so the check can fail)."""
import copy
import warnings

import pytest
import torch
import torchvision

from torchslim.pruning import L1NormPruner, auto_set_dependency_group_ids
from torchslim.speedup import ModelSpeedup
from torchslim.utils.metrics import count_params

from tests.speedup.conftest import randomize_norms

MODELS = {  # name -> (builder kwargs, input size)
    "resnet18": ({}, 64),
    "mobilenet_v2": ({}, 64),
    "mobilenet_v3_small": ({}, 64),
    "densenet121": ({}, 32),
    "efficientnet_b0": ({}, 64),
    "regnet_x_400mf": ({}, 64),
    "shufflenet_v2_x0_5": ({}, 64),
    "squeezenet1_0": ({}, 64),
    "convnext_tiny": ({}, 64),
    "vit_b_16": ({"image_size": 64}, 64),
}


def last_layer(model: torch.nn.Module) -> str:
    return [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))][-1]


@pytest.mark.parametrize("name", list(MODELS))
def test_shrunk_model_equals_masked_model(name):
    torch.manual_seed(0)
    kwargs, size = MODELS[name]
    model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
    randomize_norms(model, (4, 3, size, size))
    x = torch.randn(2, 3, size, size)
    config = [{"op_types": ["Conv2d", "Linear"], "sparse_ratio": 0.3}, {"op_names": [last_layer(model)], "exclude": True}]
    config = auto_set_dependency_group_ids(model, config, x)
    _, masks = L1NormPruner(model, config, dummy_input=x).compress()
    before = count_params(model)
    speedup = ModelSpeedup(model, x, masks)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deviation from the masked model, no unverified check
        speedup.speedup_model()
    report = speedup.report
    assert count_params(model) < 0.95 * before
    assert report.check.status == "equal" and report.deviation is None
    # the built-in check compared with the masked model; check shapes of a fresh batch too
    with torch.no_grad():
        assert model(torch.randn(3, 3, size, size)).shape == (3, 1000)


def test_check_names_the_first_layer_that_differs(monkeypatch):
    from torchslim.speedup import shrink

    model = randomize_norms(torchvision.models.resnet18(weights=None).eval())
    x = torch.randn(1, 3, 32, 32)
    config = [{"op_types": ["Conv2d"], "sparse_ratio": 0.5}]
    config = auto_set_dependency_group_ids(model, config, x)
    _, masks = L1NormPruner(model, config).compress()
    masked = copy.deepcopy(model)

    def wrong_bn(module, keep):  # keeps the right number of channels, but the wrong ones
        n = keep["out"].numel()
        original(module, {"out": torch.arange(n), "in": torch.arange(n)})

    original = shrink.SHRINKERS["batchnorm"]
    monkeypatch.setitem(shrink.SHRINKERS, "batchnorm", wrong_bn)
    with pytest.raises(Exception, match="first layer that differs: 'bn1'"):
        ModelSpeedup(model, x, masks).speedup_model()
    # the model was restored to its masked state
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), masked.state_dict().items()):
        assert p1.shape == p2.shape, n1
