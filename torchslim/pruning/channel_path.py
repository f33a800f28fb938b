"""Masks that cover a pruned channel's whole path.

Pruning an output channel of a conv zeroes its weight rows (and bias), but the channel lives
on: a BatchNorm after it adds its shift, a depthwise conv or GroupNorm its bias. The model the
user fine-tunes then differs from what speedup builds, which removes the channel everywhere.
Here the dependency graph (``torchslim.graph``) finds every per-channel parameter the pruned
channel passes through, and masks it with the channel. NNI users state the same by hand with
``align`` target settings (``{'_output_': {'align': {'module_name': 'conv1', 'target_name':
'weight', 'dims': [0]}}}`` on a BatchNorm); those are honoured as well.
"""
from __future__ import annotations

import warnings
from typing import Any, Mapping

import torch
from torch import nn

Masks = dict[str, dict[str, torch.Tensor]]
_GUESS_SIZES = (32, 64, 28, 224, 299)


def has_dead_channels(masks: Mapping[str, Mapping[str, torch.Tensor]]) -> bool:
    """Whether some mask zeroes a whole row along dim 0 (an output channel); cheap pre-check."""
    for targets in masks.values():
        for mask in targets.values():
            if mask.dim() >= 1 and mask.numel() and bool((mask.reshape(mask.shape[0], -1).amax(1) == 0).any()):
                return True
    return False


def path_masks(model: nn.Module, masks: Masks, dummy_input: Any) -> Masks:
    """Masks for the per-channel parameters after pruned channels (norm affine, depthwise
    weights and biases), merged with ``masks`` (a new dict; ``masks`` is not changed)."""
    from torchslim.graph.groups import analyze

    ctx = analyze(model, dummy_input, masks)
    modules = dict(model.named_modules())
    merged: Masks = {name: dict(targets) for name, targets in masks.items()}
    for name, target, dim, dead in ctx.zeros:
        tensor = getattr(modules.get(name), target, None)
        if not isinstance(tensor, torch.Tensor) or tensor.shape[dim] != dead.numel():
            continue
        shape = [1] * tensor.dim()
        shape[dim] = -1
        keep = (~dead).reshape(shape).to(tensor.dtype)
        old = merged.setdefault(name, {}).get(target)
        merged[name][target] = (torch.ones_like(tensor) if old is None else old) * keep
    return merged


def align_masks(model: nn.Module, settings: Mapping[str, Mapping[str, Mapping[str, Any]]], masks: Masks) -> Masks:
    """NNI's ``align`` target settings: a target masked like another module's target, reduced
    to the given dims (``_output_`` on a per-channel module masks its weight and bias)."""
    modules = dict(model.named_modules())
    merged: Masks = {name: dict(targets) for name, targets in masks.items()}
    for name, targets in settings.items():
        for target, setting in targets.items():
            align = setting.get("align") if isinstance(setting, Mapping) else None
            if not align:
                continue
            source = masks.get(align["module_name"], {}).get(align.get("target_name", "weight"))
            if source is None:
                continue
            dims = [d % source.dim() for d in align.get("dims", [0])]
            reduce = [d for d in range(source.dim()) if d not in dims]
            vector = source.amax(dim=reduce) if reduce else source
            module = modules[name]
            names = [t for t in ("weight", "bias") if isinstance(getattr(module, t, None), torch.Tensor)] \
                if target in ("_output_", "_input_") else [target]
            for t in names:
                tensor = getattr(module, t)
                if tensor.dim() < 1 or tensor.shape[0] != vector.numel():
                    raise ValueError(f"align of '{name}'.{target} with '{align['module_name']}' dims {dims}: "
                                     f"{vector.numel()} channels, but '{name}'.{t} has {tensor.shape[0]}")
                keep = vector.reshape([-1] + [1] * (tensor.dim() - 1)).to(tensor.dtype)
                old = merged.setdefault(name, {}).get(t)
                merged[name][t] = (torch.ones_like(tensor) if old is None else old) * keep
    return merged


def guess_input(model: nn.Module) -> list[torch.Tensor]:
    """Candidate example inputs from the first layer with parameters (tried in order)."""
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            n = module.weight.dim() - 2
            return [torch.randn(1, module.in_channels, *([s] * n)) for s in _GUESS_SIZES]
        if isinstance(module, nn.Linear):
            return [torch.randn(1, module.in_features)]
        if isinstance(module, nn.Embedding):
            return [torch.randint(0, module.num_embeddings, (1, 8))]
    return []


def has_channel_modules(model: nn.Module) -> bool:
    """Whether some module acts per channel after a producer (norms, depthwise convs, PReLU)."""
    for m in model.modules():
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)):
            return True
        if isinstance(m, nn.modules.conv._ConvNd) and m.groups > 1:
            return True
        if isinstance(m, nn.PReLU) and m.num_parameters > 1:
            return True
    return False


def complete_masks(model: nn.Module, masks: Masks, dummy_input: Any) -> tuple[Masks, Any, str | None]:
    """``path_masks`` with ``dummy_input`` (or inputs guessed from the first layer); returns the
    masks, the input that traced, and, when none did, why (the masks are then unchanged)."""
    candidates = [dummy_input] if dummy_input is not None else guess_input(model)
    reason = "no dummy_input given and none could be guessed from the first layer"
    for candidate in candidates:
        try:
            return path_masks(model, masks, candidate), candidate, None
        except Exception as exc:  # noqa: BLE001  a failed trace only means less masking
            reason = f"{type(exc).__name__}: {str(exc)[:200]}"
    return masks, None, reason


def warn_incomplete(reason: str) -> None:
    warnings.warn("pruning could not trace the model to mask the norm layers after pruned channels "
                  f"({reason}); pass dummy_input= to the pruner. Speedup will report the difference "
                  "between the masked and the shrunk model.", stacklevel=4)


__all__ = ["align_masks", "complete_masks", "guess_input", "has_channel_modules", "has_dead_channels", "path_masks"]
