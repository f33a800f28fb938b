"""config_list parsing: both dialects, override order, and a clear error for every bad input."""
import pytest
import torch

from torchslim import ConfigError
from torchslim.config import parse_config_list, resolve_config
from torchslim.models import LeNet, LeNet5


def test_v2_and_v3_dialects_resolve_to_the_same_settings():
    v2 = resolve_config(LeNet(), [{"sparsity": 0.5, "op_types": ["Conv2d"]}])
    v3 = resolve_config(LeNet(), [{"sparse_ratio": 0.5, "op_types": ["Conv2d"]}])
    assert v2 == v3 == {"conv1": {"weight": {"sparse_ratio": 0.5}}, "conv2": {"weight": {"sparse_ratio": 0.5}}}


def test_default_op_types_match_weighted_layers():
    selection = resolve_config(LeNet5(), [{"sparsity_per_layer": 0.3, "op_types": ["default"]}])
    assert sorted(selection) == ["conv1", "conv2", "fc1", "fc2", "fc3"]


def test_later_entries_override_and_exclude_removes():
    selection = resolve_config(
        LeNet5(),
        [
            {"sparsity": 0.8, "op_types": ["default"]},
            {"sparsity": 0.6, "op_names": ["fc1", "fc2"]},
            {"exclude": True, "op_names": ["fc3"]},
        ],
    )
    assert selection["conv1"]["weight"]["sparse_ratio"] == 0.8
    assert selection["fc1"]["weight"]["sparse_ratio"] == 0.6
    assert "fc3" not in selection


def test_v3_selectors_and_target_settings():
    selection = resolve_config(
        LeNet5(),
        [{
            "op_names_re": [r"fc\d"], "exclude_op_names": ["fc3"], "sparse_ratio": 0.5,
            "target_names": ["weight", "bias"], "target_settings": {"bias": {"sparse_ratio": 0.1}},
            "granularity": "out_channel", "global_group_id": 1, "dependency_group_id": "g",
        }],
    )
    assert sorted(selection) == ["fc1", "fc2"]
    assert selection["fc1"]["bias"]["sparse_ratio"] == 0.1
    assert selection["fc1"]["weight"] == {
        "sparse_ratio": 0.5, "granularity": "out_channel", "global_group_id": 1, "dependency_group_id": "g",
    }


def test_total_sparsity_becomes_one_global_group_per_entry():
    selection = resolve_config(LeNet5(), [{"total_sparsity": 0.5, "max_sparsity_per_layer": 0.9, "op_types": ["Linear"]}])
    groups = {s["weight"]["global_group_id"] for s in selection.values()}
    assert len(groups) == 1 and all(s["weight"]["max_sparse_ratio"] == 0.9 for s in selection.values())


def test_each_entry_is_translated_on_its_own():
    # NNI once detected the dialect from the first entry only; here v2 and 3.0 mix freely
    entries = parse_config_list([{"sparse_ratio": 0.2, "op_types": ["Linear"]}, {"sparsity": 0.4, "op_names": ["conv1"]}])
    assert [e.settings["sparse_ratio"] for e in entries] == [0.2, 0.4]


BAD_CONFIGS = [
    # (config_list, words the message must contain)
    ([{"sparsty": 0.5, "op_types": ["Conv2d"]}], ["config_list[0]", "'sparsty'", "sparse_ratio"]),
    ([{"sparsity": 1.5, "op_types": ["Conv2d"]}], ["config_list[0]", "'sparse_ratio'", "1.5", "[0, 1)"]),
    ([{"sparsity": -0.1, "op_types": ["Conv2d"]}], ["'sparse_ratio'", "-0.1"]),
    ([{"sparsity": "half", "op_types": ["Conv2d"]}], ["'sparse_ratio'", "'half'"]),
    ([{"sparsity": 0.5, "op_types": "Conv2d"}], ["'op_types'", "'Conv2d'", "list of strings"]),
    ([{"sparsity": 0.5, "op_names": "conv1"}], ["'op_names'", "list of strings"]),
    ([{"sparsity": 0.5, "op_types": ["Conv3d"]}], ["selects no layer"]),
    ([{"sparsity": 0.5, "op_types": ["Conv2D"]}], ["'op_types'", "'Conv2D'", "Conv2d"]),
    ([{"sparsity": 0.5, "op_names": ["conv9"]}], ["'op_names'", "'conv9'"]),
    ([{"op_types": ["Conv2d"]}], ["config_list[0]", "missing a required key", "sparse_ratio"]),
    ([{"sparsity": 0.5}], ["config_list[0]", "selects no module", "op_types"]),
    ([{"sparsity": 0.5, "sparse_ratio": 0.4, "op_types": ["Conv2d"]}], ["'sparsity'", "'sparse_ratio'"]),
    ([{"sparse_ratio": 0.5, "sparse_threshold": 0.1, "op_types": ["Conv2d"]}], ["'sparse_ratio'", "'sparse_threshold'"]),
    ([{"sparse_ratio": 0.5, "op_types": ["Conv2d"], "exclude": "yes"}], ["'exclude'", "'yes'"]),
    ([{"sparse_ratio": 0.5, "op_types": ["Conv2d"], "granularity": "row"}], ["'granularity'", "'row'", "out_channel"]),
    ([{"sparse_ratio": 0.5, "op_types": ["Conv2d"], "op_names_re": ["conv("]}], ["'op_names_re'", "regular expression"]),
    ([{"sparse_ratio": 0.5, "op_types": ["Conv2d"], "target_names": ["kernel"]}], ["target 'kernel'", "conv1"]),
    ([{"sparse_ratio": 0.5, "op_types": ["Conv2d"], "target_settings": {"weight": {"sparse_ratoi": 0.2}}}],
     ["target_settings", "'sparse_ratoi'"]),
    ([{"sparse_ratio": 0.5, "op_types": ["Conv2d"], "max_sparse_ratio": 2}], ["'max_sparse_ratio'", "2"]),
    ([{"sparse_ratio": 0.5, "op_types": ["Conv2d"], "global_group_id": 1.5}], ["'global_group_id'", "1.5"]),
    (["conv1"], ["config_list[0]", "must be a dict"]),
    ([], ["empty"]),
    ([{"sparse_ratio": 0.5, "op_types": ["Conv2d"]}, {"exclude": True, "op_types": ["Conv2d"]}], ["selects no layer"]),
    ([{"sparse_ratio": 0.5, "op_types": ["Conv2d"]}, {"sparsity": 0.3, "op_types": ["Linear"], "frequency": 1}],
     ["config_list[1]", "'frequency'"]),
]


@pytest.mark.parametrize("config_list, words", BAD_CONFIGS, ids=[str(i) for i in range(len(BAD_CONFIGS))])
def test_bad_config_raises_config_error_naming_the_key(config_list, words):
    with pytest.raises(ConfigError) as info:
        resolve_config(LeNet(), config_list)
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_entry_matching_nothing_warns_but_others_apply():
    with pytest.warns(UserWarning, match=r"config_list\[1\] matches no module"):
        selection = resolve_config(LeNet(), [{"sparse_ratio": 0.5, "op_types": ["Conv2d"]},
                                             {"sparse_ratio": 0.5, "op_types": ["Conv3d"]}])
    assert sorted(selection) == ["conv1", "conv2"]


def test_custom_module_types_are_known_by_class_name():
    class Block(torch.nn.Linear):
        pass

    model = torch.nn.Sequential(Block(4, 4), torch.nn.Linear(4, 2))
    assert list(resolve_config(model, [{"sparse_ratio": 0.5, "op_types": ["Block"]}])) == ["0"]
