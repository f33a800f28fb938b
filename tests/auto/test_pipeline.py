"""compress(): budgets met on the built model, outputs verified, the user's model untouched."""
import copy

import pytest
import torch

from torchslim.auto import compress
from torchslim.auto.mnist import accuracy_on, finetune
from torchslim.errors import ConfigError
from torchslim.models import LeNet5
from torchslim.speedup import load
from torchslim.utils.metrics import count_macs, count_params

from .test_units import TinyNet


def test_params_budget_on_lenet5(trained_lenet5, mnist_small, tmp_path):
    fit, val, _ = mnist_small
    before = copy.deepcopy(trained_lenet5.state_dict())
    result = compress(trained_lenet5, torch.randn(1, 1, 28, 28), accuracy_on(val), {"params": 2421},
                      lambda m: finetune(m, fit, 1), algorithm="netadapt", cache_dir=tmp_path)
    assert result.met
    assert count_params(result.model) <= 2421 == result.bounds[0]["value"]
    assert result.compressed["params"] == count_params(result.model)
    assert result.speedup["max_abs_diff"] is not None  # speedup checked the shrunk model against the masked one
    assert result.compressed["score"] > 50.0
    for key, value in trained_lenet5.state_dict().items():
        assert torch.equal(value, before[key])  # the user's model is not modified
    out = result.save(tmp_path / "run")
    assert {p.name for p in out.iterdir()} >= {"model.pt", "report.json", "report.md", "report.png"}
    loaded = load(out / "model.pt", model=LeNet5())  # the safe form: tensors and plain data only
    x = torch.randn(4, 1, 28, 28)
    assert torch.allclose(loaded(x), result.model(x))
    assert "| conv2 |" in result.summary()


def test_macs_budget_with_sensitivity_proxy(trained_lenet5, mnist_small, tmp_path):
    _, val, _ = mnist_small
    result = compress(trained_lenet5, torch.randn(1, 1, 28, 28), accuracy_on(val), {"macs": "25%"},
                      algorithm="anneal", proxy="sensitivity", cache_dir=tmp_path)
    assert result.met and count_macs(result.model, torch.randn(1, 1, 28, 28)) <= 0.25 * result.dense["macs"]
    assert result.sensitivity is not None and len(list(tmp_path.glob("sensitivity-*.json"))) == 1


def test_latency_budget_structure_only(tmp_path):
    torch.manual_seed(0)
    model = TinyNet().eval()
    result = compress(model, torch.randn(1, 3, 16, 16), None, {"latency_ms": "0.6x"},
                      latency_input=torch.randn(16, 3, 32, 32), threads=1, latency_rounds=2, max_rounds=2,
                      cache_dir=tmp_path)
    assert result.proxy == "magnitude"
    first = result.rounds[0]
    assert first["measured"]["latency"] > 0 and first["measured"]["dense_latency"] > 0
    assert result.compressed["params"] < result.dense["params"]


@pytest.mark.parametrize("kwargs,match", [
    ({"target": None}, "needs a target"),
    ({"target": {"params": 10}, "proxy": "evaluate"}, "needs evaluate_fn"),
    ({"target": {"params": 10}, "pruner": "taylor"}, "'taylor'"),
    ({"target": {"params": 10}, "algorithm": "rl"}, "'rl'"),
    ({"target": {"params": 10}, "quantize": True}, "calibration_data"),
])
def test_bad_arguments_are_refused_before_any_work(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        compress(TinyNet(), torch.randn(1, 3, 16, 16), **kwargs)
