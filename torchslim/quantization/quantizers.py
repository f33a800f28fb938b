"""The quantization algorithms: each is a choice of per-tensor quantizer, observers and defaults."""
from __future__ import annotations

import functools
import warnings
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn

from torchslim.compression.base import CompressResult
from torchslim.quantization.base import Quantizer
from torchslim.quantization.fake_quant import QuantType
from torchslim.quantization.observers import EMAObserver
from torchslim.quantization.targets import BinaryTargetQuant, DoReFaTargetQuant, LsqTargetQuant, TargetQuant


class NaiveQuantizer(Quantizer):
    """8-bit symmetric per-tensor weights, recomputed from the current weight on every call."""

    default_targets = ("weight",)
    default_scheme = "symmetric"


class QATQuantizer(Quantizer):
    """Quantization-aware training (Jacob et al. 2018).

    Activation ranges are exponential moving averages of batch min/max seen while training
    (decay ``ema_decay``); weight ranges follow the current weight. Fake quantization starts
    after ``quant_start_step`` training forward passes. ``bn_folding=True`` folds a conv's
    following BatchNorm into the weight before quantization, as the deployed int8 conv does.

    ``QATQuantizer(model, config_list, evaluator, quant_start_step)`` then
    ``model, calibration = quantizer.compress(None, max_epochs=5)``; without an evaluator,
    ``compress()`` then train as usual.
    """

    def __init__(self, model: nn.Module, config_list: Sequence[Mapping[str, Any]], evaluator: Any = None,
                 quant_start_step: int = 0, *, ema_decay: float = 0.99, **kwargs: Any) -> None:
        self.activation_observer = functools.partial(EMAObserver, ema_decay)
        super().__init__(model, config_list, evaluator, quant_start_step, **kwargs)


class PtqQuantizer(Quantizer):
    """Post-training quantization: observe activations on calibration data, then freeze.

    ``observer`` is 'minmax', 'percentile' (99.99th by default) or 'mse' (the clipping that
    minimises quantization error); weights use ``weight_observer`` (min/max by default).
    Calibrate with ``compress(calibration_data)`` (batches or (input, label) pairs), or through
    the evaluator's ``evaluating_func`` when no data is given.
    """

    initial_mode = "calibrate"

    def __init__(self, model: nn.Module, config_list: Sequence[Mapping[str, Any]], evaluator: Any = None,
                 *, observer: Any = "minmax", weight_observer: Any = "minmax", **kwargs: Any) -> None:
        self.activation_observer = observer
        self.weight_observer = weight_observer
        super().__init__(model, config_list, evaluator, **kwargs)

    def compress(self, calibration_data: Iterable[Any] | None = None, max_steps: int | None = None,
                 max_epochs: int | None = None) -> CompressResult:
        """Calibrate (at most ``max_steps`` batches) and freeze; returns ``(model, calibration_config)``."""
        self.prepare_previous(trains=False)
        if calibration_data is not None:
            self.calibrate(calibration_data, max_steps)
        elif self.evaluator is not None and getattr(self.evaluator, "evaluating_func", None) is not None:
            modes = self._set_mode("calibrate")
            try:
                self.evaluator.bind_model(self.model)
                with torch.no_grad():
                    self.evaluator.evaluate()
            finally:
                self._restore_mode(modes)
        elif self.dummy_input is not None:
            self.track_forward(self.dummy_input)
        else:
            raise ValueError("PtqQuantizer.compress needs calibration_data, an evaluator with an "
                             "evaluating_func, or dummy_input")
        return CompressResult(self.model, self.freeze())


class LsqQuantizer(Quantizer):
    """Learned step size quantization (Esser et al. 2020): scales are trained with the weights.

    The step sizes are new parameters: they are added to the given optimizer (v2 form) or to
    the evaluator's optimizer; :meth:`quant_parameters` lists them for an optimizer you build.
    Activation step sizes are initialised from ``dummy_input`` (or the first batch).
    """

    target_quant = LsqTargetQuant
    default_scheme = "symmetric"

    def __init__(self, model: nn.Module, config_list: Sequence[Mapping[str, Any]], evaluator: Any = None,
                 quant_start_step: int = 0, **kwargs: Any) -> None:
        super().__init__(model, config_list, evaluator, quant_start_step, **kwargs)
        self._registered: set[int] = set()
        for name, state in self.states.items():  # weight step sizes can start now
            module = self._modules[name]
            for target, quant in state.targets.items():
                if quant.quant_type is QuantType.WEIGHT and isinstance(quant, LsqTargetQuant):
                    quant.init_from(getattr(module, target), module, target)

    def quant_parameters(self) -> list[nn.Parameter]:
        """The learned step sizes created so far."""
        return [q.learned for s in self.states.values() for q in s.targets.values()
                if isinstance(q, LsqTargetQuant) and q.learned is not None]

    def _before_training(self) -> None:
        dummy = self.dummy_input
        if dummy is None and self.evaluator is not None:
            dummy = getattr(self.evaluator, "dummy_input", None)
        if dummy is not None:
            self.track_forward(dummy)
        elif any(q.learned is None for s in self.states.values() for q in s.targets.values()
                 if isinstance(q, LsqTargetQuant)):
            warnings.warn("LsqQuantizer without dummy_input: activation step sizes are created on the first "
                          "forward and are not in the optimizer; pass dummy_input", stacklevel=3)
        optimizer = self.optimizer
        if optimizer is None and self.evaluator is not None:
            optimizer = self.evaluator.optimizers[0]
        if optimizer is not None:
            new = [p for p in self.quant_parameters() if id(p) not in self._registered]
            if new:
                optimizer.add_param_group({"params": new})
                self._registered |= {id(p) for p in new}


class DoReFaQuantizer(Quantizer):
    """DoReFa-Net (Zhou et al. 2016): k-bit weights through tanh normalisation; k-bit
    activations clipped to [0, 1]. Simulation only (its weight grid has no integer zero point)."""

    target_quant = DoReFaTargetQuant
    default_targets = ("weight",)


class BNNQuantizer(Quantizer):
    """Binarized neural networks (Courbariaux et al. 2016): ``sign`` of weights and
    (optionally) outputs with a clipped straight-through gradient. Simulation only."""

    target_quant = BinaryTargetQuant
    default_targets = ("weight",)

    def _before_training(self) -> None:
        # BNN keeps latent weights in [-1, 1] after each update
        if self.evaluator is not None:
            self.evaluator.on_after_step(self.clip_weights)

    @torch.no_grad()
    def clip_weights(self) -> None:
        for name, state in self.states.items():
            for target in state.weight_targets():
                getattr(self._modules[name], target).clamp_(-1.0, 1.0)


QUANTIZERS: dict[str, type[Quantizer]] = {
    "naive": NaiveQuantizer, "qat": QATQuantizer, "ptq": PtqQuantizer, "lsq": LsqQuantizer,
    "dorefa": DoReFaQuantizer, "bnn": BNNQuantizer,
}

__all__ = ["BNNQuantizer", "DoReFaQuantizer", "LsqQuantizer", "NaiveQuantizer", "PtqQuantizer", "QATQuantizer",
           "QUANTIZERS", "TargetQuant"]
