"""Dynamic int8: weights on the calibration config's grid, activation ranges taken per batch at run time.

A config entry ``{"target_names": ["_input_"], "dynamic": True}`` marks a layer's input dynamic; its
calibration entry then holds ``dynamic: True`` and no scale. Two backends run such layers:

* 'x86': ``torch.ao`` dynamic ``Linear`` kernels (fbgemm / x86), weights replaced by our int8 grid;
* 'onnxruntime': ``onnxruntime.quantization.quantize_dynamic`` (``DynamicQuantizeLinear`` +
  ``MatMulInteger``), weight scales pinned to ours through ``TensorQuantOverrides``.
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from torchslim.errors import require
from torchslim.quantization.int8.common import example_args, float_copy, quantized_weight, weight_qparams, x86_engine
from torchslim.quantization.int8.fx_x86 import X86Int8Model
from torchslim.quantization.int8.onnx_qdq import OnnxRuntimeInt8Model


def is_dynamic_entry(entry: Mapping[str, Any]) -> bool:
    return bool(entry.get("dynamic"))


def dynamic_layers(calibration: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Layers whose input the calibration config quantizes dynamically."""
    return [name for name, entries in calibration.items()
            if any(is_dynamic_entry(e) for t, e in entries.items() if t.startswith("_input"))]


def build_dynamic_x86(model: nn.Module, calibration: Mapping[str, Mapping[str, Any]]) -> X86Int8Model:
    """``nn.Linear`` layers with dynamic inputs → torch's dynamic int8 Linear, weights on our grid."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    torch.backends.quantized.engine = x86_engine() or "fbgemm"
    plain = float_copy(model)
    modules = dict(plain.named_modules())
    names = [n for n in dynamic_layers(calibration) if type(modules.get(n)) in (nn.Linear, nn.modules.linear.NonDynamicallyQuantizableLinear)
             and "weight" in calibration[n] and "scale" in calibration[n]["weight"]]
    if not names:
        raise ValueError("no nn.Linear layer has a dynamic input and a calibrated weight in the calibration config")
    weights = {n: modules[n].weight.detach().clone() for n in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = quantize_dynamic(plain, {n: per_channel_dynamic_qconfig for n in names}, dtype=torch.qint8)
    report = []
    for name in names:
        qmod = quantized.get_submodule(name)
        qmod.set_weight_bias(quantized_weight(weights[name], calibration[name]["weight"], f"{name}.weight"), qmod.bias())
        report += [{"tensor": f"{name}.weight", "source": f"{name}.weight"},
                   {"tensor": f"{name}._input_0", "source": "dynamic (per batch)"}]
    return X86Int8Model(quantized.eval(), report)


def build_dynamic_ort(model: nn.Module, calibration: Mapping[str, Mapping[str, Any]], example_input: Any,
                      onnx_path: str | Path | None = None, threads: int = 2, spin: bool = True) -> OnnxRuntimeInt8Model:
    """The float model exported to ONNX and quantized by onnxruntime's dynamic quantizer, our weight scales."""
    onnx = require("onnx", "onnx", "the onnxruntime int8 backend")
    require("onnxruntime", "onnx", "the onnxruntime int8 backend")
    from onnx import numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from torchslim.quantization.int8.ort_static import attention_modules, module_of
    from torchslim.utils.onnx_export import export_onnx

    dynamic = set(dynamic_layers(calibration))
    out = Path(onnx_path) if onnx_path is not None else Path(tempfile.mkdtemp(prefix="torchslim-int8-")) / "model_dyn.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    fp32 = out.with_suffix(".fp32.onnx")
    plain = float_copy(model)
    attention = attention_modules(plain)
    export_onnx(plain, example_args(example_input), fp32)
    graph = onnx.load(str(fp32)).graph
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    overrides, exclude, report = {}, [], []
    for node in graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        name = module_of(node.name)
        weight = node.input[1]
        if name in attention and weight in initializers:
            report.append({"tensor": node.name, "source": "nn.MultiheadAttention projection, dynamic, onnxruntime's weight scales"})
            continue
        if name not in dynamic or weight not in initializers or "scale" not in calibration[name].get("weight", {}):
            exclude.append(node.name)
            continue
        scale, zero_point, axis = weight_qparams(calibration[name]["weight"], f"{name}.weight", initializers[weight].ndim)
        items = [{"scale": np.array(s, dtype=np.float32), "zero_point": np.array(z, dtype=np.int8)}
                 for s, z in zip(scale.reshape(-1).tolist(), zero_point.reshape(-1).tolist())]
        if axis is not None:
            items[0]["axis"] = 0 if node.op_type == "Gemm" else 1  # MatMul weights are stored transposed
        overrides[weight] = items
        report += [{"tensor": f"{name}.weight", "source": f"{name}.weight"},
                   {"tensor": f"{name}._input_0", "source": "dynamic (per batch)"}]
    if not overrides:
        fp32.unlink(missing_ok=True)
        raise ValueError("no MatMul/Gemm of the exported model has a dynamic input and a calibrated weight")
    per_channel = any("axis" in items[0] for items in overrides.values())
    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=per_channel,
                     nodes_to_exclude=exclude, op_types_to_quantize=["MatMul", "Gemm"],
                     extra_options={"TensorQuantOverrides": overrides, "MatMulConstBOnly": True})
    fp32.unlink(missing_ok=True)
    return OnnxRuntimeInt8Model(out, threads, report=report, spin=spin)


__all__ = ["build_dynamic_ort", "build_dynamic_x86", "dynamic_layers", "is_dynamic_entry"]
