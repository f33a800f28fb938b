"""The speedup check can fail: a kept channel perturbed or swapped in the shrunk model is caught,
for every rule family; outputs that do not depend on the input are "unverified", never "equal";
the reference is the user's model as given."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchslim.errors import SpeedupError
from torchslim.pruning import L1NormPruner, auto_set_dependency_group_ids
from torchslim.speedup import ModelSpeedup
from torchslim.speedup.verify import check_inputs, compare_outputs

from tests.speedup.conftest import randomize_norms


def cbr(cin: int, cout: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, groups=groups), nn.BatchNorm2d(cout), nn.ReLU())


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.a, self.b = cbr(3, 16), cbr(16, 16), cbr(16, 16)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.b(self.a(x))
        return self.head(x.mean((2, 3)))


class ConcatSplit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = cbr(3, 12), cbr(3, 12), cbr(12, 12)
        self.head = nn.Linear(24, 5)

    def forward(self, x):
        y = torch.cat([self.a(x), self.b(x)], 1)
        left, right = y.chunk(2, 1)
        return self.head(torch.cat([self.c(left), right], 1).mean((2, 3)))


class Grouped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.g, self.dw = cbr(3, 16), cbr(16, 16, groups=4), cbr(16, 16, groups=16)
        self.gn = nn.GroupNorm(4, 16)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        return self.head(self.gn(self.dw(self.g(self.stem(x)))).mean((2, 3)))


class Flatten(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = cbr(3, 8), cbr(8, 8)
        self.fc, self.head = nn.Linear(8 * 4 * 4, 20), nn.Linear(20, 5)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.b(self.a(x)), 4)
        return self.head(F.relu(self.fc(torch.flatten(x, 1))))


class Shuffle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = cbr(3, 16), cbr(16, 16)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        x = self.a(x)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.head(self.b(x).mean((2, 3)))


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(6, 16)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 16)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        h = self.embed(x)
        h = h + self.attn(h, h, h, need_weights=False)[0]
        h = h + self.fc2(F.gelu(self.fc1(h)))
        return self.head(h.mean(1))


FAMILIES = {  # name -> (model, input shape, module to mutate in the shrunk model)
    "residual": (Residual, (2, 3, 16, 16), "a.0"),
    "concat_split": (ConcatSplit, (2, 3, 16, 16), "b.0"),
    "groups": (Grouped, (2, 3, 16, 16), "g.0"),
    "flatten": (Flatten, (2, 3, 16, 16), "b.0"),
    "shuffle": (Shuffle, (2, 3, 16, 16), "a.0"),
    "attention": (Attention, (2, 7, 6), "fc1"),
}


def pruned_and_shrunk(family: str) -> tuple[ModelSpeedup, nn.Module]:
    torch.manual_seed(0)
    builder, shape, _ = FAMILIES[family]
    model = randomize_norms(builder().eval())
    x = torch.randn(*shape)
    config = [{"op_types": ["Conv2d", "Linear"], "sparse_ratio": 0.5}, {"op_names": ["head"], "exclude": True}]
    config = auto_set_dependency_group_ids(model, config, x)
    _, masks = L1NormPruner(model, config, dummy_input=x).compress()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither a deviation nor an unverified check
        speedup = ModelSpeedup(model, x, masks)
        speedup.speedup_model()
    return speedup, model


def alive_rows(weight: torch.Tensor) -> list[int]:
    """Kept channels that are not all-zero (a masked channel speedup had to keep is zero)."""
    norms = weight.detach().reshape(weight.shape[0], -1).norm(dim=1)
    return norms.argsort(descending=True)[:2].tolist()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_mutating_a_kept_channel_fails_the_check(family):
    speedup, model = pruned_and_shrunk(family)
    assert speedup.report.check.status == "equal"
    name = FAMILIES[family][2]
    assert name in {r.name for r in speedup.report.layers}  # a layer speedup shrank
    weight = model.get_submodule(name).weight
    original = weight.detach().clone()
    i, j = alive_rows(weight)
    with torch.no_grad():  # swap two kept channels
        weight[[i, j]] = original[[j, i]]
    assert speedup.verify().status == "differs"
    with torch.no_grad():  # perturb one kept channel by half its size
        weight.copy_(original)
        weight[i] *= 1.5
    assert speedup.verify().status == "differs"
    with torch.no_grad():
        weight.copy_(original)
    assert speedup.verify().status == "equal"


def test_check_is_relative_to_spread_not_size():
    torch.manual_seed(0)
    refs = [[torch.randn(2, 5) * 1e-7 + 1e3] for _ in range(4)]  # tiny spread on a large offset
    same = [[r[0].clone()] for r in refs]
    assert compare_outputs(refs, same).status == "unverified"
    small = [[torch.randn(2, 5) * 1e-7] for _ in range(4)]  # EfficientNet-like tiny outputs
    swapped = [[r[0].flip(-1)] for r in small]
    assert compare_outputs(small, [[r[0].clone()] for r in small]).status == "equal"
    assert compare_outputs(small, swapped).status == "differs"
    const = [[torch.zeros(2, 5)] for _ in range(4)]
    assert compare_outputs(const, const).status == "unverified"


def test_output_independent_of_input_is_unverified():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    nn.init.zeros_(model[4].weight)  # a zero-initialised head: output = bias for every input
    _, masks = L1NormPruner(model, [{"op_names": ["0"], "sparse_ratio": 0.5}]).compress()
    speedup = ModelSpeedup(model, torch.randn(1, 3, 8, 8), masks)
    with pytest.warns(UserWarning, match="could not verify"):
        speedup.speedup_model()
    assert speedup.report.check.status == "unverified"


def test_check_inputs_keep_structure_and_ranges():
    ids = torch.randint(0, 50, (2, 9))
    inputs = check_inputs({"input_ids": ids, "attention_mask": torch.ones(2, 9, dtype=torch.long)}, 3)
    assert len(inputs) == 3 and inputs[0]["input_ids"] is ids
    for given in inputs[1:]:
        assert given["input_ids"].min() >= 0 and given["input_ids"].max() <= ids.max()
        assert torch.equal(given["attention_mask"], torch.ones(2, 9, dtype=torch.long))
        assert not torch.equal(given["input_ids"], ids)


def unmasked_bn_model():
    torch.manual_seed(0)
    model = randomize_norms(Residual().eval())
    x = torch.randn(2, 3, 16, 16)
    config = auto_set_dependency_group_ids(model, [{"op_types": ["Conv2d"], "sparse_ratio": 0.5}], x)
    _, masks = L1NormPruner(model, config, mask_channel_path=False).compress()
    return model, x, masks


def test_reference_is_the_model_as_given():
    model, x, masks = unmasked_bn_model()
    with torch.no_grad():
        given = model(x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(SpeedupError, match="removing the pruned channels changes the model.*BatchNorm2d"):
        ModelSpeedup(model, x, masks, strict=True).speedup_model()
    for k, v in model.state_dict().items():  # nothing touched: no BatchNorm zeroed before the check
        assert torch.equal(v, state[k]), k
    with torch.no_grad():
        assert torch.equal(model(x), given)
    speedup = ModelSpeedup(model, x, masks)
    with pytest.warns(UserWarning, match="changes the model"):
        speedup.speedup_model()
    deviation = speedup.report.deviation
    assert deviation["relative"] > 1e-3 and "stem.1" in deviation["cause"]
    assert "differs from the model as given" in speedup.report.summary()
