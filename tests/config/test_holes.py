"""The config holes found by fuzzing, one test each (the fuzzer covers their combinations)."""
from __future__ import annotations

import pytest

from torchslim.errors import ConfigError
from torchslim.models import LeNet5
from torchslim.pruning import L1NormPruner


@pytest.mark.parametrize("entry, words", [
    ({"op_types": ["Conv2d"], "sparse_ratio": 0.5, "align": "junk"}, ["'align'", "junk"]),
    ({"op_types": ["Conv2d"], "sparse_ratio": 0.5, "apply_method": "junk"}, ["'apply_method'"]),
    ({"op_types": ["Conv2d"], "sparse_ratio": 0.5, "internal_metric_block": -1},
     ["'internal_metric_block'"]),
    ({"op_types": ["Conv2d"], "sparse_ratio": 0.5, "min_sparse_ratio": 0.9, "max_sparse_ratio": 0.2},
     ["min_sparse_ratio", "0.9", "max_sparse_ratio"]),
    ({"op_names": ["conv1"], "sparse_ratio": 0.5, "target_names": ["_input_7"]},
     ["_input_7", "1 input(s)"]),
    ({"op_names": ["conv1"], "target_settings": {"_input_": {"sparse_ratio": 0.5}}},
     ["'_input_'", "prune nothing"]),
    ({"op_types": ["Conv2d"], "sparse_ratio": 0.5, "target_names": []}, ["'target_names'"]),
])
def test_nonsense_is_refused(entry, words):
    with pytest.raises(ConfigError) as info:
        L1NormPruner(LeNet5(), [entry])
    for word in words:
        assert word in str(info.value)


def test_min_greater_than_max_across_entries():
    with pytest.raises(ConfigError, match="merged settings of 'conv1'"):
        L1NormPruner(LeNet5(), [{"op_types": ["Conv2d"], "sparse_ratio": 0.5, "min_sparse_ratio": 0.6},
                                {"op_names": ["conv1"], "max_sparse_ratio": 0.3, "sparse_ratio": 0.2}])


def test_total_sparsity_with_an_explicit_global_group_id():
    model = LeNet5()
    pruner = L1NormPruner(model, [{"op_types": ["Conv2d"], "total_sparsity": 0.5, "global_group_id": "g"},
                                  {"op_types": ["Linear"], "global_group_id": "g", "total_sparsity": 0.5}])
    assert {s["weight"]["global_group_id"] for s in pruner.settings.values()} == {"g"}


def test_a_compress_without_any_mask_says_why():
    config = [{"op_names": ["relu1"], "target_names": ["_output_"],
               "target_settings": {"_output_": {"align": {"module_name": "conv1", "target_name": "weight",
                                                          "dims": [0]}}}}]
    with pytest.raises(ConfigError, match="produced no mask.*aligns to another mask"):
        L1NormPruner(LeNet5(), config).compress()
