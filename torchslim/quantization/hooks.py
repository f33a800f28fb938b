"""Attach fake quantization to a module with hooks only.

Why hooks: the module keeps its class, its Parameter objects and its ``state_dict`` keys,
so optimizers built before compression keep working and pruning masks (which multiply
into ``module.weight`` in place from their own pre-hook) compose with quantization:

* a forward pre-hook applies pending masks, then swaps ``module._parameters['weight']``
  for its fake-quantized version for the duration of the call (gradients flow through the
  quantizer's straight-through estimator to the real Parameter) and fake-quantizes inputs;
* a forward hook (``always_call=True``, so it also runs when forward raises) puts the
  Parameter back and fake-quantizes outputs.

Optionally a following BatchNorm is folded into the weight before quantization (QAT BN
folding): the conv computes with ``fq(w * g) / g`` where ``g = gamma / sqrt(var + eps)``,
so the weight grid is the one the deployed, BN-folded int8 conv will use.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from torchslim.masking.masks import apply_masks
from torchslim.quantization.targets import TargetQuant

_ATTR = "_torchslim_quant"


def io_index(target: str) -> int:
    """``_input_`` / ``_input_0`` → 0, ``_output_2`` → 2."""
    suffix = target.split("_", 2)[2]
    return int(suffix) if suffix else 0


def canonical_target(target: str) -> str:
    return target + "0" if target in ("_input_", "_output_") else target


class ModuleQuant:
    """The fake quantizers of one module, and the hooks that apply them (picklable)."""

    def __init__(self, name: str, targets: dict[str, TargetQuant], bn: nn.Module | None = None) -> None:
        self.name = name
        self.targets = targets
        self.bn = bn
        self.saved: dict[str, nn.Parameter] = {}
        self.handles: list[int] = []

    def weight_targets(self) -> list[str]:
        return [t for t in self.targets if not t.startswith("_")]

    def _bn_factor(self, weight: torch.Tensor) -> torch.Tensor | None:
        bn = self.bn
        if bn is None or bn.running_var is None:
            return None
        gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
        factor = gamma.detach() / torch.sqrt(bn.running_var + bn.eps)
        return factor.reshape(-1, *([1] * (weight.dim() - 1)))

    def folded(self, target: str, weight: torch.Tensor) -> torch.Tensor:
        """The tensor the weight quantizer sees: ``weight`` with the folded BatchNorm scale, if any."""
        factor = self._bn_factor(weight) if target == "weight" else None
        return weight if factor is None else weight * factor

    def quantized_weight(self, module: nn.Module, target: str, weight: torch.Tensor) -> torch.Tensor:
        quant = self.targets[target]
        factor = self._bn_factor(weight) if target == "weight" else None
        if factor is None:
            return quant(weight, module, target)
        return quant(weight * factor, module, target) / factor

    def pre_hook(self, module: nn.Module, args: tuple) -> tuple | None:
        apply_masks(module)  # prune masks first, whichever hook was registered first
        for target in self.weight_targets():
            param = module._parameters.get(target)
            if param is None:
                continue
            if target in self.saved:  # a nested call of the same module: reuse the original
                param = self.saved[target]
            self.saved[target] = param
            module._parameters[target] = self.quantized_weight(module, target, param)
        if not any(t.startswith("_input_") for t in self.targets):
            return None
        new_args = list(args)
        for target, quant in self.targets.items():
            if target.startswith("_input_"):
                i = io_index(target)
                if i < len(new_args) and isinstance(new_args[i], torch.Tensor) and new_args[i].is_floating_point():
                    new_args[i] = quant(new_args[i], module, target)
        return tuple(new_args)

    def post_hook(self, module: nn.Module, args: tuple, output: Any) -> Any:
        self.restore(module)
        outputs = [t for t in self.targets if t.startswith("_output_")]
        if not outputs or output is None:
            return None
        if isinstance(output, torch.Tensor):
            quant = self.targets.get("_output_0")
            return quant(output, module, "_output_0") if quant is not None else None
        if isinstance(output, (tuple, list)):
            items = list(output)
            for target in outputs:
                i = io_index(target)
                if i < len(items) and isinstance(items[i], torch.Tensor):
                    items[i] = self.targets[target](items[i], module, target)
            return type(output)(items)
        return None

    def restore(self, module: nn.Module) -> None:
        for target, param in self.saved.items():
            module._parameters[target] = param
        self.saved = {}


class _PreHook:
    def __init__(self, state: ModuleQuant) -> None:
        self.state = state

    def __call__(self, module: nn.Module, args: tuple) -> Any:
        return self.state.pre_hook(module, args)


class _PostHook:
    def __init__(self, state: ModuleQuant) -> None:
        self.state = state

    def __call__(self, module: nn.Module, args: tuple, output: Any) -> Any:
        return self.state.post_hook(module, args, output)


def attach(module: nn.Module, state: ModuleQuant) -> None:
    """Register ``state``'s hooks on ``module`` (replacing an earlier quantization of it)."""
    detach(module)
    pre = module.register_forward_pre_hook(_PreHook(state))
    post = module.register_forward_hook(_PostHook(state), always_call=True)
    state.handles = [pre.id, post.id]
    setattr(module, _ATTR, state)


def quant_state(module: nn.Module) -> ModuleQuant | None:
    return getattr(module, _ATTR, None)


def detach(module: nn.Module) -> None:
    """Remove fake quantization from ``module`` (its weights stay the float ones)."""
    state = quant_state(module)
    if state is None:
        return
    state.restore(module)
    for hook_id in state.handles:
        module._forward_pre_hooks.pop(hook_id, None)
        module._forward_hooks.pop(hook_id, None)
        getattr(module, "_forward_hooks_always_called", {}).pop(hook_id, None)
    delattr(module, _ATTR)


__all__ = ["ModuleQuant", "attach", "canonical_target", "detach", "io_index", "quant_state"]
