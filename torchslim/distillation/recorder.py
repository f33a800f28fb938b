"""Forward hooks that record the tensors distillation compares (the last call of each module wins)."""
from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn


def _index(target: str) -> int:
    suffix = target.split("_", 2)[2]
    return int(suffix) if suffix else 0


def _pick(value: Any, index: int) -> Any:
    if isinstance(value, torch.Tensor):
        return value if index == 0 else None
    if isinstance(value, (tuple, list)) and index < len(value):
        return value[index]
    return None


class Recorder:
    """Records ``module.<target>`` values of a model during forward passes, while started.

    Targets are ``(module_name, target)`` with ``'_input_N'``, ``'_output_N'`` or a parameter
    name; ``''`` is the whole model.
    """

    def __init__(self, model: nn.Module, targets: Iterable[tuple[str, str]]) -> None:
        self.model = model
        self.targets = sorted(set(targets))
        self.values: dict[tuple[str, str], Any] = {}
        self._handles: list[Any] = []

    def start(self) -> None:
        if self._handles:
            return
        modules = dict(self.model.named_modules())
        for name, target in self.targets:
            module = modules[name]
            if target.startswith("_input_"):
                self._handles.append(module.register_forward_pre_hook(self._input_hook(name, target)))
            elif target.startswith("_output_"):
                self._handles.append(module.register_forward_hook(self._output_hook(name, target)))
            else:  # a parameter: the (masked, fake-quantized) tensor the module computes with
                self._handles.append(module.register_forward_pre_hook(self._param_hook(name, target)))

    def stop(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.values = {}

    def __getitem__(self, key: tuple[str, str]) -> Any:
        try:
            return self.values[key]
        except KeyError:
            raise RuntimeError(f"distillation target {key[1]!r} of module {key[0]!r} was not computed in the last "
                               "forward pass (is the module used by the model's forward?)") from None

    def _input_hook(self, name: str, target: str) -> Any:
        def hook(module: nn.Module, args: tuple) -> None:
            self.values[(name, target)] = _pick(args, _index(target))

        return hook

    def _output_hook(self, name: str, target: str) -> Any:
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            self.values[(name, target)] = _pick(output, _index(target))

        return hook

    def _param_hook(self, name: str, target: str) -> Any:
        def hook(module: nn.Module, args: tuple) -> None:
            self.values[(name, target)] = getattr(module, target)

        return hook


__all__ = ["Recorder"]
