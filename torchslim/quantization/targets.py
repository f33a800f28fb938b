"""Per-tensor fake quantizers: one object per (module, target) holding observer and qparams.

A quantizer algorithm is a choice of :class:`TargetQuant` subclass (affine with an
observer, learned step size, DoReFa, binary) and of observers. Modes:

* ``'auto'`` (QAT): observe while the module trains, quantize once ``quant_start_step``
  training calls have passed;
* ``'calibrate'`` (PTQ): observe only;
* ``'frozen'``: quantize with the stored scale / zero point, observe nothing.

Weights are re-observed from the current weight on every call unless frozen.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from torchslim.compression.granularity import block_sizes, expand_mask, to_units
from torchslim.quantization.config import TargetSpec
from torchslim.quantization.fake_quant import QuantGrad, QuantType, lsq_quantize, round_ste
from torchslim.quantization.observers import Observer, make_observer, qparams


def activation_block(shape: torch.Size, granularity: Any) -> tuple[int, ...]:
    """Block sizes for an activation: per tensor, per channel (dim 1) or explicit blocks."""
    if granularity in ("default", "per_tensor") or len(shape) < 2:
        return tuple(shape)
    if isinstance(granularity, str):  # any channel granularity: activations' channels are dim 1
        return tuple(1 if d == 1 else s for d, s in enumerate(shape))
    if len(granularity) != len(shape):
        raise ValueError(f"granularity {list(granularity)} does not match activation shape {list(shape)}")
    return tuple(s if b == -1 else b for b, s in zip(granularity, shape))


def expand(grid: torch.Tensor, block: tuple[int, ...]) -> torch.Tensor:
    """A per-block value grown to broadcast against the tensor."""
    if all(g == 1 or b == 1 for g, b in zip(grid.shape, block)):
        return grid
    return expand_mask(grid, block)


class TargetQuant:
    """Affine fake quantization of one tensor with an observer (QAT / PTQ / naive)."""

    method = "affine"

    def __init__(self, spec: TargetSpec, quant_type: QuantType, observer: str | Callable[[], Observer] = "minmax",
                 mode: str = "auto") -> None:
        self.spec = spec
        self.quant_type = quant_type
        self.observer_kind = observer
        self.observer = make_observer(observer)
        self.mode = mode
        self.step = 0  # training-mode calls seen
        self.scale: torch.Tensor | None = None
        self.zero_point: torch.Tensor | None = None
        self.block: tuple[int, ...] | None = None
        self.grad: type[QuantGrad] = QuantGrad
        # observe_only: track the range for deployment but never quantize (tensors the
        # config leaves in float that an int8 model must still quantize, e.g. the logits)
        self.observe_only = False
        if spec.dynamic and quant_type is QuantType.WEIGHT:
            from torchslim.errors import ConfigError

            raise ConfigError("'dynamic': True applies to activations ('_input_', '_output_'); weights are quantized "
                              "ahead of time")

    # --- geometry -------------------------------------------------------------------------
    def block_for(self, x: torch.Tensor, module: nn.Module | None, target: str) -> tuple[int, ...]:
        if self.quant_type is QuantType.WEIGHT and module is not None:
            g = self.spec.granularity
            return tuple(x.shape) if g in ("default", "per_tensor") else block_sizes(module, target, g)
        return activation_block(x.shape, self.spec.granularity)

    @property
    def ready(self) -> bool:
        return self.scale is not None

    # --- calls ----------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, module: nn.Module | None = None, target: str = "") -> torch.Tensor:
        block = self.block_for(x, module, target)
        self.block = block
        training = module is not None and module.training
        if self.spec.dynamic and not self.observe_only:  # this batch's own range, as a dynamic int8 kernel does
            lo, hi = x.detach().min().clamp_max(0), x.detach().max().clamp_min(0)
            scale, zero_point = qparams(lo, hi, self.spec.dtype, self.spec.scheme)
            return self.grad.apply(x, scale, zero_point, self.spec.dtype.qmin, self.spec.dtype.qmax, self.quant_type)
        if self.observe_only:
            if self.mode == "calibrate" or (training and self.mode == "auto"):
                self.observer.update(to_units(x.detach(), block))
            return x
        if self.mode == "frozen":
            return self.quantize(x, block) if self.ready else x
        if self.quant_type is QuantType.WEIGHT and self.mode == "auto":
            self.observer = make_observer(self.observer_kind)  # weights: range of the current weight
            self.observer.update(to_units(x.detach(), block))
            self.update_qparams()
        elif self.mode == "calibrate" or training:
            self.observer.update(to_units(x.detach(), block))
            self.update_qparams()
        started = self.step >= self.spec.quant_start_step
        if training:
            self.step += 1
        if self.mode == "calibrate" or not self.ready or not started:
            return x
        return self.quantize(x, block)

    def observe_weight(self, weight: torch.Tensor, module: nn.Module, target: str) -> None:
        """Refresh a not-yet-frozen weight's qparams from its current value (no quantization)."""
        if self.mode == "auto" and self.method == "affine" and not self.observe_only:
            self.observer = make_observer(self.observer_kind)
            self.observer.update(to_units(weight.detach(), self.block_for(weight, module, target)))
            self.update_qparams()

    def update_qparams(self) -> None:
        lo, hi = self.observer.range(self.spec.dtype, self.spec.scheme)
        self.scale, self.zero_point = qparams(lo, hi, self.spec.dtype, self.spec.scheme)

    def quantize(self, x: torch.Tensor, block: tuple[int, ...]) -> torch.Tensor:
        scale = expand(self.scale.to(x.device), block)
        zp = expand(self.zero_point.to(x.device), block)
        return self.grad.apply(x, scale, zp, self.spec.dtype.qmin, self.spec.dtype.qmax, self.quant_type)

    def freeze(self, weight: torch.Tensor | None = None, module: nn.Module | None = None, target: str = "") -> None:
        """Fix qparams (a weight is observed once more with this target's observer)."""
        if weight is not None:
            self.observer = make_observer(self.observer_kind)
            self.observer.update(to_units(weight.detach(), self.block_for(weight, module, target)))
        if self.observer.ready:
            self.update_qparams()
        self.mode = "frozen"

    # --- calibration config -----------------------------------------------------------------
    def export(self) -> dict[str, Any]:
        """This target's calibration entry (the seeds' format); per-tensor values are 0-dim."""
        spec = self.spec
        entry: dict[str, Any] = {}
        if self.observe_only:
            if self.observer.ready:  # with the uint8 grid of that range, so NNI-style code finds a scale
                scale, zero_point = qparams(self.observer.min, self.observer.max, spec.dtype, spec.scheme)
                entry.update(scale=_squeeze(scale.detach().clone()), zero_point=_squeeze(zero_point.detach().clone()),
                             tracked_min=_squeeze(self.observer.min.clone()), tracked_max=_squeeze(self.observer.max.clone()))
            return {**entry, "observed_only": True}
        if self.ready:
            entry["scale"] = _squeeze(self.scale.detach().clone())
            entry["zero_point"] = _squeeze(self.zero_point.detach().clone())
        entry.update(quant_dtype=spec.dtype.name, quant_scheme=spec.scheme, quant_bits=spec.dtype.bits)
        if spec.dynamic:
            return {**entry, "dynamic": True}
        if self.observer.ready:
            entry["tracked_min"] = _squeeze(self.observer.min.clone())
            entry["tracked_max"] = _squeeze(self.observer.max.clone())
        if self.method != "affine":
            entry["method"] = self.method
        return entry

    def load(self, entry: dict[str, Any]) -> None:
        """Take scale / zero point / tracked range from a calibration entry; becomes frozen."""
        if entry.get("observed_only"):
            self.observe_only = True
        if entry.get("dynamic") and not self.spec.dynamic:
            self.spec = TargetSpec(self.spec.dtype, self.spec.scheme, self.spec.granularity,
                                   self.spec.quant_start_step, dynamic=True)
        if "scale" in entry:
            self.scale = torch.as_tensor(entry["scale"], dtype=torch.float).detach().clone()
            self.zero_point = torch.as_tensor(entry["zero_point"], dtype=torch.float).detach().clone()
        if "tracked_min" in entry and "tracked_max" in entry:
            self.observer.load(torch.as_tensor(entry["tracked_min"]), torch.as_tensor(entry["tracked_max"]))
        self.mode = "frozen"


