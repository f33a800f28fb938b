"""ConfigError speaks the user's words: the key and value as written, the entry index, then our name."""
from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from torchslim.config import parse_config_list
from torchslim.errors import ConfigError
from torchslim.pruning import LevelPruner
from torchslim.quantization import QATQuantizer


def _error(config_list, kind="pruning") -> str:
    with pytest.raises(ConfigError) as info:
        parse_config_list(config_list, kind)
    return str(info.value)


@pytest.mark.parametrize("key, canonical", [
    ("sparsity", "sparse_ratio"),  # NNI v2
    ("sparsity_per_layer", "sparse_ratio"),
    ("total_sparsity", "sparse_ratio"),
    ("sparse_ratio", None),  # NNI 3.0: our own name, nothing to add
])
def test_bad_value_names_the_key_as_written(key, canonical):
    message = _error([{"op_types": ["Linear"], "sparse_ratio" if key != "sparse_ratio" else "sparsity": 0.1},
                      {key: "0.2", "op_types": ["Conv2d"]}])
    assert message.startswith(f"config_list[1]: invalid value '0.2' for key '{key}'; allowed: a number in [0, 1)")
    if canonical:
        assert message.endswith(f"(torchslim's name for '{key}' is '{canonical}')")
    else:
        assert "torchslim's name" not in message


def test_inside_target_settings_and_per_layer_dicts():
    message = _error([{"op_types": ["Linear"], "target_settings": {"weight": {"sparsity": 2}}}])
    assert message.startswith("config_list[0]['target_settings']['weight']: invalid value 2 for key 'sparsity'")
    message = _error([{"op_types": ["Linear"], "sparsity": 0.5, "max_sparsity_per_layer": {"fc": 1.5}}])
    assert "invalid value 1.5 for key 'max_sparsity_per_layer'" in message and "'max_sparse_ratio'" in message


@pytest.mark.parametrize("entry, key, value", [
    ({"quant_types": ["weight"], "quant_bits": "8", "op_types": ["Linear"]}, "quant_bits", "'8'"),  # NNI v2
    ({"target_names": ["weight"], "quant_dtype": "int99", "op_types": ["Linear"]}, "quant_dtype", "'int99'"),  # 3.0
])
def test_quantization_dialects(entry, key, value):
    message = _error([entry], "quantization")
    assert message.startswith(f"config_list[0]: invalid value {value} for key '{key}'")


def test_adapter_keys_are_named_as_written():
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.deprecated_call(), pytest.raises(ConfigError, match=re.escape(
            "config_list[0]: invalid value 3 for key 'op_name'; allowed: a module name (a string) "
            "(torchslim's name for 'op_name' is 'op_names')")):
        LevelPruner(model, [{"sparsity": 0.5, "op_name": 3}])
    with pytest.deprecated_call(), pytest.raises(ConfigError, match=re.escape(
            "invalid value 'x' for key 'final_sparsity'; allowed: a number in [0, 1] (torchslim's name")):
        LevelPruner(model, [{"final_sparsity": "x", "op_types": ["Linear"]}])


def test_failed_constructor_leaves_the_model_untouched():
    model = nn.Sequential(nn.Linear(4, 4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match="'sparsity'"):
        LevelPruner(model, [{"sparsity": 1.2, "op_types": ["Linear"]}])
    with pytest.raises(ConfigError, match="'quant_bits'"):
        QATQuantizer(model, [{"quant_types": ["weight"], "quant_bits": 99, "op_types": ["Linear"]}])
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not model[0]._forward_hooks and not model[0]._forward_pre_hooks
