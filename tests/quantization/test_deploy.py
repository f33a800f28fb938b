"""Real int8 models from the calibration config: PyTorch x86 kernels and onnxruntime QDQ."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from torchslim.errors import ConfigError
from torchslim.pruning import L1NormPruner
from torchslim.quantization import PtqQuantizer, QATQuantizer, deploy
from torchslim.utils.training import evaluate_accuracy

CFG = [{"op_types": ["Conv2d", "Linear"], "target_names": ["_input_", "weight"], "quant_dtype": "int8"},
       {"op_types": ["Conv2d", "Linear"], "target_names": ["weight"], "quant_scheme": "symmetric",
        "granularity": "per_channel"}]


def agreement(a, b):
    return float((a - b).norm() / b.norm()), float((a.argmax(1) == b.argmax(1)).float().mean())


@pytest.fixture
def ptq_lenet5(trained_lenet5, mnist):
    train, _ = mnist
    _, calibration = PtqQuantizer(trained_lenet5, CFG).compress(DataLoader(Subset(train, range(512)), batch_size=128))
    return trained_lenet5.eval(), calibration


@pytest.mark.parametrize("backend", ["x86", "onnxruntime"])
def test_deployed_int8_matches_fake_quant_on_mnist(ptq_lenet5, mnist, backend):
    model, calibration = ptq_lenet5
    test = mnist[1]
    x = test.tensors[0]
    deployed = deploy(model, calibration, x[:64], backend=backend)
    with torch.no_grad():
        rel, argmax = agreement(deployed(x), model(x))
    assert rel < 0.03 and argmax > 0.99
    assert abs(evaluate_accuracy(deployed, test) - evaluate_accuracy(model, test)) < 0.5


def test_x86_model_runs_quantized_kernels_with_our_scales(ptq_lenet5, mnist):
    model, calibration = ptq_lenet5
    deployed = deploy(model, calibration, mnist[1].tensors[0][:64], backend="x86")
    kinds = {type(m).__module__ for m in deployed.model.modules()}
    assert any("quantized" in k for k in kinds)
    qfc1 = deployed.model.get_submodule("fc1")
    assert torch.allclose(qfc1.weight().q_per_channel_scales().float(), calibration["fc1"]["weight"]["scale"].flatten())
    sources = {r["source"] for r in deployed.report}
    assert {"conv1._input_0", "conv2._input_0", "fc1._input_0", "fc2._input_0"} <= sources
    assert abs(qfc1.scale - float(calibration["fc2"]["_input_0"]["scale"])) < 1e-6  # fc1 → relu → fc2's input grid


def test_auto_backend_keeps_the_faster_correct_one(ptq_lenet5, mnist):
    model, calibration = ptq_lenet5
    deployed = deploy(model, calibration, mnist[1].tensors[0][:64])
    choice = deployed.auto_choice
    assert set(choice["timings"]) == {"x86", "onnxruntime"}
    assert choice["chosen"] == deployed.backend
    assert all(t["correct"] and t["rel_err"] < 0.03 for t in choice["timings"].values())
    assert choice["timings"][deployed.backend]["ms"] == min(t["ms"] for t in choice["timings"].values())


def test_seed_config_with_relu_outputs_deploys(trained_lenet5, mnist):
    cfg = [{"op_names": ["conv1", "conv2", "fc1", "fc2"], "target_names": ["_input_", "weight", "_output_"],
            "quant_dtype": "int8", "quant_scheme": "affine"},
           {"op_names": ["relu1", "relu2"], "target_names": ["_output_"], "quant_dtype": "int8", "quant_scheme": "affine"}]
    x = mnist[0].tensors[0][:256]
    _, calibration = PtqQuantizer(trained_lenet5, cfg).compress([x])
    deployed = deploy(trained_lenet5, calibration, x[:16], backend="x86")
    with torch.no_grad():
        rel, argmax = agreement(deployed(x), trained_lenet5(x))
    assert rel < 0.05 and argmax > 0.98


class ConvBnNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.relu, self.pool, self.fc = nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Linear(8, 10)

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)) + y)
        return self.fc(torch.flatten(self.pool(y), 1))


@pytest.mark.parametrize("backend", ["x86", "onnxruntime"])
def test_qat_bn_folding_deploys_with_folded_weights(backend):
    torch.manual_seed(0)
    model = ConvBnNet()
    quantizer = QATQuantizer(model, CFG, bn_folding=True)
    quantizer.compress()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(10):
        optimizer.zero_grad()
        model(torch.randn(16, 3, 12, 12)).pow(2).mean().backward()
        optimizer.step()
    calibration = quantizer.get_calibration_config()
    assert calibration["conv1"]["weight"]["fused_bn"] == "bn1" and calibration["conv2"]["weight"]["fused_bn"] == "bn2"
    model.eval()
    x = torch.randn(64, 3, 12, 12)
    deployed = deploy(model, calibration, x, backend=backend)
    with torch.no_grad():
        rel, argmax = agreement(deployed(x), model(x))
    assert rel < 0.05 and argmax > 0.95


def test_pruned_and_quantized_model_deploys_with_zeros_kept(trained_lenet5, mnist):
    x = mnist[0].tensors[0][:256]
    pruner = L1NormPruner(trained_lenet5, [{"op_types": ["Conv2d"], "sparse_ratio": 0.5}])
    quantizer = PtqQuantizer.from_compressor(pruner, CFG)
    _, calibration = quantizer.compress([x])
    deployed = deploy(trained_lenet5, calibration, x[:16], backend="x86")
    qweight = deployed.model.get_submodule("conv2").weight().int_repr()
    mask = pruner.get_masks()["conv2"]["weight"]
    assert torch.count_nonzero(qweight * (1 - mask).to(torch.int8)) == 0
    with torch.no_grad():
        assert agreement(deployed(x), trained_lenet5(x))[1] > 0.97


def test_bad_backend_and_missing_example_input(ptq_lenet5):
    model, calibration = ptq_lenet5
    with pytest.raises(ConfigError, match="'x86', 'onnxruntime'"):
        deploy(model, calibration, torch.randn(1, 1, 28, 28), backend="tensorrt")
    with pytest.raises(ValueError, match="example_input"):
        deploy(model, calibration)