def _squeeze(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(()) if t.numel() == 1 else t


class LsqTargetQuant(TargetQuant):
    """Learned step size (Esser et al. 2020): the scale is a trainable parameter.

    Initialised from the first batch as ``2 * mean(|x|) / sqrt(qmax)`` (the paper's rule);
    the zero point stays fixed (0 for symmetric / signed, the affine zp otherwise).
    """

    method = "lsq"

    def __init__(self, spec: TargetSpec, quant_type: QuantType, observer: Any = "minmax", mode: str = "auto") -> None:
        super().__init__(spec, quant_type, observer, mode)
        self.learned: nn.Parameter | None = None

    def __call__(self, x: torch.Tensor, module: nn.Module | None = None, target: str = "") -> torch.Tensor:
        block = self.block_for(x, module, target)
        self.block = block
        units = to_units(x.detach(), block)
        if module is not None and module.training or self.learned is None:
            self.observer.update(units)
        if self.learned is None:
            self._init_scale(units)
            self.learned.data = self.learned.data.to(x.device)
        started = self.step >= self.spec.quant_start_step or self.mode == "frozen"
        if module is not None and module.training:
            self.step += 1
        if not started:
            return x
        scale = expand(self.learned.abs().clamp_min(1e-8), block)
        zp = expand(self.zero_point.to(x.device), block)
        return lsq_quantize(x, scale, zp, self.spec.dtype.qmin, self.spec.dtype.qmax)

    @torch.no_grad()
    def init_from(self, x: torch.Tensor, module: nn.Module, target: str) -> None:
        """Initialise the step size from ``x`` (a weight, at quantizer creation)."""
        units = to_units(x.detach(), self.block_for(x, module, target))
        self.observer.update(units)
        self._init_scale(units)

    @torch.no_grad()
    def _init_scale(self, units: torch.Tensor) -> None:
        qmax = self.spec.dtype.qmax
        lo, hi = self.observer.range(self.spec.dtype, self.spec.scheme)
        _, self.zero_point = qparams(lo, hi, self.spec.dtype, self.spec.scheme)
        init = 2 * units.abs().mean(-1) / math.sqrt(max(qmax, 1))
        self.learned = nn.Parameter(init.clamp_min(1e-6))

    @property
    def scale(self) -> torch.Tensor | None:  # type: ignore[override]
        return None if self.learned is None else self.learned.detach().abs()

    @scale.setter
    def scale(self, value: torch.Tensor | None) -> None:
        if value is not None:
            self.learned = nn.Parameter(value.detach().clone().float())

    def update_qparams(self) -> None:  # the scale is learned, not derived from the range
        pass

    def freeze(self, weight: torch.Tensor | None = None, module: nn.Module | None = None, target: str = "") -> None:
        self.mode = "frozen"


class DoReFaTargetQuant(TargetQuant):
    """DoReFa-Net (Zhou et al. 2016): weights via tanh normalisation, activations clipped to [0, 1]."""

    method = "dorefa"

    def __call__(self, x: torch.Tensor, module: nn.Module | None = None, target: str = "") -> torch.Tensor:
        if module is not None and module.training:
            self.observer.update(x.detach().reshape(1, -1))
        levels = 2 ** self.spec.dtype.bits - 1
        if self.quant_type is QuantType.WEIGHT:
            t = torch.tanh(x)
            t = t / (2 * t.abs().max().detach()) + 0.5
            return 2 * round_ste(t * levels) / levels - 1
        return round_ste(torch.clamp(x, 0, 1) * levels) / levels

    def update_qparams(self) -> None:
        pass


class BinaryTargetQuant(TargetQuant):
    """Binarized networks (Courbariaux et al. 2016): ``sign(x)`` with a hard-tanh straight-through gradient."""

    method = "bnn"

    def __call__(self, x: torch.Tensor, module: nn.Module | None = None, target: str = "") -> torch.Tensor:
        if module is not None and module.training:
            self.observer.update(x.detach().reshape(1, -1))
        sign = torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))
        clipped = torch.clamp(x, -1, 1)
        return clipped + (sign - clipped).detach()

    def update_qparams(self) -> None:
        pass


class CustomTargetQuant(TargetQuant):
    """Calls a v2-style custom quantizer's ``quantize_weight`` / ``quantize_input`` / ``quantize_output``."""

    method = "custom"

    def __init__(self, spec: TargetSpec, quant_type: QuantType, quantizer: Any, config: dict[str, Any]) -> None:
        super().__init__(spec, quant_type)
        self.quantizer = quantizer
        self.config = config

    def __call__(self, x: torch.Tensor, module: nn.Module | None = None, target: str = "") -> torch.Tensor:
        if self.quant_type is QuantType.WEIGHT:
            return self.quantizer.quantize_weight(x, config=self.config, op=module, op_name=self.config.get("op_name"))
        if self.quant_type is QuantType.INPUT:
            return self.quantizer.quantize_input(x, config=self.config, op=module, op_name=self.config.get("op_name"))
        return self.quantizer.quantize_output(x, config=self.config, op=module, op_name=self.config.get("op_name"))


__all__ = [
    "BinaryTargetQuant", "CustomTargetQuant", "DoReFaTargetQuant", "LsqTargetQuant", "TargetQuant",
    "activation_block", "expand",
]
