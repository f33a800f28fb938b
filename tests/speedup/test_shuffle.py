"""ShuffleNet: channel shuffle and chunk rewritten so every layer prunes as requested; checked
equal, a wrong permutation caught, saved and loaded."""
import warnings

import pytest
import torch
from torch import nn
from torchvision.models.shufflenetv2 import InvertedResidual

from torchslim.errors import SpeedupError
from torchslim.pruning import L1NormPruner, auto_set_dependency_group_ids
from torchslim.speedup import ModelSpeedup, load, save
from torchslim.utils.metrics import count_params

from tests.speedup.conftest import randomize_norms


class TinyShuffleNet(nn.Module):
    """torchvision's own ShuffleNetV2 blocks: x.chunk(2, 1), cat, channel_shuffle(x, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU())
        self.stage = nn.Sequential(InvertedResidual(24, 48, 2), InvertedResidual(48, 48, 1), InvertedResidual(48, 48, 1))
        self.conv = nn.Sequential(nn.Conv2d(48, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(self.stage(self.stem(x))).mean((2, 3)))


def _pruned(seed: int = 0) -> tuple[nn.Module, torch.Tensor, dict]:
    torch.manual_seed(seed)
    model = randomize_norms(TinyShuffleNet().eval(), (4, 3, 32, 32))
    x = torch.randn(2, 3, 32, 32)
    config = [{"op_types": ["Conv2d", "Linear"], "sparse_ratio": 0.3}, {"op_names": ["fc"], "exclude": True}]
    config = auto_set_dependency_group_ids(model, config, x)
    _, masks = L1NormPruner(model, config, dummy_input=x).compress()
    return model, x, masks


def test_shufflenet_blocks_prune_as_requested():
    model, x, masks = _pruned()
    before = count_params(model)
    speedup = ModelSpeedup(model, x, masks)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exact: no deviation, a verified check
        speedup.speedup_model()
    report = speedup.report
    assert report.check.status == "equal"
    # every 1x1 conv that writes to the shuffled stream lost what it was asked to (was: none)
    for name in ("stage.0.branch1.2", "stage.0.branch2.5", "stage.1.branch2.5", "stage.2.branch2.5"):
        row = next(r for r in report.layers if r.name == name)
        assert row.achieved == pytest.approx(row.requested), name
    assert count_params(model) < 0.6 * before
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 10)


def test_a_wrong_shuffle_permutation_fails_the_check(monkeypatch):
    """Mutation: the shuffle rewritten without permuting the kept channels."""
    from torchslim.speedup import literals

    monkeypatch.setattr(literals, "kept_permutation", lambda sh, kept: list(range(int(kept.sum()))))
    model, x, masks = _pruned()
    with pytest.raises(SpeedupError, match="does not match"):
        ModelSpeedup(model, x, masks).speedup_model()
    assert model.stage[1].branch2[0].in_channels == 24  # restored


def test_rewritten_shuffle_saves_and_loads(tmp_path):
    model, x, masks = _pruned()
    ModelSpeedup(model, x, masks).speedup_model()
    save(model, tmp_path / "shuffle.pt")
    torch.manual_seed(1)
    fresh = load(tmp_path / "shuffle.pt", model=TinyShuffleNet().eval())
    torch.testing.assert_close(fresh(x), model(x))
