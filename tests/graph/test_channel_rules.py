"""Channel coupling rules on small hand-built models: groups, barriers, strict mode, tracing."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchslim.errors import SpeedupError
from torchslim.graph import trace_model
from torchslim.graph.groups import analyze, channel_groups
from torchslim.speedup import ModelSpeedup


def out_channel_masks(model: nn.Module, drops: dict[str, list[int]]) -> dict:
    masks = {}
    for name, channels in drops.items():
        module = model.get_submodule(name)
        row = torch.ones(module.weight.shape[0])
        row[channels] = 0
        weight = row.reshape(-1, *([1] * (module.weight.dim() - 1))).expand_as(module.weight).clone()
        masks[name] = {"weight": weight}
        if module.bias is not None:
            masks[name]["bias"] = row.clone()
    return masks


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = F.relu(self.stem(x))
        y = self.conv2(F.relu(self.bn1(self.conv1(x))))
        return self.head((x + y).mean([2, 3]))


def test_residual_add_couples_both_branches():
    groups = channel_groups(Residual().eval(), torch.randn(1, 3, 8, 8))
    assert ["stem", "conv2"] in groups


def test_residual_channel_goes_only_when_dead_on_both_sides():
    model = Residual().eval()
    masks = out_channel_masks(model, {"stem": [0, 1], "conv2": [1, 2], "conv1": [5]})
    speedup = ModelSpeedup(model, torch.randn(2, 3, 8, 8), masks)
    speedup.speedup_model()
    assert model.stem.out_channels == 7  # only channel 1 is dead in both branches
    assert model.conv1.out_channels == 7 and model.bn1.num_features == 7
    assert model.head.in_features == 7


class CatSplitShuffle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 6, 1)
        self.c = nn.Conv2d(10, 8, 1)
        self.d = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(8 * 4 * 4, 3)

    def forward(self, x):
        x = torch.cat([self.a(x), self.b(x)], 1)
        x = self.c(x)
        left, right = x.chunk(2, dim=1)
        x = torch.cat([left, self.d(right)], 1)
        n, ch, h, w = x.size()
        x = x.view(n, 2, ch // 2, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)  # channel shuffle
        return self.fc(torch.flatten(x, 1))


def test_cat_split_shuffle_and_flatten_into_linear():
    model = CatSplitShuffle().eval()
    x = torch.randn(2, 3, 4, 4)
    masks = out_channel_masks(model, {"a": [0], "b": [2, 5], "c": [1, 5], "d": [1]})
    speedup = ModelSpeedup(model, x, masks)
    speedup.speedup_model()
    assert model.a.out_channels == 3 and model.b.out_channels == 4
    assert model.c.in_channels == 7
    # chunk + shuffle couple c's channel j with c's channel j+4 and d's channel j: only j=1 is dead in all
    assert model.c.out_channels == 6 and model.d.out_channels == 3
    assert model.fc.in_features == 6 * 16  # each channel expands to its 4x4 features


def test_reshape_with_constant_channel_count_is_rewritten():
    class Fixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 1)
            self.fc = nn.Linear(8 * 9, 2)

        def forward(self, x):
            return self.fc(self.conv(x).reshape(x.shape[0], 8, 9).flatten(1))

    model = Fixed().eval()
    x = torch.randn(2, 3, 3, 3)
    masks = out_channel_masks(model, {"conv": [0, 3]})
    ModelSpeedup(model, x[:1], masks).speedup_model()
    # '8' is written in the code; it is the channel count, so the traced graph's copy is rewritten
    assert model.conv.out_channels == 6 and model.fc.in_features == 6 * 9
    assert model(x).shape == (2, 2)


class Unknown(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.shuffle = nn.PixelShuffle(2)
        self.out = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        return self.out(self.shuffle(self.conv(x)))


def test_unknown_op_is_a_reported_barrier_and_strict_mode_names_it():
    model = Unknown().eval()
    masks = out_channel_masks(model, {"conv": [0, 1, 2, 3]})
    speedup = ModelSpeedup(model, torch.randn(1, 3, 4, 4), masks)
    speedup.speedup_model()
    assert model.conv.out_channels == 8  # kept whole around the barrier
    assert [b.node for b in speedup.report.barriers] == ["shuffle"]
    assert "barrier" in speedup.report.summary()
    with pytest.raises(SpeedupError, match="node 'shuffle'"):
        ModelSpeedup(Unknown().eval(), torch.randn(1, 3, 4, 4), masks, strict=True).speedup_model()


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU())
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: fx cannot trace this module
            x = x * 2
        return self.conv(self.inner(x))


def test_untraceable_module_falls_back_to_children_or_raises_with_hint():
    model = Branchy().eval()
    traced = trace_model(model, torch.ones(1, 3, 2, 2))
    assert traced.untraced[0][0] == "<root>"
    assert {p.prefix for p in traced.parts} >= {"inner", "conv"}
    with pytest.raises(SpeedupError, match="leaf_modules"):
        trace_model(model, torch.ones(1, 3, 2, 2), fallback=False)


def test_leaf_modules_are_kept_whole():
    ctx = analyze(Residual().eval(), torch.randn(1, 3, 8, 8), leaf_modules=["conv1"])
    assert "conv1" not in {b.node for b in ctx.barriers}  # a torch.nn leaf with a rule stays analysed
    ctx = analyze(Unknown().eval(), torch.randn(1, 3, 4, 4), leaf_modules=[nn.PixelShuffle])
    assert ctx.barriers and ctx.barriers[0].node == "shuffle"


def test_time_limit_names_the_node():
    with pytest.raises(SpeedupError, match="time limit .* at node"):
        ModelSpeedup(Residual().eval(), torch.randn(1, 3, 8, 8), {}, time_limit=0).speedup_model()


def scaled_relu(x):  # a user function: traced as one node when autowrapped
    return torch.relu(x) * 2.0


class UsesFunction(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 6, 1)
        self.b = nn.Conv2d(6, 2, 1)

    def forward(self, x):
        return self.b(scaled_relu(self.a(x)))


def test_autowrapped_function_is_a_barrier_until_it_gets_a_rule():
    from torchslim.graph import register_function_rule
    from torchslim.graph.rules import unary

    masks = out_channel_masks(UsesFunction(), {"a": [0, 1, 2]})
    model = UsesFunction().eval()
    speedup = ModelSpeedup(model, torch.randn(1, 3, 4, 4), masks, autowrap_functions=[scaled_relu])
    speedup.speedup_model()
    assert model.a.out_channels == 6 and speedup.report.barriers[0].target.endswith("scaled_relu")
    register_function_rule(scaled_relu, unary(zero_preserving=True))
    model = UsesFunction().eval()
    ModelSpeedup(model, torch.randn(1, 3, 4, 4), masks, autowrap_functions=[scaled_relu]).speedup_model()
    assert model.a.out_channels == 3 and model.b.in_channels == 3
