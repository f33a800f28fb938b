"""Masks checked before speedup touches anything, and a restore point for every failure.

:func:`validate_masks` refuses, with :class:`SpeedupError` naming module, target and what
is wrong, any mask that is not a 0/1 tensor of exactly its target's shape on a tensor the
module has (a misspelt ``'wieght'`` is an error, not a no-op). :class:`RestorePoint`
records a model's structure, tensor values and attached masks, so a speedup that fails
anywhere (bad rule, shrink error, output mismatch) leaves the model — and the pruner that
masks it — exactly as it was.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from torchslim.errors import SpeedupError

Masks = Mapping[str, Mapping[str, torch.Tensor]]


def _tensors_of(module: nn.Module) -> list[str]:
    names = [n for n, _ in module.named_parameters(recurse=False)]
    names += [n for n, b in module.named_buffers(recurse=False) if not n.endswith("_mask")]
    return names


def validate_masks(model: nn.Module, masks: Any) -> dict[str, dict[str, torch.Tensor]]:
    """``{module: {target: mask}}`` checked against ``model``; masks as CPU tensors.

    A target may be written ``'weight'`` or ``'weight_mask'``; ``None`` masks are skipped.
    """
    if not isinstance(masks, Mapping):
        raise SpeedupError(f"masks must be a dict {{module name: {{target: mask tensor}}}}, "
                           f"got {type(masks).__name__}")
    modules = dict(model.named_modules())
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, targets in masks.items():
        if name not in modules:
            close = [n for n in modules if n and (n in str(name) or str(name) in n)][:5]
            hint = f"; similar names: {', '.join(close)}" if close else ""
            raise SpeedupError(f"masks name module {name!r}, which the model does not have{hint}")
        if not isinstance(targets, Mapping):
            raise SpeedupError(f"masks[{name!r}] must be a dict {{target: mask tensor}}, got "
                               f"{type(targets).__name__}")
        module = modules[name]
        checked = {}
        for key, mask in targets.items():
            if mask is None:
                continue
            target = str(key).removesuffix("_mask")
            checked[target] = _check_one(name, module, key, target, mask)
        if checked:
            out[name] = checked
    return out


def _check_one(name: str, module: nn.Module, key: Any, target: str, mask: Any) -> torch.Tensor:
    where = f"mask {name!r}[{key!r}]"
    tensor = getattr(module, target, None) if target in _tensors_of(module) else None
    if not isinstance(tensor, torch.Tensor):
        raise SpeedupError(f"{where}: {type(module).__name__} {name!r} has no tensor {target!r}; "
                           f"its tensors: {', '.join(_tensors_of(module)) or 'none'}")
    if not isinstance(mask, torch.Tensor):
        raise SpeedupError(f"{where} is a {type(mask).__name__}; allowed: a torch.Tensor of 0/1")
    if tuple(mask.shape) != tuple(tensor.shape):
        raise SpeedupError(f"{where} has shape {tuple(mask.shape)}, but {target!r} of "
                           f"{type(module).__name__} {name!r} has shape {tuple(tensor.shape)}")
    if mask.is_complex():
        raise SpeedupError(f"{where} has dtype {mask.dtype}; allowed: bool, integer or float 0/1")
    mask = mask.detach().cpu()
    if mask.dtype != torch.bool:
        values = mask.float()
        if not torch.all((values == 0) | (values == 1)):
            bad = values[(values != 0) & (values != 1)].flatten()[:3].tolist()
            raise SpeedupError(f"{where} holds values other than 0 and 1 (e.g. {bad}); speedup "
                               f"needs binary masks")
    return mask


_CONTAINERS = ("_parameters", "_buffers", "_modules", "_forward_pre_hooks", "_forward_hooks",
               "_forward_pre_hooks_with_kwargs", "_forward_hooks_with_kwargs",
               "_forward_hooks_always_called", "_non_persistent_buffers_set")


class RestorePoint:
    """Everything a speedup may change in ``model``: module attributes (masks, hooks,
    sub-modules, shapes) and the values of every parameter and buffer."""

    def __init__(self, model: nn.Module) -> None:
        self.modules = []
        for module in model.modules():
            attrs = dict(module.__dict__)
            containers = {k: type(attrs[k])(attrs[k]) for k in _CONTAINERS if k in attrs}
            self.modules.append((module, attrs, containers))
        with torch.no_grad():
            self.values = [(t, t.detach().clone())
                           for t in {id(t): t for t in _all_tensors(model)}.values()]

    @torch.no_grad()
    def restore(self) -> None:
        for module, attrs, containers in self.modules:
            module.__dict__.clear()
            module.__dict__.update(attrs)
            for key, saved in containers.items():
                live = attrs[key]  # the very container object the module had
                live.clear()
                live.update(saved)
        for tensor, value in self.values:
            if tensor.shape == value.shape:
                tensor.copy_(value)
            else:  # a shrink swapped .data: put the original storage back
                tensor.data = value


def _all_tensors(model: nn.Module) -> list[torch.Tensor]:
    return [*model.parameters(), *(b for b in model.buffers() if b is not None)]
