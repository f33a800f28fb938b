"""What both int8 backends need: a plain float copy, and calibration entries as uint8/int8 qparams."""
from __future__ import annotations

import copy
import warnings
from typing import Any, Mapping

import torch
from torch import nn

from torchslim.masking import strip_masks
from torchslim.quantization.config import parse_dtype
from torchslim.quantization.hooks import detach, quant_state
from torchslim.quantization.observers import qparams

Entry = Mapping[str, Any]


def example_args(example_input: Any) -> tuple[torch.Tensor, ...]:
    """The positional inputs of one representative batch (a tensor, or a tuple / list of them)."""
    return tuple(example_input) if isinstance(example_input, (list, tuple)) else (example_input,)


def first_output(output: Any) -> torch.Tensor:
    """The tensor to compare of a model output: itself, the first of a tuple, or the logits of a dict-like one."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        return output["logits"] if "logits" in output else next(iter(output.values()))
    if isinstance(output, (list, tuple)):
        return first_output(output[0])
    raise TypeError(f"cannot compare a model output of type {type(output).__name__}")


def x86_engine() -> str | None:
    """The x86 quantized engine of this torch build ('x86' or 'fbgemm'), or None."""
    engines = torch.backends.quantized.supported_engines
    return "x86" if "x86" in engines else "fbgemm" if "fbgemm" in engines else None


def float_copy(model: nn.Module) -> nn.Module:
    """A deep copy without fake quantization or mask hooks (masks folded into the weights), in eval mode."""
    plain = copy.deepcopy(model)
    for module in plain.modules():
        if quant_state(module) is not None:
            detach(module)
    strip_masks(plain)
    return plain.eval()


def bn_folded_weight(weight: torch.Tensor, bn: nn.Module) -> torch.Tensor:
    """``weight * gamma / sqrt(var + eps)`` per output channel (what BN folding multiplies in)."""
    gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
    factor = gamma / torch.sqrt(bn.running_var + bn.eps)
    return weight * factor.reshape(-1, *([1] * (weight.dim() - 1)))


def is_affine_entry(entry: Entry) -> bool:
    """Entries a real int8 kernel can reproduce: affine grid with scale and integer zero point
    (or, for activations the config keeps float, a tracked range)."""
    if entry.get("observed_only"):
        return "tracked_min" in entry
    return "scale" in entry and entry.get("method", "affine") in ("affine", "lsq")


def activation_qparams(entry: Entry, where: str) -> tuple[float, int]:
    """Per-tensor uint8 (scale, zero point) reproducing ``entry``'s grid.

    An int8 grid shifts by 128 to uint8 exactly; a per-channel activation entry is merged
    to one range (int8 kernels take one activation scale), and grids narrower than 8 bits
    run at 8 bits with the same scale (both with a warning).
    """
    if entry.get("observed_only"):
        scale, zero_point = qparams(torch.as_tensor(entry["tracked_min"]).min(), torch.as_tensor(entry["tracked_max"]).max(),
                                    parse_dtype("uint8"), "affine")
        return float(scale), int(zero_point)
    dtype = parse_dtype(entry.get("quant_dtype", "int8"))
    scale = torch.as_tensor(entry["scale"]).float()
    zero_point = torch.as_tensor(entry["zero_point"]).float()
    if scale.numel() > 1:
        warnings.warn(f"{where}: per-channel activation scales merged into one per-tensor scale for int8 kernels",
                      stacklevel=3)
        lo = torch.as_tensor(entry.get("tracked_min", (0 - zero_point.max()) * scale.max())).min()
        hi = torch.as_tensor(entry.get("tracked_max", (255 - zero_point.min()) * scale.max())).max()
        scale, zero_point = qparams(lo, hi, parse_dtype("uint8"), "affine")
        return float(scale), int(zero_point)
    if dtype.bits != 8:
        warnings.warn(f"{where}: {dtype.name} activations run on 8-bit kernels (same scale, wider clamp)", stacklevel=3)
    shift = 128 if dtype.signed else 0
    return float(scale), int(round(float(zero_point))) + shift


def weight_qparams(entry: Entry, where: str, weight_dim: int) -> tuple[torch.Tensor, torch.Tensor, int | None]:
    """``(scale, int8 zero point, channel axis or None)`` of a weight entry, as plain tensors.

    A uint grid shifts to the int8 grid holding the same values.
    """
    dtype = parse_dtype(entry.get("quant_dtype", "int8"))
    scale = torch.as_tensor(entry["scale"]).float()
    zero_point = torch.round(torch.as_tensor(entry["zero_point"]).float())
    if not dtype.signed:
        zero_point = zero_point - 2 ** (dtype.bits - 1)
    if dtype.bits > 8 or not (-128 <= float(zero_point.min()) and float(zero_point.max()) <= 127):
        raise ValueError(f"{where}: a {dtype.name} weight grid does not fit int8 kernels")
    if scale.numel() == 1:
        return scale.reshape(()), zero_point.reshape(()).int(), None
    axes = [d for d, n in enumerate(scale.shape) if n > 1]
    if len(axes) != 1 or scale.dim() != weight_dim:
        raise ValueError(f"{where}: block-wise weight scales {list(scale.shape)} have no int8 kernel; "
                         "use per-tensor or per-channel granularity to deploy")
    return scale.flatten(), zero_point.flatten().int(), axes[0]


def quantized_weight(weight: torch.Tensor, entry: Entry, where: str) -> torch.Tensor:
    """``weight`` as a qint8 tensor on ``entry``'s grid (per tensor, or per channel along one dim)."""
    scale, zero_point, axis = weight_qparams(entry, where, weight.dim())
    w = weight.detach().float()
    if axis is None:
        return torch.quantize_per_tensor(w, float(scale), int(zero_point), torch.qint8)
    return torch.quantize_per_channel(w, scale, zero_point.long(), axis, torch.qint8)


__all__ = ["activation_qparams", "bn_folded_weight", "example_args", "first_output", "float_copy", "is_affine_entry", "quantized_weight", "weight_qparams", "x86_engine"]
