"""Model spaces: labelled choices, one decision per label, freeze, samples."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

import torchslim
from torchslim.errors import ConfigError
from torchslim.experiment.searchspace import SearchSpace
from torchslim.nas import (
    InputChoice, LayerChoice, ModelSpace, Mutable, MutableBatchNorm2d, MutableConv2d,
    MutableDropout, MutableLayerNorm, MutableLinear, Repeat,
)


def test_choice_nni3_form_is_labelled_and_works_as_hpo_spec() -> None:
    c = torchslim.choice("dropout", [0.25, 0.5, 0.75])
    assert c.label == "dropout" and c.options == [0.25, 0.5, 0.75]
    assert repr(c) == "Categorical([0.25, 0.5, 0.75], label='dropout')"
    # the same object is a valid HPO parameter: three options, not two
    space = SearchSpace.parse({"dropout": c})
    assert [v for _, v in space.params[0].options] == [0.25, 0.5, 0.75]
    as_json = {"d": {"_type": "choice", "_value": [0.25, 0.5, 0.75]}}
    assert json.loads(json.dumps({"d": c})) == as_json
    assert torchslim.choice(label="x", values=[1, 2]).label == "x"


def test_choice_old_forms_still_build_plain_specs() -> None:
    assert torchslim.choice("a", "b") == {"_type": "choice", "_value": ["a", "b"]}
    assert torchslim.choice(["a", "b"]) == {"_type": "choice", "_value": ["a", "b"]}
    assert not hasattr(torchslim.choice("a", "b"), "label")
    with pytest.raises(ConfigError, match="at least one value"):
        torchslim.choice("x", [])
    with pytest.raises(ConfigError, match="both keywords"):
        torchslim.choice(1, label="x")


class SeedSpace(ModelSpace):
    """The seeds' MyModelSpace, shrunk."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, 1)
        self.conv2 = LayerChoice([nn.Conv2d(4, 8, 3, 1), nn.Sequential(
            nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 8, 1))], label="conv2")
        self.dropout1 = MutableDropout(torchslim.choice("dropout", [0.25, 0.5, 0.75]))
        feature = torchslim.choice("feature", [16, 32, 64])
        self.fc1 = MutableLinear(8 * 12 * 12, feature)
        self.fc2 = MutableLinear(feature, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.max_pool2d(self.conv2(x), 2)
        return self.fc2(torch.relu(self.fc1(torch.flatten(self.dropout1(x), 1))))


def test_one_label_is_one_decision_and_freeze_gives_plain_module() -> None:
    space = SeedSpace()
    assert list(space.simplify()) == ["conv2", "dropout", "feature"]
    model = space.freeze({"conv2": 1, "dropout": 0.75, "feature": 64})
    assert not any(isinstance(m, Mutable) for m in model.modules())
    assert model.fc1.out_features == model.fc2.in_features == 64
    assert isinstance(model.conv2, nn.Sequential) and model.dropout1.p == 0.75
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert model.frozen_sample == {"conv2": 1, "dropout": 0.75, "feature": 64}
    assert isinstance(space.fc1, MutableLinear)  # the space itself is untouched


def test_bad_samples_are_rejected_in_the_users_words() -> None:
    space = SeedSpace()
    with pytest.raises(ConfigError, match=r"dropout=0\.3; allowed: \[0\.25, 0\.5, 0\.75\]"):
        space.freeze({"conv2": 0, "dropout": 0.3, "feature": 64})
    with pytest.raises(ConfigError, match="no value for label"):
        space.freeze({"conv2": 0})
    with pytest.raises(ConfigError, match="unknown label"):
        space.freeze({"conv2": 0, "dropout": 0.5, "feature": 16, "depth": 2})


def test_sample_round_trips_through_json_and_random_is_seeded() -> None:
    space = SeedSpace()
    sample = space.random_sample(3)
    assert sample == space.random_sample(3)
    assert space.check_sample(json.loads(json.dumps(sample))) == sample
    assert isinstance(space.random(3), nn.Module)
    assert space.size() == 18 and len(space.grid()) == 18


def test_conflicting_label_values_are_an_error() -> None:
    class Bad(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.a = MutableLinear(4, torchslim.choice("w", [8, 16]))
            self.b = MutableLinear(4, torchslim.choice("w", [8, 32]))

    with pytest.raises(ConfigError, match="'w' is used with values"):
        Bad().simplify()


def test_repeat_input_choice_and_unlabelled_choices() -> None:
    class Space(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = Repeat(lambda i: nn.Linear(4, 4), (1, 3), label="depth")
            self.pick = InputChoice(2)
            self.act = LayerChoice([nn.ReLU(), nn.Tanh()])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.blocks(x)
            return self.act(self.pick([y, x]))

    space = Space()
    assert list(space.simplify()) == ["depth", "pick", "act"]  # unlabelled: named by place
    model = space.freeze({"depth": 2, "pick": 1, "act": 1})
    assert len(model.blocks) == 2
    x = torch.randn(3, 4)
    assert torch.equal(model(x), torch.tanh(x))  # input 1 is x itself


def test_mutable_layers_weight_sharing_and_freeze() -> None:
    w = torchslim.choice("w", [4, 8])
    k = torchslim.choice("k", [3, 5])
    space = nn.Sequential(MutableConv2d(3, w, k, padding=2), MutableBatchNorm2d(w))
    ln = MutableLayerNorm(w)
    for sample in ({"w": 4, "k": 3}, {"w": 8, "k": 5}):
        for m in list(space) + [ln]:
            m.activate(sample)
        out = space(torch.randn(2, 3, 6, 6))
        assert out.shape[1] == sample["w"]
        assert ln(out.permute(0, 2, 3, 1)).shape[-1] == sample["w"]
        conv = space[0].freeze(sample)
        assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (sample["k"],) * 2
