"""NNI's ``align`` target setting: a target's mask follows another target's mask.

``{'op_names': ['bn1'], 'target_names': ['_output_'], 'target_settings': {'_output_': {'align':
{'module_name': 'conv1', 'target_name': 'weight', 'dims': [0]}}}}`` zeroes ``bn1``'s output
channels wherever ``conv1``'s weight mask removed a whole slice along ``dims`` (its output
channels). A module's output channel is zero exactly when its weight slice and bias entry
are, so an aligned ``_output_`` becomes masks on the module's ``weight`` (output-channel dim)
and ``bias``: the masked model then computes what the shrunk one will.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import nn

from torchslim.compression.granularity import channel_dim
from torchslim.errors import ConfigError

Masks = dict[str, dict[str, torch.Tensor]]


def aligned_masks(modules: Mapping[str, nn.Module], settings: Mapping[str, Mapping[str, Mapping[str, Any]]],
                  masks: Masks, current: Callable[[str, str], torch.Tensor | None]) -> Masks:
    """Masks of every target with an ``align`` setting, from ``masks`` (this step's) or ``current(name, target)``."""
    out: Masks = {}
    for name, targets in settings.items():
        for target, target_settings in targets.items():
            align = target_settings.get("align")
            if not align:
                continue
            where = f"align of {name!r} target {target!r}"
            if not isinstance(align, Mapping) or "module_name" not in align:
                raise ConfigError(f"{where}: 'align' must be a dict with 'module_name' (and 'target_name', 'dims')")
            source = align["module_name"] or name  # None: the same module (NNI)
            source_target = align.get("target_name", "weight")
            if source not in modules:
                raise ConfigError(f"{where}: 'module_name' {source!r} is not a module of the model")
            mask = masks.get(source, {}).get(source_target)
            if mask is None:
                mask = current(source, source_target)
            if mask is None:
                continue  # the source is not pruned (yet)
            dims = [d % mask.dim() for d in align.get("dims", [0])]
            if len(dims) != 1:
                raise ConfigError(f"{where}: only one aligned dim is supported, got 'dims' {align.get('dims')}")
            reduce = [d for d in range(mask.dim()) if d != dims[0]]
            channels = mask.amax(dim=reduce) if reduce else mask
            out.setdefault(name, {}).update(_channel_masks(modules[name], target, channels, where))
    return out


def _channel_masks(module: nn.Module, target: str, channels: torch.Tensor, where: str) -> dict[str, torch.Tensor]:
    if target.startswith("_input_"):
        raise ConfigError(f"{where}: aligning an '_input_' target is not supported; align the producer's '_output_'")
    names = ("weight", "bias") if target.startswith("_output_") else (target,)
    result = {}
    for pname in names:
        tensor = getattr(module, pname, None)
        if not isinstance(tensor, torch.Tensor):
            continue
        dim = channel_dim(module, pname) if pname == "weight" else 0
        if tensor.shape[dim] != channels.numel():
            raise ConfigError(f"{where}: {pname!r} has {tensor.shape[dim]} channels, the aligned mask "
                              f"{channels.numel()}")
        view = [1] * tensor.dim()
        view[dim] = -1
        result[pname] = channels.reshape(view).expand_as(tensor).to(tensor.dtype).clone()
    if not result:
        raise ConfigError(f"{where}: {type(module).__name__} has no weight or bias to zero its output channels")
    return result


__all__ = ["aligned_masks"]
