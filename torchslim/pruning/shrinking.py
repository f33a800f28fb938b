"""Shrink between pruning rounds: masks → a smaller model, with training state carried over.

A schedule built with ``speedup=True`` calls :func:`shrink_round` after each pruning step:
the masked channels are removed (:class:`~torchslim.speedup.ModelSpeedup`), the optimizers
point at the new, smaller parameters with their state (momentum, Adam moments) sliced the same
way, and per-parameter tensors kept elsewhere (a lottery ticket's initial weights) are sliced
too. Later rounds then ask for the sparsity still missing relative to the *original* widths.
"""
from __future__ import annotations

import copy
from typing import Any, Iterable, Mapping

import torch
from torch import nn


def out_widths(model: nn.Module, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Output-channel count (dim 0 of the target, dim 1 for transposed convs) per target."""
    from torchslim.pruning.granularity import channel_dim

    modules = dict(model.named_modules())
    out = {}
    for name, target in keys:
        module = modules.get(name)
        tensor = getattr(module, target, None) if module is not None else None
        if isinstance(tensor, torch.Tensor) and tensor.dim() > 0:
            out[(name, target)] = int(tensor.shape[channel_dim(module, target)])
    return out


def shrink_round(pruner: Any, dummy_input: Any, optimizers: Iterable[torch.optim.Optimizer] = (),
                 per_param: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor] | None:
    """Remove the pruner's masked channels from its model in place; returns ``per_param``
    (a ``state_dict``-like mapping) sliced to the new shapes, if given."""
    from torchslim.speedup import ModelSpeedup
    from torchslim.speedup.shrink import SHRINKERS

    model = pruner.model
    masks = pruner.get_masks()
    if not masks:
        return dict(per_param) if per_param is not None else None
    optimizers = list(optimizers)
    names = {id(p): n for n, p in model.named_parameters()}
    before = copy.deepcopy(model)
    speedup = ModelSpeedup(model, dummy_input, masks)
    speedup.speedup_model()
    pruner.forget_modules()

    def sliced(values: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``values`` (full-size tensors by parameter/buffer name) cut like the model was."""
        out = dict(values)
        for layer, keep in speedup.kept.items():
            shadow = copy.deepcopy(before.get_submodule(layer))
            prefix = f"{layer}." if layer else ""
            local = {n: t for n, t in shadow.named_parameters(recurse=True)}
            local.update(dict(shadow.named_buffers(recurse=True)))
            touched = []
            with torch.no_grad():
                for n, t in local.items():
                    value = values.get(prefix + n)
                    if isinstance(value, torch.Tensor) and value.shape == t.shape:
                        t.data = value.detach().clone()
                        touched.append(n)
            new = SHRINKERS[speedup.kinds[layer]](shadow, keep)
            shadow = new if isinstance(new, nn.Module) else shadow
            after = dict(shadow.named_parameters(recurse=True))
            after.update(dict(shadow.named_buffers(recurse=True)))
            for n in touched:
                if n in after:
                    out[prefix + n] = after[n].detach()
        return out

    new_params = dict(model.named_parameters())
    for opt in optimizers:
        for group in opt.param_groups:
            old = list(group["params"])
            group["params"] = [new_params.get(names.get(id(p)), p) for p in old]
            moved = [(p_old, p_new, opt.state.pop(p_old, None)) for p_old, p_new in zip(old, group["params"])]
            # one pass per kind of state (momentum_buffer, exp_avg...): full-size tensors sliced
            by_key: dict[str, dict[str, torch.Tensor]] = {}
            for p_old, p_new, state in moved:
                for key, value in (state or {}).items():
                    if p_new is not p_old and isinstance(value, torch.Tensor) and value.shape == p_old.shape:
                        by_key.setdefault(key, {})[names[id(p_old)]] = value
            cut = {key: sliced(values) for key, values in by_key.items()}
            for p_old, p_new, state in moved:
                if state:
                    name = names.get(id(p_old))
                    opt.state[p_new] = {k: cut[k][name] if k in cut and name in by_key[k] else v
                                        for k, v in state.items()}
    return sliced(per_param) if per_param is not None else None


def translated_ratio(final_now: float, original: int, current: int) -> float:
    """The share of the *current* width to prune so that ``final_now`` of the original goes."""
    if current <= 0:
        return 0.0
    return min(max(1.0 - (1.0 - final_now) * original / current, 0.0), 1.0)


__all__ = ["out_widths", "shrink_round", "translated_ratio"]
