"""Fake quantization through hooks: STE gradients, custom backward, unchanged modules, pruning composition."""
import copy
import pickle

import torch
from torch import nn

from torchslim.models import LeNet5
from torchslim.pruning import L1NormPruner
from torchslim.quantization import LsqQuantizer, QATQuantizer, QuantGrad, Quantizer, QuantType
from torchslim.quantization.fake_quant import quantize_dequantize

W_CFG = [{"op_types": ["Conv2d", "Linear"], "target_names": ["weight"], "quant_dtype": "int8"}]


def test_clipped_ste_passes_gradient_inside_the_range_only():
    x = torch.tensor([-3.0, -0.5, 0.2, 0.9, 4.0], requires_grad=True)
    scale, zp = torch.tensor(0.01), torch.tensor(0.0)  # representable: [-1.28, 1.27]
    y = QuantGrad.apply(x, scale, zp, -128, 127, QuantType.INPUT)
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0]))
    assert torch.allclose(y, torch.tensor([-1.28, -0.5, 0.2, 0.9, 1.27]))


def test_quantize_dequantize_lands_on_the_grid():
    x = torch.randn(1000)
    scale, zp = torch.tensor(0.05), torch.tensor(3.0)
    q = quantize_dequantize(x, scale, zp, -128, 127)
    codes = q / scale + zp
    assert torch.allclose(codes, codes.round(), atol=1e-4)
    assert codes.min() >= -128 and codes.max() <= 127


def test_hooks_keep_module_class_parameters_and_state_dict_keys():
    model = LeNet5()
    keys, params = list(model.state_dict()), [id(p) for p in model.parameters()]
    QATQuantizer(model, W_CFG).compress()
    model(torch.randn(2, 1, 28, 28))
    assert type(model.conv1) is nn.Conv2d
    assert list(model.state_dict()) == keys
    assert [id(p) for p in model.parameters()] == params
    assert isinstance(model.conv1.weight, nn.Parameter)


def test_weights_are_quantized_in_forward_and_gradients_reach_the_parameter():
    torch.manual_seed(0)
    model = LeNet5()
    x = torch.randn(4, 1, 28, 28)
    float_out = model(x)
    QATQuantizer(model, W_CFG).compress()
    seen = {}
    model.fc1.register_forward_pre_hook(lambda m, a: seen.update(w=m.weight.detach().clone()))
    out = model(x)
    w = seen["w"]
    scale = float(model.fc1.weight.detach().max() - model.fc1.weight.detach().min()) / 255
    assert len(torch.unique(w)) <= 256 and not torch.equal(w, model.fc1.weight.detach())
    assert torch.allclose(w, model.fc1.weight.detach(), atol=float(scale))
    assert not torch.equal(out, float_out)
    out.sum().backward()
    assert model.fc1.weight.grad is not None and model.fc1.weight.grad.abs().sum() > 0


def test_custom_backward_via_quant_grad_subclass():
    class ZeroGrad(QuantGrad):
        @staticmethod
        def quant_backward(tensor, grad_output, quant_type, scale, zero_point, qmin, qmax):
            return grad_output * 0 if quant_type == QuantType.QUANT_WEIGHT else grad_output

    model = LeNet5()
    quantizer = QATQuantizer(model, [{"op_names": ["fc3"], "target_names": ["weight"]}])
    quantizer.quant_grad = ZeroGrad
    model(torch.randn(2, 1, 28, 28)).sum().backward()
    assert model.fc3.weight.grad.abs().sum() == 0
    assert model.fc2.weight.grad.abs().sum() > 0


def test_custom_quantizer_methods_are_called():
    class Halve(Quantizer):
        def quantize_weight(self, weight, config, **kwargs):
            return weight * 0.5

        def quantize_output(self, output, config, **kwargs):
            return output.clamp(max=0.1)

    model = LeNet5()
    x = torch.randn(2, 1, 28, 28)
    Halve(model, [{"op_names": ["fc3"], "target_names": ["weight", "_output_"]}]).compress()
    out = model(x)
    assert out.max() <= 0.1 + 1e-6


