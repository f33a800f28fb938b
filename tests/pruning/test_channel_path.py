"""Masks cover a pruned channel's whole path: the norm layers (and depthwise convs) after it are
masked with it, so the masked model the user fine-tunes is exactly what speedup builds."""
import warnings

import pytest
import torch
from torch import nn

from torchslim.pruning import L1NormPruner
from torchslim.speedup import ModelSpeedup

from tests.speedup.conftest import randomize_norms


def net() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.GroupNorm(16, 16), nn.ReLU(),
        nn.Conv2d(16, 8, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    return randomize_norms(model.eval())


CONFIG = [{"op_names": ["0"], "sparse_ratio": 0.5}]
X = torch.randn(2, 3, 16, 16)


@pytest.mark.parametrize("dummy_input", [X, None])  # None: an input is guessed from the first conv
def test_norms_and_depthwise_after_a_pruned_channel_are_masked(dummy_input):
    model = net()
    _, masks = L1NormPruner(model, CONFIG, dummy_input=dummy_input).compress()
    pruned = masks["0"]["bias"] == 0
    assert int(pruned.sum()) == 8
    for name in ("1", "3", "4"):  # BatchNorm, depthwise conv, per-channel GroupNorm
        assert torch.equal(masks[name]["weight"].reshape(16, -1).amax(1) == 0, pruned), name
        assert torch.equal(masks[name]["bias"] == 0, pruned), name
    with torch.no_grad():
        masked = model(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        speedup = ModelSpeedup(model, X, masks)
        speedup.speedup_model()
    assert speedup.report.deviation is None and speedup.report.check.status == "equal"
    assert model[1].num_features == 8 and model[3].out_channels == 8
    with torch.no_grad():  # what the user fine-tuned is what speedup produced
        torch.testing.assert_close(model(X), masked, rtol=1e-5, atol=1e-6)


def test_switched_off_the_difference_is_reported():
    model = net()
    _, masks = L1NormPruner(model, CONFIG, dummy_input=X, mask_channel_path=False).compress()
    assert set(masks) == {"0"}
    speedup = ModelSpeedup(model, X, masks)
    with pytest.warns(UserWarning, match="changes the model"):
        speedup.speedup_model()
    assert "BatchNorm2d '1'" in speedup.report.deviation["cause"]


def test_nni_align_target_settings():
    model = net()
    config = CONFIG + [{"op_names": ["1"], "target_names": ["_output_"], "target_settings": {"_output_": {
        "align": {"module_name": "0", "target_name": "weight", "dims": [0]}, "granularity": "per_channel"}}}]
    _, masks = L1NormPruner(model, config, mask_channel_path=False).compress()
    pruned = masks["0"]["bias"] == 0
    assert torch.equal(masks["1"]["weight"] == 0, pruned) and torch.equal(masks["1"]["bias"] == 0, pruned)
    assert "3" not in masks  # only what the user aligned


def test_untraceable_model_warns_and_still_prunes():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    pruner = L1NormPruner(model, [{"op_names": ["0"], "sparse_ratio": 0.5}], dummy_input=torch.randn(1, 5, 8, 8))
    with pytest.warns(UserWarning, match="could not trace the model"):
        _, masks = pruner.compress()  # the input does not fit the model
    assert set(masks) == {"0"}
