"""The quantizer: config_list → per-tensor fake quantizers attached by hooks → calibration config.

Subclasses choose the per-tensor quantizer class, the observers and the defaults; see
``quantizers.py``. The base class is usable as is to *simulate* a given calibration
config (``Quantizer(model, config_list).update_calibration_config(cfg)``), as in NNI 3.0.
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn

from torchslim.compression.base import CompressResult, Compressor, is_evaluator
from torchslim.config import resolve_config
from torchslim.errors import ConfigError
from torchslim.quantization.config import DEFAULT_QUANT_TYPES, TargetSpec
from torchslim.quantization.fake_quant import QuantGrad, QuantType
from torchslim.quantization.hooks import ModuleQuant, attach, canonical_target, detach, quant_state
from torchslim.quantization.targets import CustomTargetQuant, TargetQuant
from torchslim.utils.legacy import NNIBoundary, resolve

CalibrationConfig = dict[str, dict[str, dict[str, Any]]]


def _first_tensor(batch: Any) -> Any:
    if isinstance(batch, (list, tuple)):
        return batch[0]
    if isinstance(batch, Mapping):
        return next(iter(batch.values()))
    return batch


def calibration_config(model: nn.Module, states: Mapping[str, ModuleQuant] | None = None) -> CalibrationConfig:
    """The calibration config of the fake quantizers attached to ``model`` (weights re-observed first)."""
    modules = dict(model.named_modules())
    if states is None:
        states = {name: s for name, m in modules.items() if (s := quant_state(m)) is not None}
    names = {id(m): n for n, m in modules.items()}
    config: CalibrationConfig = {}
    for name, state in states.items():
        module = modules[name]
        for target in state.weight_targets():
            state.targets[target].observe_weight(state.folded(target, getattr(module, target)), module, target)
        entries = {}
        for target, quant in state.targets.items():
            entries[target] = quant.export()
            if target == "weight" and state.bn is not None:
                entries[target]["fused_bn"] = names[id(state.bn)]
        config[name] = entries
    return config


class Quantizer(Compressor, NNIBoundary):
    """Base class of all quantizers.

    Parameters
    ----------
    model: modified in place (hooks only: classes, parameters and state_dict keys unchanged).
    config_list: NNI v2 (``quant_types`` / ``quant_bits`` ...) or 3.0 (``target_names`` /
        ``quant_dtype`` ...) entries, mixed freely.
    evaluator: a :class:`torchslim.TorchEvaluator` (``compress(max_steps, max_epochs)`` then trains
        through it), or None: train the model yourself after ``compress()`` (give ``optimizer``
        when the algorithm adds parameters, as LSQ does). NNI's older call forms are translated
        by :mod:`torchslim.quantization.nni`.
    quant_start_step: training forward passes before fake quantization starts (observers
        already run); a config entry's ``quant_start_step`` overrides it.
    bn_folding: QAT BN folding: True folds every conv → BatchNorm pair found by tracing the
        model, or give ``{conv_name: bn_name}``.
    """

    nni_adapter = "torchslim.quantization.nni:quantizer_call"  # NNI's call forms are translated there first
    target_quant: type[TargetQuant] = TargetQuant
    activation_observer: Any = "minmax"
    weight_observer: Any = "minmax"
    default_targets: tuple[str, ...] = ("_input_", "weight")
    default_dtype = "int8"
    default_scheme = "affine"
    initial_mode = "auto"

    def __init__(
        self,
        model: nn.Module,
        config_list: Sequence[Mapping[str, Any]],
        evaluator: Any = None,
        quant_start_step: int = 0,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        dummy_input: Any = None,
        bn_folding: bool | Mapping[str, str] = False,
    ) -> None:
        if evaluator is not None and not is_evaluator(evaluator):
            raise TypeError(f"evaluator must be a torchslim Evaluator (e.g. TorchEvaluator), got {type(evaluator).__name__}")
        if isinstance(quant_start_step, bool) or not isinstance(quant_start_step, int) or quant_start_step < 0:
            raise ConfigError(f"invalid value {quant_start_step!r} for 'quant_start_step'; allowed: a non-negative integer")
        self.model = model
        self.config_list = config_list
        self.evaluator = evaluator
        self.optimizer = optimizer
        self.dummy_input = dummy_input
        self.quant_start_step = quant_start_step
        self._quant_grad: type[QuantGrad] = QuantGrad
        self._unwrapped_calibration: CalibrationConfig | None = None
        self.settings = resolve_config(
            model, config_list, "quantization", default_types=DEFAULT_QUANT_TYPES, default_targets=self.default_targets
        )
        self._modules = dict(model.named_modules())
        self.states: dict[str, ModuleQuant] = {}
        bn_pairs = self._bn_pairs(bn_folding)
        for name, targets in self.settings.items():
            module = self._modules[name]
            quants = {}
            for target, settings in targets.items():
                target = canonical_target(target)
                self._check_io_target(name, target)
                quants[target] = self.make_target(name, module, target, settings)
            if "weight" in quants:
                self._add_observed_io(quants)
            self.states[name] = ModuleQuant(name, quants, bn=self._modules[bn_pairs[name]] if name in bn_pairs else None)
            attach(module, self.states[name])

    # --- building blocks a subclass may override ----------------------------------------------
    def make_target(self, name: str, module: nn.Module, target: str, settings: Mapping[str, Any]) -> TargetQuant:
        """The fake quantizer of ``module.<target>`` for this algorithm."""
        spec = TargetSpec.from_settings(dict(settings), self.default_dtype, self.default_scheme, self.quant_start_step)
        quant_type = QuantType.of_target(target)
        custom = self._custom_method(quant_type)
        if custom:
            config = {"op_name": name, "op_type": type(module).__name__, "target": target, **settings}
            return CustomTargetQuant(spec, quant_type, self, config)
        observer = self.weight_observer if quant_type is QuantType.WEIGHT else self.activation_observer
        quant = self.target_quant(spec, quant_type, observer, self.initial_mode)
        quant.grad = self._quant_grad
        return quant

    @property
    def quant_grad(self) -> type[QuantGrad]:
        """The autograd Function used for fake quantization (set a :class:`QuantGrad` subclass)."""
        return self._quant_grad

    @quant_grad.setter
    def quant_grad(self, grad: type[QuantGrad]) -> None:
        grad = resolve("torchslim.quantization.nni:quant_grad")(grad)  # v1's 3-argument quant_backward
        self._quant_grad = grad
        for state in getattr(self, "states", {}).values():
            for quant in state.targets.values():
                quant.grad = grad

    def _add_observed_io(self, quants: dict[str, TargetQuant]) -> None:
        """Track the input / output ranges of a quantized layer even where the config keeps them float:
        an int8 deployment must quantize them too (see ``observe_only``)."""
        for target, quant_type in (("_input_0", QuantType.INPUT), ("_output_0", QuantType.OUTPUT)):
            if target not in quants:
                # per channel (dim 1), like the seeds' configs, so a speedup can re-index it
                spec = TargetSpec.from_settings({"granularity": "per_channel"}, "uint8", "affine")
                quant = TargetQuant(spec, quant_type, self.activation_observer, "auto")
                quant.observe_only = True
                quants[target] = quant

    # --- public API ----------------------------------------------------------------------------
    def compress(self, max_steps: int | None = None, max_epochs: int | None = None) -> CompressResult:
        """Train through the evaluator when given steps/epochs; returns ``(model, calibration_config)``."""
        trains = self.evaluator is not None and (max_steps is not None or max_epochs is not None)
        if trains:  # earlier compressors on the same evaluator (a schedule) follow this very run
            self.train_chain(max_steps, max_epochs, start=self._before_training)
        else:
            self.prepare_previous(trains=False)
            self._before_training()
        return CompressResult(self.model, self.get_calibration_config())

    def track_forward(self, *inputs: Any) -> None:
        """One forward pass (eval mode, no grad) that initialises every observer from real data."""
        modes = self._set_mode("calibrate")
        was_training = self.model.training
        try:
            self.model.eval()
            with torch.no_grad():
                self.model(*inputs)
        finally:
            self.model.train(was_training)
            self._restore_mode(modes)

    def calibrate(self, data: Iterable[Any], max_batches: int | None = None) -> None:
        """Observe activations on ``data`` (batches, or (input, label) pairs) without quantizing."""
        modes = self._set_mode("calibrate")
        was_training = self.model.training
        try:
            self.model.eval()
            with torch.no_grad():
                for i, batch in enumerate(data):
                    if max_batches is not None and i >= max_batches:
                        break
                    self.model(_first_tensor(batch))
        finally:
            self.model.train(was_training)
            self._restore_mode(modes)

    def freeze(self) -> CalibrationConfig:
        """Fix every scale / zero point (weights observed once more); returns the calibration config."""
        for name, state in self.states.items():
            module = self._modules[name]
            for target, quant in state.targets.items():
                weight = None
                if quant.quant_type is QuantType.WEIGHT:
                    weight = state.folded(target, getattr(module, target))
                quant.freeze(weight, module, target)
        return self.get_calibration_config()

    def get_calibration_config(self) -> CalibrationConfig:
        """``{module: {'weight' | '_input_0' | '_output_0': {scale, zero_point, quant_dtype, quant_scheme,
        quant_bits, tracked_min, tracked_max}}}``, as NNI's seeds show. After :meth:`unwrap_model`, the
        config as it was then (so it still describes the original layers after a speedup shrinks them)."""
        if self._unwrapped_calibration is not None:
            return copy.deepcopy(self._unwrapped_calibration)
        return calibration_config(self.model, self.states)

    def update_calibration_config(self, calibration_config: Mapping[str, Mapping[str, Any]]) -> None:
        """Load scales / zero points (e.g. from another quantizer) and quantize with them from now on.

        A config taken before a speedup shrank the model must first be re-indexed onto it:
        ``speedup.channel_map.reindex(config)`` (or NNI's ``trans()`` over ``speedup.node_infos``)."""
        for name, entries in calibration_config.items():
            state = self.states.get(name)
            if state is None:
                raise ConfigError(f"calibration config names {name!r}, which this quantizer does not quantize; "
                                  f"quantized modules: {sorted(self.states)}")
            module = self._modules[name]
            for target, entry in entries.items():
                quant = state.targets.get(canonical_target(target))
                if quant is not None:
                    quant.load(_checked_entry(name, target, entry, getattr(module, target, None)))

    def unwrap_model(self) -> nn.Module:
        """Remove every quantization hook (the float model remains), then unwrap the compressors
        chained before this one; :meth:`get_calibration_config` still answers from the observers."""
        if self._unwrapped_calibration is None and any(quant_state(self._modules[n]) for n in self.states):
            self._unwrapped_calibration = calibration_config(self.model, self.states)
        for name in self.states:
            detach(self._modules[name])
        self.unwrap_previous()
        return self.model

    def start(self) -> None:
        """Get ready for a training run shared with a compressor chained after this one."""
        self._before_training()

    def finish(self) -> None:
        """End of a shared training run (fake quantization keeps its observed ranges)."""

    def export_model(
        self,
        model_path: str | Path | None = None,
        calibration_path: str | Path | None = None,
        onnx_path: str | Path | None = None,
        input_shape: Sequence[int] | None = None,
        device: str | torch.device | None = None,
        dummy_input: Any = None,
    ) -> CalibrationConfig:
        """Save float weights, the calibration config and optionally an ONNX graph with
        QuantizeLinear/DequantizeLinear nodes carrying these scales; returns the calibration config."""
        calibration = self.get_calibration_config()

        def qdq_onnx(model: nn.Module, inputs: Any, path: str | Path) -> None:
            from torchslim.quantization.int8.onnx_qdq import export_qdq_onnx

            export_qdq_onnx(model, calibration, inputs, path)

        # hooks leave state_dict untouched: the saved weights are the float ones
        return self.export_files(model_path, calibration, calibration_path, onnx_path, input_shape, device,
                                 dummy_input, onnx_export=qdq_onnx)

    # v2 loop compatibility: training loops call these
    def update_epoch(self, epoch: int) -> None:
        """No-op (kept for NNI v2 style loops)."""

    def step(self) -> None:
        """No-op (kept for NNI v2 style loops): steps are counted from training forward passes."""

    # custom v2 quantizers override these three (see ``quant_grad`` for a custom backward)
    def quantize_weight(self, weight: torch.Tensor, config: dict[str, Any], **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError

    def quantize_input(self, inputs: torch.Tensor, config: dict[str, Any], **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError

    def quantize_output(self, output: torch.Tensor, config: dict[str, Any], **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError

    # --- helpers ---------------------------------------------------------------------------------
    def _before_training(self) -> None:
        """Hook for subclasses (e.g. LSQ adds its step sizes to the optimizer)."""

    def _custom_method(self, quant_type: QuantType) -> bool:
        name = {"weight": "quantize_weight", "input": "quantize_input", "output": "quantize_output"}[quant_type.value]
        return getattr(type(self), name) is not getattr(Quantizer, name)

    def _check_io_target(self, name: str, target: str) -> None:
        if target.startswith("_") and not target.split("_", 2)[2].isdigit():
            raise ConfigError(f"target {target!r} of module {name!r}: input/output targets are '_input_', "
                              "'_output_' or indexed ('_input_1'); named ones are not supported")

    def _bn_pairs(self, bn_folding: bool | Mapping[str, str]) -> dict[str, str]:
        if not bn_folding:
            return {}
        if isinstance(bn_folding, Mapping):
            for conv, bn in bn_folding.items():
                for n in (conv, bn):
                    if n not in self._modules:
                        raise ConfigError(f"bn_folding names {n!r}, which is not a module of the model")
            return dict(bn_folding)
        from torchslim.quantization.fusion import conv_bn_pairs

        pairs = conv_bn_pairs(self.model, names=[n for n, t in self.settings.items() if "weight" in t])
        if not pairs:
            warnings.warn("bn_folding=True but no conv → BatchNorm pair was found", stacklevel=3)
        return pairs

    def _set_mode(self, mode: str) -> dict[tuple[str, str], str]:
        old = {}
        for name, state in self.states.items():
            for target, quant in state.targets.items():
                if quant.quant_type is not QuantType.WEIGHT:
                    old[(name, target)] = quant.mode
                    quant.mode = mode
        return old

    def _restore_mode(self, old: dict[tuple[str, str], str]) -> None:
        for (name, target), mode in old.items():
            self.states[name].targets[target].mode = mode


def _checked_entry(name: str, target: str, entry: Mapping[str, Any], tensor: Any) -> Mapping[str, Any]:
    """Refuse a weight scale that does not fit the weight (a config from before a speedup); drop a
    tracked range whose shape no longer matches the re-indexed scale (NNI's ``trans()`` keeps it)."""
    scale = entry.get("scale")
    if isinstance(scale, torch.Tensor) and isinstance(tensor, torch.Tensor) and scale.numel() > 1:
        shape = tuple(scale.shape)
        if len(shape) > tensor.dim() or any(s not in (1, t) for s, t in zip(shape, tensor.shape)):
            raise ConfigError(f"calibration config of {name!r} target {target!r} has scale shape {list(shape)}, which "
                              f"does not fit its tensor {list(tensor.shape)}: was it taken before a speedup? Re-index "
                              "it with speedup.channel_map.reindex(config)")
    if isinstance(scale, torch.Tensor) and scale.numel() > 1:
        stale = [k for k in ("tracked_min", "tracked_max")
                 if isinstance(entry.get(k), torch.Tensor) and entry[k].numel() > 1 and entry[k].shape != scale.shape]
        if stale and entry.get("observed_only"):  # deployment needs a range: the overall one still holds
            return {**entry, "tracked_min": entry["tracked_min"].min(), "tracked_max": entry["tracked_max"].max()}
        if stale:
            return {k: v for k, v in entry.items() if k not in ("tracked_min", "tracked_max")}
    return entry


__all__ = ["CalibrationConfig", "Quantizer"]
