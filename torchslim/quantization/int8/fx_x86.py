"""PyTorch's native int8 CPU path (fbgemm / x86 kernels) built from our calibration config.

torch.fx graph mode prepares the float model (fusing conv → bn → relu, placing one observer
per quantized tensor); every observer that a calibration entry describes is replaced by a
fixed one carrying that entry's scale / zero point, weights are re-quantized with the
calibrated weight scales after conversion, and only tensors the config does not cover keep
a range observed on the example input (listed in :attr:`X86Int8Model.report`).
Works on torch 2.x without torchao (``torch.ao.quantization.quantize_fx``).
"""
from __future__ import annotations

import operator
import warnings
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import fx, nn

from torchslim.quantization.int8.common import (
    activation_qparams, bn_folded_weight, example_args, float_copy, is_affine_entry, quantized_weight, x86_engine,
)
from torchslim.quantization.fusion import _BN, fused_chains, trace
from torchslim.quantization.int8.linear_x86 import swap_attention, swap_linears

_COMPUTE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
# ops whose output shares the input's quantization (observers look through them)
# Range-safe ones also let a consumer's input range describe their input: max pooling,
# ReLU and reshapes never produce a value outside what they drop; averaging shrinks the range.
_SAFE_MODULES = (nn.ReLU, nn.ReLU6, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.Flatten, nn.Dropout, nn.Identity)
_PASS_MODULES = _SAFE_MODULES + (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AvgPool1d,
                                 nn.AvgPool2d, nn.AvgPool3d)
_SAFE_FUNCTIONS = (F.relu, torch.relu, F.relu6, F.max_pool1d, F.max_pool2d, F.max_pool3d, torch.flatten, F.dropout,
                   operator.getitem)
_PASS_FUNCTIONS = _SAFE_FUNCTIONS + (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.avg_pool1d, F.avg_pool2d)
_FLOAT_OPS = (nn.LayerNorm, nn.GroupNorm, nn.Softmax, nn.GELU, nn.MultiheadAttention)
_FLOAT_FUNCTIONS = (F.layer_norm, F.group_norm, F.softmax, F.gelu, operator.add, torch.add, operator.mul, torch.mul)
_PASS_METHODS = ("view", "reshape", "flatten", "relu", "contiguous", "squeeze", "unsqueeze", "permute", "transpose")


def _quant_fx():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notices
        from torch.ao.quantization import QConfig, QConfigMapping, get_default_qconfig_mapping, quantize_fx
        from torch.ao.quantization.observer import FixedQParamsObserver, MinMaxObserver, default_per_channel_weight_observer
    return QConfig, QConfigMapping, get_default_qconfig_mapping, quantize_fx, FixedQParamsObserver, MinMaxObserver, \
        default_per_channel_weight_observer


class X86Int8Model(nn.Module):
    """A model running PyTorch's quantized x86 kernels; float in, float out."""

    backend = "x86"

    def __init__(self, graph_module: nn.Module, report: list[dict[str, Any]]) -> None:
        super().__init__()
        self.model = graph_module
        self.report = report

    def forward(self, *args: Any) -> Any:
        with torch.no_grad():
            return self.model(*args)


def _is_pass_through(node: fx.Node, modules: Mapping[str, nn.Module], safe_only: bool = False) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(node.target), _SAFE_MODULES if safe_only else _PASS_MODULES)
    if node.op == "call_function":
        return node.target in (_SAFE_FUNCTIONS if safe_only else _PASS_FUNCTIONS)
    return node.op == "call_method" and node.target in _PASS_METHODS


def _consumer_inputs(node: fx.Node, modules: Mapping[str, nn.Module], calibration: Mapping, depth: int = 0) -> list[str]:
    """Calibration keys ``module._input_0`` of the quantized modules that consume ``node``."""
    found = []
    for user in node.users:
        if user.op == "call_module" and user.target in calibration and "_input_0" in calibration[user.target] \
                and user.args and user.args[0] is node:
            found.append(f"{user.target}._input_0")
        elif depth < 8 and _is_pass_through(user, modules, safe_only=True):
            found += _consumer_inputs(user, modules, calibration, depth + 1)
    return found


