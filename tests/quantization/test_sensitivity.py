"""Per-layer sensitivity on the user's data, and mixed precision keeping the worst layers in fp32."""
import copy

import pytest
import torch
from torch.utils.data import DataLoader, Subset

from torchslim.quantization import PtqQuantizer
from torchslim.quantization.int8.sensitivity import deploy_mixed, sensitivity

CFG = [{"op_types": ["Conv2d", "Linear"], "target_names": ["_input_", "weight"], "quant_dtype": "int8"}]


@pytest.fixture
def lenet_calibration(trained_lenet5, mnist):
    _, calibration = PtqQuantizer(trained_lenet5, CFG).compress(DataLoader(Subset(mnist[0], range(256)), batch_size=128))
    return trained_lenet5.eval(), calibration


def damaged(calibration, layer):
    """A calibration whose ``layer`` weight grid is 100x too coarse (a mutation the report must find)."""
    bad = copy.deepcopy(calibration)
    bad[layer]["weight"]["scale"] = bad[layer]["weight"]["scale"] * 100
    return bad


def test_report_ranks_the_damaged_layer_first(lenet_calibration, mnist):
    model, calibration = lenet_calibration
    data = DataLoader(Subset(mnist[1], range(256)), batch_size=128)
    clean = sensitivity(model, calibration, data)
    assert {r["layer"] for r in clean.rows} == set(calibration)
    assert clean.total_rel_err < 0.05 and all(r["rel_err"] <= clean.total_rel_err * 1.5 + 1e-3 for r in clean.rows)
    for layer in ("conv2", "fc1"):
        report = sensitivity(model, damaged(calibration, layer), data)
        assert report.worst(1) == [layer] and report.rows[0]["rel_err"] > 3 * clean.rows[0]["rel_err"]
    assert "| 1 | fc1 |" in report.to_markdown()


def test_mixed_precision_keeps_the_worst_layer_float_and_shows_its_cost(lenet_calibration, mnist):
    model, calibration = lenet_calibration
    bad = damaged(calibration, "fc1")
    x = mnist[1].tensors[0][:64]
    mixed = deploy_mixed(model, bad, x, [x], keep_fp32=1, backend="onnxruntime")
    info = mixed.mixed_precision
    assert info["kept_fp32"] == ["fc1"]
    assert info["rel_err_mixed"] < info["rel_err_int8"] / 2
    assert info["ms_int8"] > 0 and info["slowdown"] == pytest.approx(info["ms_mixed"] / info["ms_int8"])
    assert not any(r["tensor"].startswith("fc1.") for r in mixed.report)


def test_simulated_int8_matches_the_fake_quant_model_when_batchnorm_is_folded():
    """An output range observed before a BatchNorm was folded in must not clip the folded conv."""
    from torch import nn

    from torchslim.quantization.int8.onnx_qdq import qdq_copy

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
                          nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU6(),
                          nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4))
    with torch.no_grad():
        for bn in (model[1], model[4], model[7]):
            bn.weight.uniform_(2.0, 6.0)
            bn.bias.uniform_(-1.0, 1.0)
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(16, 3, 12, 12))
    model.eval()
    cfg = [{"op_types": ["Conv2d"], "target_names": ["_input_"], "quant_dtype": "int8", "quant_scheme": "affine"},
           {"op_types": ["Conv2d"], "target_names": ["weight"], "quant_dtype": "int8", "quant_scheme": "symmetric",
            "granularity": "per_channel"}]
    batches = [torch.randn(16, 3, 12, 12) for _ in range(2)]
    fake = copy.deepcopy(model)
    _, calibration = PtqQuantizer(fake, cfg, bn_folding=True).compress(batches)
    x = torch.randn(8, 3, 12, 12)
    with torch.no_grad():
        ref = model(x)
        err = {name: float((net(x) - ref).norm() / ref.norm())
               for name, net in (("fake", fake.eval()), ("simulated", qdq_copy(model, calibration)))}
    assert err["simulated"] < 0.05 and abs(err["simulated"] - err["fake"]) < 0.01, err
