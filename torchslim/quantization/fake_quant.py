"""Fake quantization with a customisable backward (straight-through estimator by default)."""
from __future__ import annotations

from enum import Enum
from typing import Any

import torch


class QuantType(str, Enum):
    """Which tensor of a module a quantization applies to (NNI v2's names kept as aliases)."""

    INPUT = "input"
    WEIGHT = "weight"
    OUTPUT = "output"
    QUANT_INPUT = "input"
    QUANT_WEIGHT = "weight"
    QUANT_OUTPUT = "output"

    @classmethod
    def of_target(cls, target: str) -> "QuantType":
        if target.startswith("_input_"):
            return cls.INPUT
        if target.startswith("_output_"):
            return cls.OUTPUT
        return cls.WEIGHT


def quantize_dequantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """``(clamp(round(x / scale) + zp, qmin, qmax) - zp) * scale`` (no gradient logic)."""
    return (torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax) - zero_point) * scale


class QuantGrad(torch.autograd.Function):
    """Fake quantization whose backward is :meth:`quant_backward`.

    The default is the clipped straight-through estimator: the gradient passes unchanged
    where the value lies inside the quantization range and is zero where it was clamped.
    Subclass and override :meth:`quant_backward` for another rule, then set
    ``quantizer.quant_grad = YourGrad``.
    """

    @classmethod
    def forward(cls, ctx: Any, tensor: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                qmin: int, qmax: int, quant_type: QuantType) -> torch.Tensor:
        ctx.save_for_backward(tensor, scale, zero_point)
        ctx.qmin, ctx.qmax, ctx.quant_type = qmin, qmax, quant_type
        return quantize_dequantize(tensor, scale, zero_point, qmin, qmax)

    @classmethod
    def backward(cls, ctx: Any, grad_output: torch.Tensor) -> tuple:
        tensor, scale, zero_point = ctx.saved_tensors
        grad = cls.quant_backward(tensor, grad_output, ctx.quant_type, scale, zero_point, ctx.qmin, ctx.qmax)
        return grad, None, None, None, None, None

    @staticmethod
    def quant_backward(tensor: torch.Tensor, grad_output: torch.Tensor, quant_type: QuantType,
                       scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
        """Gradient w.r.t. the unquantized ``tensor`` (override for a custom estimator)."""
        q = torch.round(tensor / scale) + zero_point
        return grad_output * ((q >= qmin) & (q <= qmax)).to(grad_output.dtype)


class StraightThrough(QuantGrad):
    """Pure straight-through estimator: the gradient passes everywhere, even where clamped."""

    @staticmethod
    def quant_backward(tensor, grad_output, quant_type, scale, zero_point, qmin, qmax):  # noqa: D102
        return grad_output


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` forward, identity backward."""
    return x + (torch.round(x) - x).detach()


def grad_scale(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``x`` forward, gradient multiplied by ``factor`` backward (LSQ's step-size gradient scale)."""
    return (x - x * factor).detach() + x * factor


def lsq_quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """Learned-step-size quantization (Esser et al. 2020): gradients reach ``x`` and ``scale``."""
    g = 1.0 / float((x.numel() / max(scale.numel(), 1)) * max(qmax, 1)) ** 0.5
    s = grad_scale(scale, g)
    q = torch.clamp(x / s + zero_point, qmin, qmax)
    return (round_ste(q) - zero_point) * s


__all__ = ["QuantGrad", "QuantType", "StraightThrough", "grad_scale", "lsq_quantize", "quantize_dequantize", "round_ste"]
