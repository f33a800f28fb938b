"""One object per module kind: a user-registered kind shrinks, saves and loads into a fresh model."""
import pytest
import torch
from torch import nn

from torchslim.graph import unregister_module_kind
from torchslim.graph.idspace import along
from torchslim.graph.module_rules import module_rule
from torchslim.pruning import L1NormPruner
from torchslim.speedup import ModelSpeedup, ModuleKind, load, register_module_kind, save
from torchslim.speedup.shrink import select_


class Scale(nn.Module):
    """A per-channel gain the library does not know."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.rand(channels) + 0.5)

    def forward(self, x):
        return x * self.gain.reshape(1, -1, 1, 1)


def scale_rule(ctx, node, m, name):
    x = ctx.chan(node.args[0])
    use = ctx.use(name, m, "scale")
    ids, dead = ctx.ids_along(x, 1, m.gain.numel())
    ctx.slot(use, "out", ids)
    return along(len(ctx.shape(node)), 1, ids, dead)  # a zero channel stays zero


def shrink_scale(m, keep):
    select_(m, "gain", 0, keep["out"])


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.scale = Scale(8)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(self.scale(self.conv(x)))


@pytest.fixture
def scale_kind():
    kind = register_module_kind(ModuleKind("scale", types=(Scale,), rule=scale_rule, shrink=shrink_scale,
                                           param_dims=lambda m: {"out": [("gain", 0)]}))
    yield kind
    unregister_module_kind("scale")  # and its rule


def test_user_kind_shrinks_and_loads_into_a_fresh_model(scale_kind, tmp_path):
    torch.manual_seed(0)
    model = Net().eval()
    _, masks = L1NormPruner(model, [{"op_names": ["conv"], "sparse_ratio": 0.5}]).compress()
    x = torch.randn(2, 3, 8, 8)
    speedup = ModelSpeedup(model, x, masks)
    speedup.speedup_model()
    assert model.conv.out_channels == 4 and model.scale.gain.numel() == 4 and not speedup.report.barriers
    assert scale_kind.size_of(Scale(8), "out") == 8
    save(model, tmp_path / "slim.pt")
    with torch.no_grad():
        fresh = load(tmp_path / "slim.pt", model=Net())
        torch.testing.assert_close(fresh(x), model(x))
    assert fresh.scale.gain.numel() == 4


def test_without_the_kind_its_channels_stay():
    assert module_rule(Scale(2)) is None
    model = Net().eval()
    _, masks = L1NormPruner(model, [{"op_names": ["conv"], "sparse_ratio": 0.5}]).compress()
    speedup = ModelSpeedup(model, torch.randn(1, 3, 8, 8), masks)
    speedup.speedup_model()
    assert model.conv.out_channels == 8  # traced into: its parameter is a constant the channels meet
    assert [r.name for r in speedup.report.shortfalls()] == ["conv"]