def _producer_outputs(name: str, chains: Mapping[str, list[fx.Node]], modules: Mapping[str, nn.Module],
                      calibration: Mapping) -> list[str]:
    """Calibration keys ``module._output_0`` describing the output of the fused chain that starts at ``name``.

    A ReLU after a quantized output keeps its grid, so ``conv._output_0`` also describes
    conv → relu; a BatchNorm in between does not.
    """
    chain = chains.get(name, [])
    has_bn = bool(chain) and chain[0].op == "call_module" and isinstance(modules.get(chain[0].target), _BN)
    names = [n.target for n in reversed(chain) if n.op == "call_module"] + ([] if has_bn else [name])
    return [f"{n}._output_0" for n in names if "_output_0" in calibration.get(n, {})]


def _lookup(calibration: Mapping, key: str) -> Mapping[str, Any]:
    module, target = key.rsplit(".", 1)
    return calibration[module][target]


def build_x86(model: nn.Module, calibration: Mapping[str, Mapping[str, Any]], example_input: Any) -> X86Int8Model:
    """Convert ``model`` (fake-quantized or float) to int8 x86 kernels using ``calibration``."""
    QConfig, QConfigMapping, get_default_qconfig_mapping, quantize_fx, FixedQParamsObserver, MinMaxObserver, \
        weight_observer = _quant_fx()
    torch.backends.quantized.engine = x86_engine() or "fbgemm"
    plain = float_copy(model)
    transformer = any(isinstance(m, _FLOAT_OPS) for m in plain.modules())
    # transformers' Linear layers: int8 kernels with float outputs, swapped in without a trace
    swapped = swap_linears(plain, calibration) if transformer else []
    modules = dict(plain.named_modules())
    int8_layers = [name for name, module in modules.items()
                   if isinstance(module, _COMPUTE) and is_affine_entry(calibration.get(name, {}).get("weight", {}))
                   and not _inside_attention(name, modules)]
    example = example_args(example_input)
    if swapped and not int8_layers:  # no trace needed; attention's projections join, as on onnxruntime
        return X86Int8Model(plain, swapped + swap_attention(plain, example))
    graph = trace(plain)
    if graph is None:
        raise RuntimeError("the x86 int8 backend needs a torch.fx-traceable model")
    chains = fused_chains(plain, graph)

    qconfig = QConfig(activation=MinMaxObserver.with_args(dtype=torch.quint8), weight=weight_observer)
    if transformer:
        # transformers: only the calibrated layers run int8, everything between them stays float, as in
        # the fake-quant model (normalisation, softmax, GELU, residual adds, dropout, the class-token
        # concat on an 8-bit grid with ranges from one batch cost ViT-mini 0.43 relative logit error)
        qmap = QConfigMapping()
        for name in int8_layers:
            qmap.set_module_name(name, qconfig)
    else:
        # CNNs keep int8 adds, ReLUs and pooling between int8 convs; uncalibrated compute layers stay float
        qmap = get_default_qconfig_mapping("x86").set_global(qconfig)
        for name, module in modules.items():
            if isinstance(module, _COMPUTE) and name not in int8_layers:
                qmap.set_module_name(name, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = quantize_fx.prepare_fx(plain, qmap, example)
        with torch.no_grad():
            prepared(*example)  # ranges for tensors the calibration config does not describe
    report = _fix_observers(prepared, modules, chains, calibration, FixedQParamsObserver)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = quantize_fx.convert_fx(prepared)
    report += _set_weights(quantized, modules, calibration)
    _views_to_reshapes(quantized)
    return X86Int8Model(quantized.eval(), swapped + report)


def _inside_attention(name: str, modules: Mapping[str, nn.Module]) -> bool:
    """``nn.MultiheadAttention`` reads its output projection's weight itself: not a module call to quantize."""
    parent = name.rpartition(".")[0]
    return bool(name) and isinstance(modules.get(parent), nn.MultiheadAttention)


def _views_to_reshapes(graph_module: fx.GraphModule) -> None:
    """Quantized conv outputs are channels-last, where ``x.view(n, -1)`` fails; ``reshape`` copies when needed."""
    changed = False
    for node in graph_module.graph.nodes:
        if node.op == "call_method" and node.target == "view":
            node.target, changed = "reshape", True
    if changed:
        graph_module.recompile()


def _observer_groups(prepared: fx.GraphModule, modules: Mapping[str, nn.Module]) -> list[list[tuple[fx.Node, bool]]]:
    """Observer nodes that must share qparams (``obs → maxpool/relu/avgpool... → obs`` chains), each
    with whether only range-safe ops lie between it and the group's first observer."""
    group_of: dict[fx.Node, list[tuple[fx.Node, bool]]] = {}
    safe_of: dict[fx.Node, bool] = {}
    groups = []
    for node in prepared.graph.nodes:
        if node.op != "call_module" or "activation_post_process" not in str(node.target):
            continue
        producer, safe = node.args[0], True
        while _is_pass_through(producer, modules) and producer.args and isinstance(producer.args[0], fx.Node) \
                and producer.args[0] not in group_of:
            safe = safe and _is_pass_through(producer, modules, safe_only=True)
            producer = producer.args[0]
        head = producer.args[0] if _is_pass_through(producer, modules) and producer.args else None
        if head in group_of:
            safe = safe and safe_of[head] and _is_pass_through(producer, modules, safe_only=True)
            group_of[head].append((node, safe))
            group_of[node] = group_of[head]
        else:
            group_of[node] = [(node, True)]
            groups.append(group_of[node])
        safe_of[node] = safe
    return groups


def _fix_observers(prepared: fx.GraphModule, modules: Mapping[str, nn.Module], chains: Mapping,
                   calibration: Mapping, fixed_cls: Any) -> list[dict[str, Any]]:
    report = []
    for group in _observer_groups(prepared, modules):
        keys = []
        for node, safe in reversed(group):  # the tensor the next quantized layer consumes comes first
            if safe:
                keys += _consumer_inputs(node, modules, calibration)
        producer = group[0][0].args[0]
        if producer.op == "call_module":
            keys += _producer_outputs(producer.target, chains, modules, calibration)
        keys = [k for k in keys if is_affine_entry(_lookup(calibration, k))]
        keys.sort(key=lambda k: bool(_lookup(calibration, k).get("observed_only")))  # quantized grids first
        tensor = producer.name
        if not keys:
            observer = prepared.get_submodule(group[0][0].target)
            scale, zero_point = (float(v) for v in observer.calculate_qparams())
            source = "observed on example input"
        else:
            scale, zero_point = activation_qparams(_lookup(calibration, keys[0]), keys[0])
            source = keys[0]
        fixed = fixed_cls(scale, int(zero_point), dtype=torch.quint8, quant_min=0, quant_max=255)
        for node, _ in group:
            setattr(prepared, node.target, fixed)
        report.append({"tensor": tensor, "source": source, "scale": scale, "zero_point": int(zero_point)})
    return report


def _set_weights(quantized: nn.Module, modules: Mapping[str, nn.Module], calibration: Mapping) -> list[dict[str, Any]]:
    report = []
    for name, entries in calibration.items():
        entry = entries.get("weight")
        if entry is None or not is_affine_entry(entry):
            continue
        try:
            qmod = quantized.get_submodule(name)
        except AttributeError:
            continue
        if not hasattr(qmod, "set_weight_bias"):
            report.append({"tensor": f"{name}.weight", "source": "left float (no int8 kernel)"})
            continue
        weight = modules[name].weight
        bn_name = entry.get("fused_bn")
        if bn_name is None and _bn_folded(qmod, modules[name]):
            report.append({"tensor": f"{name}.weight", "source": "re-quantized after BN folding (per channel)"})
            continue
        if bn_name is not None:
            weight = bn_folded_weight(weight, modules[bn_name])
        qmod.set_weight_bias(quantized_weight(weight, entry, f"{name}.weight"), qmod.bias())
        report.append({"tensor": f"{name}.weight", "source": f"{name}.weight"})
    return report


def _bn_folded(qmod: nn.Module, float_module: nn.Module) -> bool:
    """Whether conversion folded a BatchNorm into this layer (its weight then differs from the float one)."""
    qweight = qmod.weight()
    return not torch.allclose(qweight.dequantize(), float_module.weight.detach(), atol=float(qweight.q_per_channel_scales().max()
                              if qweight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
                              else qweight.q_scale()) * 1.01)


__all__ = ["X86Int8Model", "build_x86"]
