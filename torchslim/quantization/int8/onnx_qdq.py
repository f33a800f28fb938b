"""ONNX with QuantizeLinear / DequantizeLinear nodes carrying our scales, run by onnxruntime.

The float model is exported with torch's ``fake_quantize_per_*`` ops at every calibrated
tensor (they export as Q/DQ pairs); a BatchNorm folded during QAT is folded into its conv
first; weight Q nodes are then constant-folded into int8 initializers so onnxruntime's QDQ
optimizer fuses ``DQ → Conv/Gemm → Q`` into integer kernels.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from torchslim.errors import require
from torchslim.quantization.int8.common import (
    activation_qparams, bn_folded_weight, float_copy, is_affine_entry, weight_qparams,
)
from torchslim.quantization.hooks import ModuleQuant, attach, canonical_target


class _ExportQuant:
    """Quantize-dequantize with torch's exportable fake-quant ops at fixed qparams (exported as Q/DQ)."""

    observe_only = False

    def __init__(self, entry: Mapping[str, Any], where: str, weight: torch.Tensor | None) -> None:
        if weight is not None:
            self.scale, self.zero_point, self.axis = weight_qparams(entry, where, weight.dim())
            self.range = (-128, 127)
        else:
            scale, zero_point = activation_qparams(entry, where)
            self.scale = torch.tensor(scale, dtype=torch.float)
            self.zero_point, self.axis, self.range = torch.tensor(zero_point, dtype=torch.int32), None, (0, 255)

    def __call__(self, x: torch.Tensor, module: nn.Module | None = None, target: str = "") -> torch.Tensor:
        if self.axis is not None:
            return torch.fake_quantize_per_channel_affine(x, self.scale, self.zero_point, self.axis, *self.range)
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, *self.range)


def qdq_copy(model: nn.Module, calibration: Mapping[str, Mapping[str, Any]]) -> nn.Module:
    """A float copy of ``model`` whose calibrated tensors pass through exportable fake quantization."""
    plain = float_copy(model)
    modules = dict(plain.named_modules())
    for name, entries in calibration.items():
        module = modules.get(name)
        if module is None:
            continue
        weight_entry = entries.get("weight", {})
        bn_name = weight_entry.get("fused_bn")
        if bn_name is not None:
            _fold_bn(module, modules[bn_name])
            plain.set_submodule(bn_name, nn.Identity())
        targets = {}
        for target, entry in entries.items():
            target = canonical_target(target)
            if bn_name is not None and target.startswith("_output") and entry.get("observed_only"):
                continue  # a range observed before the BatchNorm was folded in: that tensor no longer exists
            if is_affine_entry(entry):
                weight = None if target.startswith("_") else getattr(module, target)
                targets[target] = _ExportQuant(entry, f"{name}.{target}", weight)
        if targets:
            attach(module, ModuleQuant(name, targets))
    return plain


@torch.no_grad()
def _fold_bn(conv: nn.Module, bn: nn.Module) -> None:
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(std)
    conv.weight.copy_(bn_folded_weight(conv.weight, bn))
    new_bias = (bias - bn.running_mean) * gamma / std + beta
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias)
    else:
        conv.bias.copy_(new_bias)


def export_qdq_onnx(model: nn.Module, calibration: Mapping[str, Mapping[str, Any]], example_input: Any,
                    path: str | Path) -> Path:
    """Write a QDQ ONNX model of ``model`` with ``calibration``'s scales; returns the path."""
    from torchslim.utils.onnx_export import export_onnx

    onnx = require("onnx", "onnx", "ONNX export")
    path = export_onnx(qdq_copy(model, calibration), example_input, path, opset_version=17)
    graph = onnx.load(str(path))
    _fold_weight_quantize(graph)
    onnx.save(graph, str(path))
    return Path(path)


def _fold_weight_quantize(model: Any) -> None:
    """Replace ``QuantizeLinear(float initializer)`` by an int8 initializer (what onnxruntime's QDQ fusion expects)."""
    import numpy as np
    from onnx import numpy_helper

    graph = model.graph
    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    remove = []
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or any(i not in consts for i in node.input):
            continue
        x, scale, zp = (consts[i] for i in node.input[:3])
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.ndim == 1 and scale.size > 1:
            shape = [1] * x.ndim
            shape[axis] = -1
            scale, zp_b = scale.reshape(shape), zp.reshape(shape)
        else:
            zp_b = zp
        info = np.iinfo(zp.dtype)
        q = np.clip(np.rint(x / scale) + zp_b.astype(np.int32), info.min, info.max).astype(zp.dtype)
        graph.initializer.append(numpy_helper.from_array(q, node.output[0]))
        remove.append(node)
    for node in remove:
        graph.node.remove(node)
    used = {i for node in graph.node for i in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


class OnnxRuntimeInt8Model(nn.Module):
    """Runs a QDQ ONNX model in onnxruntime; torch tensors in, torch tensors out."""

    backend = "onnxruntime"

    def __init__(self, path: Path, threads: int = 2, report: list[dict[str, Any]] | None = None,
                 spin: bool = True) -> None:
        super().__init__()
        ort = require("onnxruntime", "onnx", "the onnxruntime int8 backend")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if not spin:  # idle threads sleep instead of spinning: kinder to oversubscribed cores
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.report = report or []

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        feeds = {n: a.detach().cpu().numpy() for n, a in zip(self.input_names, args)}
        outputs = self.session.run(None, feeds)
        return torch.from_numpy(outputs[0]) if len(outputs) == 1 else tuple(torch.from_numpy(o) for o in outputs)

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("an onnxruntime session cannot be pickled; keep the .onnx file (model.path)")


__all__ = ["OnnxRuntimeInt8Model", "export_qdq_onnx", "qdq_copy"]
