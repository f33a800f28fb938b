"""onnxruntime int8 through its own static quantizer, with our calibration as tensor overrides.

The float model is exported to ONNX (BatchNorm folded by the exporter) and quantized by
``onnxruntime.quantization.quantize_static`` (QDQ, U8 activations, S8 per-channel weights), so
the graph has exactly the shape onnxruntime's fusions expect (QLinearConv, QLinearAdd, ...);
every tensor that a calibration entry describes gets that entry's scale and zero point through
``TensorQuantOverrides``, and only the others keep ranges observed on the example input.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from torch import nn

from torchslim.errors import require
from torchslim.quantization.fusion import _BN, fused_chains
from torchslim.quantization.int8.common import (
    activation_qparams, example_args, float_copy, is_affine_entry, weight_qparams,
)
from torchslim.quantization.int8.onnx_qdq import OnnxRuntimeInt8Model
from torchslim.quantization.int8.onnx_stem import space_to_depth_stem

_COMPUTE_OPS = ("Conv", "Gemm", "MatMul")
# ops whose presence marks a transformer-like graph: there only the compute ops run int8 (LayerNorm,
# softmax, GELU, residual and bias adds on an 8-bit grid cost 0.37 relative logit error on BERT)
_FLOAT_SENSITIVE = ("LayerNormalization", "Softmax", "Erf", "Gelu")


def module_of(node_name: str) -> str:
    """The torch module name an exported node came from: ``/features/features.1/conv/conv.0/Conv`` →
    ``features.1.conv.0`` (the exporter writes ``parent.index`` components for container children)."""
    parts = node_name.split("/")[1:-1]
    name, last = "", ""
    for part in parts:
        if last and part.startswith(last + "."):
            name += part[len(last):]
        else:
            name = f"{name}.{part}" if name else part
        last = part
    return name


def attention_modules(model: nn.Module) -> set[str]:
    """Names of the ``nn.MultiheadAttention`` modules of ``model``.

    Their q/k/v and output projections are parameters used by a functional call, not ``nn.Linear``
    modules a config entry can name or a hook can observe; with the config quantizing Linear layers
    they run int8 too, on onnxruntime's own ranges (ViT-B/16 int8 was 0.70x onnxruntime's
    ``quantize_dynamic`` with them float).
    """
    return {name for name, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)}


def _overrides(graph: Any, calibration: Mapping, bn_followed: set[str],
               int8_attention: bool = True, attention: set[str] = frozenset()) -> tuple[dict, list[dict], list[str]]:
    """``TensorQuantOverrides`` from calibration entries, a report, and compute nodes the config keeps float."""
    from onnx import numpy_helper

    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    chosen: dict[str, tuple[int, str, list[dict]]] = {}  # tensor -> (priority, source, overrides)
    exclude, report = [], []

    def offer(tensor: str, key: str, entry: Mapping, priority: int) -> None:
        if not is_affine_entry(entry):
            return
        if entry.get("observed_only"):
            priority -= 10
        if tensor in chosen and chosen[tensor][0] >= priority:
            return
        scale, zero_point = activation_qparams(entry, key)
        chosen[tensor] = (priority, key, [{"scale": np.array(scale, dtype=np.float32), "zero_point": np.array(zero_point, dtype=np.uint8)}])

    for node in graph.node:
        if node.op_type not in _COMPUTE_OPS:
            continue
        name = module_of(node.name)
        entries = calibration.get(name)
        if node.op_type == "MatMul" and not any(i in initializers for i in node.input[:2]):
            # activation x activation (attention scores, attention x values): int8 with ranges observed
            # on the example batch, unless asked to keep them float
            if int8_attention:
                report.append({"tensor": node.name, "source": "int8 matmul of activations, range observed on the example"})
            else:
                exclude.append(node.name)
            continue
        if entries is None and name in attention and node.input[1] in initializers:
            report.append({"tensor": node.name, "source": "nn.MultiheadAttention projection, onnxruntime's ranges"})
            continue
        if entries is None or not is_affine_entry(entries.get("weight", {})):
            exclude.append(node.name)
            continue
        if "_input_0" in entries:
            offer(node.input[0], f"{name}._input_0", entries["_input_0"], 2)
        if "_output_0" in entries and name not in bn_followed:
            offer(node.output[0], f"{name}._output_0", entries["_output_0"], 1)
        weight = node.input[1]
        if weight in initializers and name not in bn_followed:
            w = initializers[weight]
            try:
                scale, zero_point, axis = weight_qparams(entries["weight"], f"{name}.weight", w.ndim)
            except ValueError:
                continue
            if node.op_type in ("Gemm", "MatMul") and axis is not None:
                axis = 0 if node.op_type == "Gemm" else 1  # MatMul weights are stored transposed
            scales, zps = scale.reshape(-1).tolist(), zero_point.reshape(-1).tolist()
            items = [{"scale": np.array(s, dtype=np.float32), "zero_point": np.array(z, dtype=np.int8)} for s, z in zip(scales, zps)]
            if axis is not None:
                items[0]["axis"] = axis
            chosen[weight] = (100, f"{name}.weight", items)
        else:
            report.append({"tensor": f"{name}.weight", "source": "re-quantized after BN folding (per channel)"})
    report += [{"tensor": t, "source": src} for t, (_, src, _) in chosen.items()]
    return {t: o for t, (_, _, o) in chosen.items()}, report, exclude


def op_types_to_quantize(graph: Any) -> list[str] | None:
    """Only the compute ops in a transformer-like graph (see ``_FLOAT_SENSITIVE``); every op
    onnxruntime can quantize otherwise (CNNs: residual adds, pools and ReLUs stay int8 between convs)."""
    if any(node.op_type in _FLOAT_SENSITIVE for node in graph.node):
        return list(_COMPUTE_OPS)
    return None


def pre_process(source: str, target: str) -> None:
    """onnxruntime's quantization pre-processing; without symbolic shape inference where that fails
    (it cannot follow the reshapes of torchvision's attention)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(source, target)
    except Exception:  # noqa: BLE001 - onnx's own shape inference still runs
        quant_pre_process(source, target, skip_symbolic_shape=True)


def _unshare_initializers(graph: Any) -> bool:
    """Give every compute node its own copy of an initializer that several nodes read.

    The exporter merges equal constants (e.g. the all-zero biases of a fresh model), and a bias
    shared by a LayerNorm and a Gemm cannot be quantized for one and kept float for the other.
    """
    import copy

    inits = {i.name: i for i in graph.initializer}
    users: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    changed = False
    for node in graph.node:
        if node.op_type not in _COMPUTE_OPS:
            continue
        for k, name in enumerate(node.input):
            if name in inits and users[name] > 1:
                clone = copy.deepcopy(inits[name])
                clone.name = f"{name}__{node.name}"
                graph.initializer.append(clone)
                node.input[k] = clone.name
                changed = True
    return changed


def build_ort_static(model: nn.Module, calibration: Mapping[str, Mapping[str, Any]], example_input: Any,
                     onnx_path: str | Path | None = None, threads: int = 2, spin: bool = True,
                     int8_attention: bool = True, space_to_depth: bool = True) -> OnnxRuntimeInt8Model:
    """Quantize ``model`` with onnxruntime's static QDQ quantizer, pinned to ``calibration``'s scales.

    QDQ rather than the QOperator format (QLinearConv nodes in the file): both run the same
    kernels after onnxruntime's QDQ fusion (ResNet-18 batch 32: 1760 vs 1692 ms, within noise), and
    QOperator mis-handles our pinned per-channel Gemm scales (relative error 1.06 on LeNet).
    ``int8_attention``: matmuls between two activations (attention) run int8 too, their ranges
    observed on ``example_input``. ``space_to_depth``: a strided stem convolution over at most 4
    channels runs as space-to-depth + stride-1 convolution (bit-identical, faster: see :mod:`.onnx_stem`).
    ``example_input``: a tensor or a tuple of the model's inputs.
    """
    onnx = require("onnx", "onnx", "the onnxruntime int8 backend")
    require("onnxruntime", "onnx", "the onnxruntime int8 backend")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from torchslim.utils.onnx_export import export_onnx

    plain = float_copy(model)
    modules = dict(plain.named_modules())
    chains = fused_chains(plain)
    bn_followed = {n for n, c in chains.items() if c and c[0].op == "call_module" and isinstance(modules.get(c[0].target), _BN)}
    example = example_args(example_input)
    out = Path(onnx_path) if onnx_path is not None else Path(tempfile.mkdtemp(prefix="torchslim-int8-")) / "model_int8.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    fp32, pre = out.with_suffix(".fp32.onnx"), out.with_suffix(".pre.onnx")
    export_onnx(plain, example, fp32)
    pre_process(str(fp32), str(pre))
    proto = onnx.load(str(pre))
    if _unshare_initializers(proto.graph):
        onnx.save(proto, str(pre))
    graph = proto.graph
    overrides, report, exclude = _overrides(graph, calibration, bn_followed, int8_attention, attention_modules(plain))
    feed = {i.name: x.detach().cpu().numpy() for i, x in zip(graph.input, example)}
    op_types = op_types_to_quantize(graph)
    options: dict[str, Any] = {"TensorQuantOverrides": overrides}
    if op_types is not None:  # float outputs: no output range clipped at what calibration saw
        options["OpTypesToExcludeOutputQuantization"] = list(_COMPUTE_OPS)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([feed])

        def get_next(self) -> Any:
            return next(self.items, None)

    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                    op_types_to_quantize=op_types, extra_options=options)
    for tmp in (fp32, pre):
        tmp.unlink(missing_ok=True)
    if space_to_depth:
        quantized = onnx.load(str(out))
        stem = space_to_depth_stem(quantized)
        if stem is not None:
            onnx.save(quantized, str(out))
            report.append({"tensor": stem, "source": "stem convolution run as space-to-depth + stride-1 convolution"})
    return OnnxRuntimeInt8Model(out, threads, report=report, spin=spin)


__all__ = ["build_ort_static", "attention_modules", "module_of", "op_types_to_quantize", "pre_process"]
