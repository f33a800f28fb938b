"""Static int8 ``nn.Linear`` on PyTorch's x86 kernels, swapped in module by module (no tracing).

Each calibrated Linear becomes :class:`Int8Linear`: fbgemm's fused kernel puts its input on the
calibrated uint8 grid, multiplies by the weight on the calibrated int8 grid and returns fp32 — as in
the fake-quant model, whose Linear outputs stay float. Transformers (BERT, GPT-2, ViT) need no
torch.fx trace this way, and no output grid observed on one batch is added.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from torchslim.quantization.int8.common import activation_qparams, is_affine_entry, quantized_weight


class Int8Linear(nn.Module):
    """``y = quant(x) @ quant(W).T + b`` in int8 with fp32 output (one fused fbgemm call); fp32 in, fp32 out."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, input_entry: Mapping[str, Any],
                 weight_entry: Mapping[str, Any], where: str) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.input_scale, self.input_zero_point = activation_qparams(input_entry, f"{where}._input_0")
        qweight = quantized_weight(weight, weight_entry, f"{where}.weight")
        if qweight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric) and qweight.q_per_channel_axis() != 0:
            raise ValueError(f"{where}.weight: the x86 int8 Linear takes scales per output channel only")
        bias = None if bias is None else bias.detach().float().clone()
        # packed once for the engine; a ScriptObject that deepcopy and torch.save carry
        self.packed = torch.ops.quantized.linear_prepack(qweight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
            x.float(), self.input_scale, self.input_zero_point, self.packed)

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
        swapped = Int8Linear(module.weight, module.bias, inp, weight, name)
        model.set_submodule(name, swapped)
        report += [{"tensor": f"{name}._input_0", "source": f"{name}._input_0", "scale": swapped.input_scale,
                    "zero_point": swapped.input_zero_point},
                   {"tensor": f"{name}.weight", "source": f"{name}.weight"}]
    return report


def _observed(lo: float, hi: float) -> dict[str, Any]:
    return {"observed_only": True, "tracked_min": lo, "tracked_max": hi}


def _symmetric_per_channel(weight: torch.Tensor) -> dict[str, Any]:
    """The grid onnxruntime gives a weight no config entry names: int8, symmetric, per output channel."""
    scale = (weight.detach().abs().amax(dim=1, keepdim=True) / 127).clamp_min(1e-12)
    return {"scale": scale, "zero_point": torch.zeros_like(scale), "quant_dtype": "int8", "quant_scheme": "symmetric"}


class Int8SelfAttention(nn.Module):
    """``nn.MultiheadAttention`` whose input and output projections run :class:`Int8Linear`.

    Its projections are parameters read by a functional call, so no config entry names them: as on
    onnxruntime, their weights get a symmetric per-channel grid and their inputs the range observed on
    the example batch (:meth:`freeze` after one pass). Self-attention without masks or returned weights
    (what ViT calls) runs int8; any other call goes to the float module kept inside.
    """

    def __init__(self, attention: nn.MultiheadAttention, where: str) -> None:
        super().__init__()
        self.float_attention, self.where = attention, where
        self.num_heads, self.batch_first = attention.num_heads, attention.batch_first
        self.in_proj: Int8Linear | None = None
        self.out_proj: Int8Linear | None = None
        self._ranges: dict[str, list[float]] = {}

    def _supported(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                   average_attn_weights=True, is_causal=False) -> bool:
        a = self.float_attention
        return (query is key is value and key_padding_mask is None and attn_mask is None and not need_weights
                and not is_causal and a.in_proj_weight is not None and a.bias_k is None and a.bias_v is None
                and not a.add_zero_attn and query.dim() == 3)

    def _observe(self, name: str, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self._ranges.get(name, (0.0, 0.0))
        self._ranges[name] = [min(lo, float(x.min())), max(hi, float(x.max()))]
        return x

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if args or not self._supported(query, key, value, **kwargs):
            return self.float_attention(query, key, value, *args, **kwargs)
        a = self.float_attention
        x = query if self.batch_first else query.transpose(0, 1)
        if self.in_proj is None:
            qkv = F.linear(self._observe("in", x), a.in_proj_weight, a.in_proj_bias)
        else:
            qkv = self.in_proj(x)
        n, length, width = x.shape
        q, k, v = qkv.view(n, length, 3, self.num_heads, width // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, length, width)
        if self.out_proj is None:
            out = F.linear(self._observe("out", out), a.out_proj.weight, a.out_proj.bias)
        else:
            out = self.out_proj(out)
        return (out if self.batch_first else out.transpose(0, 1)), None

    def freeze(self) -> list[dict[str, Any]]:
        """Build the int8 projections from the ranges seen so far; report rows (empty if never called)."""
        if set(self._ranges) != {"in", "out"}:
            return []
        a = self.float_attention
        report = []
        for name, weight, bias in (("in", a.in_proj_weight, a.in_proj_bias), ("out", a.out_proj.weight, a.out_proj.bias)):
            layer = Int8Linear(weight, bias, _observed(*self._ranges[name]), _symmetric_per_channel(weight),
                               f"{self.where}.{name}_proj")
            setattr(self, f"{name}_proj", layer)
            report.append({"tensor": f"{self.where}.{name}_proj", "source": "nn.MultiheadAttention projection, "
                           "observed on example input", "scale": layer.input_scale, "zero_point": layer.input_zero_point})
        return report


def swap_attention(model: nn.Module, example: tuple) -> list[dict[str, Any]]:
    """Replace every ``nn.MultiheadAttention`` by :class:`Int8SelfAttention`, calibrated on ``example``;
    those the example pass never calls int8-eligible stay float (kept inside, unreported)."""
    swapped = []
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.MultiheadAttention):
            wrapper = Int8SelfAttention(module, name)
            model.set_submodule(name, wrapper)
            swapped.append(wrapper)
    if not swapped:
        return []
    with torch.no_grad():
        model(*example)
    return [row for wrapper in swapped for row in wrapper.freeze()]


__all__ = ["Int8Linear", "Int8SelfAttention", "swap_attention", "swap_linears"]
