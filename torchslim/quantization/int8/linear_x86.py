"""Static int8 ``nn.Linear`` on oneDNN's x86 kernels, swapped in module by module (no tracing).

Each calibrated Linear becomes :class:`Int8Linear`: its input is put on the calibrated uint8 grid,
its weight on the calibrated int8 grid, and the int8 product comes out in fp32 — as in the
fake-quant model, whose Linear outputs stay float. Transformers (BERT, GPT-2, ViT) need no
torch.fx trace this way, and no output grid observed on one batch is added.
"""
from __future__ import annotations

import functools
import warnings
from typing import Any, Mapping

import torch
from torch import nn

from torchslim.quantization.int8.common import activation_qparams, is_affine_entry, quantized_weight


def onednn_available() -> bool:
    """Whether this torch build has oneDNN's int8 Linear kernel (``onednn::qlinear_pointwise``)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qlinear_pointwise")


@functools.cache
def _quantize_op() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch.ao.quantization.fx._decomposed  # noqa: F401 - registers quantized_decomposed ops
    return torch.ops.quantized_decomposed.quantize_per_tensor


class Int8Linear(nn.Module):
    """``y = dequant(quant(x) @ quant(W).T) + b`` with oneDNN's u8 x s8 kernel; fp32 in, fp32 out."""

    def __init__(self, linear: nn.Module, input_entry: Mapping[str, Any], weight_entry: Mapping[str, Any],
                 where: str) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.input_scale, self.input_zero_point = activation_qparams(input_entry, f"{where}._input_0")
        qweight = quantized_weight(linear.weight, weight_entry, f"{where}.weight")
        if qweight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            scales, zero_points = qweight.q_per_channel_scales(), qweight.q_per_channel_zero_points()
            if qweight.q_per_channel_axis() != 0:
                raise ValueError(f"{where}.weight: the x86 int8 Linear takes scales per output channel only")
        else:
            scales = torch.full((self.out_features,), qweight.q_scale(), dtype=torch.float64)
            zero_points = torch.full((self.out_features,), qweight.q_zero_point(), dtype=torch.int64)
        if bool(zero_points.ne(0).any()):
            raise ValueError(f"{where}.weight: the x86 int8 Linear takes symmetric weight grids (zero point 0)")
        self.register_buffer("weight_scales", scales.float())
        self.register_buffer("weight_zero_points", zero_points.long())
        self.register_buffer("qweight", qweight.int_repr())
        self._packed: torch.Tensor | None = None  # oneDNN's opaque layout: rebuilt after a copy or a load
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().float().clone(),
                                                                    requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._packed is None:
            self._packed = torch.ops.onednn.qlinear_prepack(self.qweight, None)
        qx = _quantize_op()(x.float(), self.input_scale, self.input_zero_point, 0, 255, torch.uint8)
        return torch.ops.onednn.qlinear_pointwise(
            qx, self.input_scale, self.input_zero_point, self._packed, self.weight_scales, self.weight_zero_points,
            self.bias, 1.0, 0, torch.float32, "none", [], "")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_packed"] = None
        return state

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, input_scale={self.input_scale:.4g}"


def swap_linears(model: nn.Module, calibration: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Replace, in place, every ``nn.Linear`` whose weight and input the calibration describes by
    :class:`Int8Linear`; returns one report row per tensor put on a grid (empty: nothing swapped)."""
    report = []
    for name, module in list(model.named_modules()):
        entries = calibration.get(name, {})
        weight, inp = entries.get("weight", {}), entries.get("_input_0", {})
        # exactly nn.Linear: nn.MultiheadAttention's out_proj subclass is read by its owner, never called
        if type(module) is not nn.Linear or not is_affine_entry(weight) or weight.get("observed_only") \
                or not is_affine_entry(inp):
            continue
        swapped = Int8Linear(module, inp, weight, name)
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, swapped)
        report += [{"tensor": f"{name}._input_0", "source": f"{name}._input_0", "scale": swapped.input_scale,
                    "zero_point": swapped.input_zero_point},
                   {"tensor": f"{name}.weight", "source": f"{name}.weight"}]
    return report


__all__ = ["Int8Linear", "onednn_available", "swap_linears"]
