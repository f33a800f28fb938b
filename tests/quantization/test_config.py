"""Quantization config_list: v2 and 3.0 dialects land in one canonical form; bad entries raise ConfigError."""
import pytest

from torchslim.config import parse_config_list
from torchslim.errors import ConfigError
from torchslim.models import LeNet5
from torchslim.quantization import QATQuantizer


def canonical(entry):
    (parsed,) = parse_config_list([entry], "quantization")
    return parsed


def test_v2_seed_config_translates_to_targets_dtypes_and_granularity():
    entry = canonical({
        "quant_types": ["weight", "input"], "quant_bits": {"weight": 8, "input": 8}, "op_types": ["Conv2d", "Linear"],
        "quant_dtype": "int", "quant_scheme": "per_channel_symmetric",
    })
    assert entry.target_names == ["weight", "_input_"]
    assert entry.target_settings["weight"] == {"quant_dtype": "int8", "quant_scheme": "symmetric", "granularity": "per_channel"}
    # v2 applies per-channel schemes to weights only; activations stay per tensor
    assert entry.target_settings["_input_"] == {"quant_dtype": "int8", "quant_scheme": "symmetric"}


def test_v2_int_bits_and_uint_dtype():
    entry = canonical({"quant_types": ["output"], "quant_bits": 4, "op_types": ["ReLU"], "quant_dtype": "uint",
                       "quant_scheme": "per_tensor_affine", "quant_start_step": 70})
    assert entry.target_names == ["_output_"]
    assert entry.target_settings["_output_"] == {"quant_dtype": "uint4", "quant_scheme": "affine"}
    assert entry.settings["quant_start_step"] == 70


def test_v30_entry_is_kept_as_is():
    entry = canonical({"op_names": ["conv1"], "target_names": ["_input_", "weight", "_output_"], "quant_dtype": "int8",
                       "quant_scheme": "affine", "granularity": "default"})
    assert entry.target_names == ["_input_", "weight", "_output_"]
    assert entry.settings == {"quant_dtype": "int8", "quant_scheme": "affine", "granularity": "default"}


def test_both_dialects_resolve_to_the_same_settings():
    v2 = QATQuantizer(LeNet5(), [{"op_types": ["Conv2d"], "quant_types": ["weight"], "quant_bits": 8,
                                  "quant_scheme": "per_channel_symmetric"}])
    v3 = QATQuantizer(LeNet5(), [{"op_types": ["Conv2d"], "target_names": ["weight"], "quant_dtype": "int8",
                                  "quant_scheme": "symmetric", "granularity": "per_channel"}])
    assert v2.settings == v3.settings


@pytest.mark.parametrize("entry, words", [
    ({"op_types": ["Conv2d"], "quant_types": ["weight"], "quant_bits": 0}, ["config_list[0]", "quant_bits", "0"]),
    ({"op_types": ["Conv2d"], "quant_types": ["weight"], "quant_bits": {"weight": 33}}, ["quant_bits", "33"]),
    ({"op_types": ["Conv2d"], "quant_types": ["weight"], "quant_scheme": "per_block_magic"}, ["quant_scheme", "per_block_magic"]),
    ({"op_types": ["Conv2d"], "target_names": ["weight"], "quant_scheme": "asymmetric"}, ["quant_scheme", "'affine', 'symmetric'"]),
    ({"op_types": ["Conv2d"], "target_names": ["weight"], "quant_dtype": "float8"}, ["quant_dtype", "float8", "int8"]),
    ({"op_types": ["Conv2d"], "target_names": ["weight"], "quant_dtype": "int0"}, ["quant_dtype", "int0"]),
    ({"op_types": ["Conv2d"], "quant_types": ["weights"]}, ["quant_types", "'weight', 'input', 'output'"]),
    ({"op_types": ["Conv2d"], "quant_types": ["weight"], "quant_bits": {"input": 8}}, ["quant_bits", "quant_types"]),
    ({"op_types": ["Conv2d"], "target_names": ["weight"], "granularity": "per_row"}, ["granularity", "per_row"]),
    ({"op_types": ["Conv2d"], "target_names": ["weight"], "quant_start_step": -1}, ["quant_start_step", "-1"]),
    ({"op_types": ["Conv2d"], "target_names": ["weight"], "quant_dtyp": "int8"}, ["unknown key 'quant_dtyp'", "quant_dtype"]),
])
def test_bad_entries_raise_config_error_naming_key_and_value(entry, words):
    with pytest.raises(ConfigError) as info:
        QATQuantizer(LeNet5(), [entry])
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("entry, words", [
    ({"op_names": ["relu1"], "target_names": ["weight"]}, ["'weight'", "relu1", "_input_"]),
    ({"op_names": ["conv1"], "target_names": ["bias2"]}, ["'bias2'", "conv1", "available targets"]),
    ({"op_names": ["conv9"], "target_names": ["weight"]}, ["conv9", "not a module"]),
    ({"op_names": ["conv1"], "target_names": ["_input_x"]}, ["_input_x", "indexed"]),
])
def test_targets_not_in_the_module_raise_config_error(entry, words):
    with pytest.raises(ConfigError) as info:
        QATQuantizer(LeNet5(), [entry])
    for word in words:
        assert word in str(info.value)


def test_bad_quant_start_step_argument():
    with pytest.raises(ConfigError, match="quant_start_step"):
        QATQuantizer(LeNet5(), [{"op_types": ["Conv2d"], "target_names": ["weight"]}], None, -5)
