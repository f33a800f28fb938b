"""The quantization family's NNI boundary: QAT_Quantizer, v2 call forms, v1's 3-argument quant_backward."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import torchslim.quantization as quantization
from torchslim.quantization import QATQuantizer, QuantGrad, QuantType, Quantizer

CFG = [{"quant_types": ["weight", "output"], "quant_bits": 8, "op_types": ["Linear"]}]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def test_qat_underscore_name():
    with pytest.warns(DeprecationWarning, match=r"^QAT_Quantizer is an NNI legacy form; use QATQuantizer "
                                                r"\(from torchslim.quantization\)$"):
        cls = quantization.QAT_Quantizer
    assert cls is QATQuantizer
    model = _model()
    cls(model, CFG).compress()
    model(torch.randn(3, 4))


def test_v2_optimizer_and_dummy_input_positions():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(3, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quantizer = QATQuantizer(model, CFG, optimizer, x)
    messages = [str(w.message) for w in caught]
    assert any("QATQuantizer(model, config_list, optimizer, ...) is an NNI legacy form" in m for m in messages)
    assert any("use QATQuantizer(model, config_list, evaluator, dummy_input=dummy_input)" in m for m in messages)
    assert quantizer.optimizer is optimizer and quantizer.dummy_input is x and quantizer.evaluator is None
    with pytest.deprecated_call(match="bound_model"):
        assert quantizer.bound_model is model


def test_typed_constructor_refuses_a_tensor_step():
    from torchslim.errors import ConfigError

    with pytest.raises(ConfigError, match="quant_start_step"):
        QATQuantizer(_model(), CFG, None, quant_start_step="7")


def test_three_argument_quant_backward():
    """NNI v1's custom gradient: quant_backward(tensor, grad_output, quant_type)."""
    seen = []

    class ClipGrad(QuantGrad):
        @staticmethod
        def quant_backward(tensor, grad_output, quant_type):
            seen.append(quant_type)
            if quant_type == QuantType.QUANT_OUTPUT:
                grad_output[torch.abs(tensor) > 1] = 0
            return grad_output

    class YourQuantizer(Quantizer):
        def __init__(self, model, config_list):
            super().__init__(model, config_list)
            self.quant_grad = ClipGrad

    model = _model()
    with pytest.deprecated_call(match=r"ClipGrad\.quant_backward\(tensor, grad_output, quant_type\) is an NNI legacy "
                                      r"form; use quant_backward\(tensor, grad_output, quant_type, scale, zero_point"):
        quantizer = YourQuantizer(model, CFG)
    quantizer.compress()
    model.train()
    model(torch.randn(16, 4) * 3).sum().backward()
    assert QuantType.QUANT_OUTPUT in seen and QuantType.QUANT_WEIGHT in seen
    assert model[0].weight.grad is not None


def test_seven_argument_quant_backward_is_not_wrapped():
    class Mine(QuantGrad):
        @staticmethod
        def quant_backward(tensor, grad_output, quant_type, scale, zero_point, qmin, qmax):
            return grad_output

    quantizer = Quantizer(_model(), CFG)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        quantizer.quant_grad = Mine
    assert quantizer.quant_grad is Mine