def test_unwrap_restores_float_behaviour():
    torch.manual_seed(0)
    model = LeNet5()
    x = torch.randn(2, 1, 28, 28)
    ref = model(x)
    quantizer = QATQuantizer(model, [{"op_types": ["default"], "target_names": ["_input_", "weight", "_output_"]}])
    quantizer.track_forward(x)
    assert not torch.allclose(model.eval()(x), ref)
    quantizer.unwrap_model()
    assert torch.equal(model(x), ref)
    assert not model.conv1._forward_pre_hooks and not model.conv1._forward_hooks


def test_quantized_model_pickles_and_deep_copies():
    model = LeNet5()
    quantizer = QATQuantizer(model, [{"op_types": ["default"], "target_names": ["_input_", "weight"]}])
    x = torch.randn(2, 1, 28, 28)
    quantizer.track_forward(x)
    out = model.eval()(x)
    assert torch.equal(pickle.loads(pickle.dumps(model))(x), out)
    assert torch.equal(copy.deepcopy(model)(x), out)


def test_composes_with_pruning_masks_on_one_model():
    torch.manual_seed(0)
    model = LeNet5()
    pruner = L1NormPruner(model, [{"op_types": ["Conv2d"], "sparse_ratio": 0.5}])
    quantizer = QATQuantizer.from_compressor(pruner, W_CFG)
    _, calibration = quantizer.compress()
    mask = pruner.get_masks()["conv2"]["weight"]
    seen = {}
    model.conv2.register_forward_pre_hook(lambda m, a: seen.update(w=m.weight.detach().clone()))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(8, 1, 28, 28)).sum().backward()
        optimizer.step()
    assert torch.count_nonzero(model.conv2.weight * (1 - mask)) == 0  # masks still hold after steps
    assert torch.count_nonzero(seen["w"] * (1 - mask)) == 0  # quantized weight keeps the zeros
    assert "conv2" in calibration and list(model.state_dict())[:2] == ["conv1.weight", "conv1.bias"]


def test_lsq_step_sizes_are_trained():
    torch.manual_seed(0)
    model = LeNet5()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(8, 1, 28, 28)
    quantizer = LsqQuantizer(model, [{"op_types": ["Linear"], "target_names": ["_input_", "weight"]}], optimizer,
                             dummy_input=x)
    quantizer.compress()
    params = quantizer.quant_parameters()
    assert len(params) == 6  # 3 Linear x (input, weight)
    before = [p.detach().clone() for p in params]
    loss = model(x).pow(2).mean()
    loss.backward()
    optimizer.step()
    assert all(p.grad is not None for p in params)
    assert any(not torch.equal(a, p) for a, p in zip(before, params))


def test_per_channel_and_block_granularities_give_one_scale_per_block():
    model = LeNet5()
    cfg = [{"op_names": ["fc1"], "target_names": ["weight"], "quant_scheme": "symmetric", "granularity": "per_channel"},
           {"op_names": ["fc2"], "target_names": ["weight"], "granularity": [1, 40]},
           {"op_names": ["conv2"], "target_names": ["weight"], "granularity": "in_channel"}]
    calibration = QATQuantizer(model, cfg).get_calibration_config()
    assert calibration["fc1"]["weight"]["scale"].shape == (120, 1)
    assert torch.allclose(calibration["fc1"]["weight"]["scale"].flatten(), model.fc1.weight.detach().abs().amax(1) / 127)
    assert calibration["fc2"]["weight"]["scale"].shape == (84, 3)  # 120 inputs in blocks of 40
    assert calibration["conv2"]["weight"]["scale"].shape == (1, 6, 1, 1)
    seen = {}
    model.fc2.register_forward_pre_hook(lambda m, a: seen.update(w=m.weight.detach().clone()))
    model(torch.randn(2, 1, 28, 28))
    block = seen["w"][:, :40] / calibration["fc2"]["weight"]["scale"][:, :1]
    codes = block + calibration["fc2"]["weight"]["zero_point"][:, :1]
    assert torch.allclose(codes, codes.round(), atol=1e-3)
