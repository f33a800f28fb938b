"""Real int8 models from a calibration config: PyTorch x86 kernels or onnxruntime QDQ."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

BACKENDS = ("auto", "x86", "onnxruntime")


def deploy(model: nn.Module, calibration_config: Mapping[str, Mapping[str, Any]] | None = None,
           example_input: Any = None, backend: str = "auto", **kwargs: Any) -> nn.Module:
    """A callable model running int8 kernels with the calibration config's scales.

    ``model`` is the fake-quantized model (or its float twin); ``calibration_config`` defaults
    to the one of the quantizer attached to ``model``. ``backend='auto'`` picks PyTorch's x86
    kernels (measured 2-3x faster than onnxruntime's int8 on this project's 2-core CPU,
    see benchmarks/results/quantization.md) and falls back to onnxruntime when the model
    cannot be traced by torch.fx or torch has no x86/fbgemm engine.
    """
    if backend not in BACKENDS:
        from torchslim.errors import ConfigError

        raise ConfigError(f"invalid value {backend!r} for 'backend'; allowed: {', '.join(map(repr, BACKENDS))}")
    if example_input is None:
        raise ValueError("deploy() needs example_input (one batch of real or dummy input)")
    if calibration_config is None:
        calibration_config = calibration_of(model)
    if backend == "auto":
        backend = _auto_backend()
        if backend == "x86":
            try:
                from torchslim.quantization.int8.fx_x86 import build_x86

                return build_x86(model, calibration_config, example_input)
            except RuntimeError:
                backend = "onnxruntime"
    if backend == "x86":
        from torchslim.quantization.int8.fx_x86 import build_x86

        return build_x86(model, calibration_config, example_input)
    from torchslim.quantization.int8.onnx_qdq import build_onnxruntime

    return build_onnxruntime(model, calibration_config, example_input, **kwargs)


def _auto_backend() -> str:
    engines = torch.backends.quantized.supported_engines
    return "x86" if ("x86" in engines or "fbgemm" in engines) else "onnxruntime"


def calibration_of(model: nn.Module) -> dict[str, dict[str, Any]]:
    """The calibration config held by the fake quantizers attached to ``model``."""
    from torchslim.quantization.hooks import quant_state

    config = {}
    for name, module in model.named_modules():
        state = quant_state(module)
        if state is not None:
            config[name] = {t: q.export() for t, q in state.targets.items()}
            if state.bn is not None and "weight" in config[name]:
                config[name]["weight"]["fused_bn"] = next(n for n, m in model.named_modules() if m is state.bn)
    if not config:
        raise ValueError("the model carries no quantizer: pass calibration_config")
    return config


__all__ = ["BACKENDS", "calibration_of", "deploy"]
