"""Module kinds: everything speedup knows about one kind of layer, in one object.

A :class:`ModuleKind` holds the channel *rule* (and the module classes it applies to), the
*shrinker* that cuts a module along kept indices, the full *size of each slot* (so
``load(path, model=fresh)`` can rebuild a shrunk layer), which parameter dims each slot selects
(the channel map), and whether the kind *produces* new channels (dependency groups).

Adding a module kind is registering one object::

    register_module_kind(ModuleKind("my_gate", types=(MyGate,), rule=my_rule, shrink=my_shrink,
                                    param_dims=lambda m: {"out": [("weight", 0)]}))

Built-in kinds are declared here; their shrinkers are attached when :mod:`torchslim.speedup`
is imported (the graph package does not depend on it).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, MutableMapping

from torch import nn

ParamDims = dict[str, list[tuple[str, int]]]  # slot -> [(parameter or buffer, dim)]


@dataclass(frozen=True)
class ModuleKind:
    """One kind of layer speedup can shrink.

    name: the kind a channel rule records (``ctx.use(name, module, kind)``).
    shrink: ``shrink(module, {slot: kept indices})``; may return a replacement module.
    param_dims: ``param_dims(module) -> {slot: [(attr, dim)]}``: tensors a slot selects along.
    slot_size: ``slot_size(module, slot) -> int`` of the unshrunk module; defaults to the size
        of the first ``param_dims`` entry of the slot.
    producer: the kind creates output channels (convs, linears): it heads dependency groups.
    types, rule: module classes (or class names) and the channel rule registered for them.
    """

    name: str
    shrink: Callable[[nn.Module, dict], Any] | None = None
    param_dims: Callable[[nn.Module], ParamDims] | None = None
    slot_size: Callable[[nn.Module, str], int] | None = None
    producer: bool = False
    types: tuple = ()
    rule: Callable | None = None

    def size_of(self, module: nn.Module, slot: str) -> int:
        """Full size of ``slot`` on an unshrunk ``module``."""
        if self.slot_size is not None:
            return int(self.slot_size(module, slot))
        for attr, dim in (self.param_dims(module) if self.param_dims else {}).get(slot, []):
            tensor = getattr(module, attr, None)
            if tensor is not None:
                return int(tensor.shape[dim])
        raise KeyError(f"module kind '{self.name}' cannot size slot '{slot}': give it slot_size or param_dims")


_KINDS: dict[str, ModuleKind] = {}


def register_module_kind(kind: ModuleKind) -> ModuleKind:
    """Register (or replace) a module kind; its rule, if given, applies to ``kind.types``."""
    from torchslim.graph.module_rules import register_module_rule

    _KINDS[kind.name] = kind
    if kind.rule is not None:
        for key in kind.types:
            register_module_rule(key, kind.rule)
    return kind


def unregister_module_kind(name: str) -> None:
    """Forget a kind and the rules it registered (tests undo registrations with this)."""
    from torchslim.graph.module_rules import unregister_module_rule

    kind = _KINDS.pop(name, None)
    if kind is not None and kind.rule is not None:
        for key in kind.types:
            unregister_module_rule(key, kind.rule)


def get_kind(name: str) -> ModuleKind:
    if name not in _KINDS:
        raise KeyError(f"unknown module kind '{name}'; register it with register_module_kind(ModuleKind(...))")
    return _KINDS[name]


def module_kinds() -> dict[str, ModuleKind]:
    """A copy of the registry."""
    return dict(_KINDS)


def set_shrinker(name: str, shrink: Callable[[nn.Module, dict], Any]) -> None:
    """Attach a shrinker to a kind (creating a bare kind if it is new)."""
    _KINDS[name] = dataclasses.replace(_KINDS.get(name) or ModuleKind(name), shrink=shrink)


class ShrinkerView(MutableMapping):
    """``{kind: shrinker}`` over the registry (the pre-registry ``SHRINKERS`` dict)."""

    def __getitem__(self, name: str) -> Callable:
        shrink = _KINDS[name].shrink if name in _KINDS else None
        if shrink is None:
            raise KeyError(name)
        return shrink

    def __setitem__(self, name: str, shrink: Callable) -> None:
        set_shrinker(name, shrink)

    def __delitem__(self, name: str) -> None:
        set_shrinker(name, None)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[str]:
        return iter([n for n, k in _KINDS.items() if k.shrink is not None])

    def __len__(self) -> int:
        return sum(k.shrink is not None for k in _KINDS.values())


# --- built-in kinds: sizes and parameter dims (rules live in module_rules, shrinkers in speedup) ---
def _conv_dims(m: nn.Module) -> ParamDims:
    o, i = (1, 0) if getattr(m, "transposed", False) else (0, 1)
    return {"out": [("weight", o), ("bias", 0)], "in": [("weight", i)]}


def _same(*attrs: str) -> Callable[[nn.Module], ParamDims]:
    def dims(m: nn.Module) -> ParamDims:
        both = [(a, 0) for a in attrs]
        return {"out": both, "in": list(both)}
    return dims


def _channels(m: nn.Module, slot: str) -> int:
    for attr in ("num_features", "num_channels", "num_parameters"):
        if hasattr(m, attr):
            return int(getattr(m, attr))
    raise KeyError(slot)


def _conv_size(m: nn.Module, slot: str) -> int:
    return m.in_channels if slot == "in" else m.out_channels


def _heads_size(m: nn.Module, slot: str) -> int:
    if slot == "heads" and hasattr(m, "k_proj"):  # q/k/v/o: the unit is a key/value head
        from torchslim.graph.attention import qkvo_head_counts

        return int(qkvo_head_counts(m)[1])
    if slot == "heads":
        return int(getattr(m, "num_heads", None) or getattr(m, "num_attention_heads"))
    proj = getattr(m, "out_proj", None) or getattr(m, "c_proj", None) or m.o_proj
    return proj.weight.shape[1] if type(m).__name__ == "GPT2Attention" else proj.weight.shape[0]


_BUILTIN = [
    ModuleKind("conv", param_dims=_conv_dims, slot_size=_conv_size, producer=True),
    ModuleKind("grouped_conv", param_dims=lambda m: {"out": [("weight", 0), ("bias", 0)], "in": []},
               slot_size=_conv_size, producer=True),
    ModuleKind("depthwise", param_dims=_same("weight", "bias"), slot_size=_conv_size, producer=True),
    ModuleKind("linear", param_dims=lambda m: {"out": [("weight", 0), ("bias", 0)], "in": [("weight", 1)]},
               producer=True),
    ModuleKind("conv1d_hf", param_dims=lambda m: {"out": [("weight", 1), ("bias", 0)], "in": [("weight", 0)]},
               producer=True),
    ModuleKind("embedding", param_dims=lambda m: {"out": [("weight", 1)]}, producer=True),
    ModuleKind("batchnorm", param_dims=_same("weight", "bias", "running_mean", "running_var"), slot_size=_channels),
    ModuleKind("instancenorm", param_dims=_same("weight", "bias", "running_mean", "running_var"), slot_size=_channels),
    ModuleKind("prelu", param_dims=_same("weight"), slot_size=_channels),
    ModuleKind("groupnorm", param_dims=_same("weight", "bias"), slot_size=_channels),
    ModuleKind("layernorm", param_dims=_same("weight", "bias"), slot_size=lambda m, slot: int(m.normalized_shape[-1])),
    ModuleKind("mha", slot_size=_heads_size),
    ModuleKind("gpt2_attention", slot_size=_heads_size),
    ModuleKind("qkvo_attention", slot_size=_heads_size),
    ModuleKind("hf_self_attention", slot_size=_heads_size),
]
for _kind in _BUILTIN:
    _KINDS[_kind.name] = _kind


def is_kind_module(module: nn.Module) -> bool:
    """A module a registered kind's rule applies to: traced as one leaf, not looked into."""
    for kind in _KINDS.values():
        for key in kind.types if kind.rule is not None else ():
            if (isinstance(key, str) and type(module).__name__ == key) or (isinstance(key, type) and isinstance(module, key)):
                return True
    return False


def producer_kinds() -> set[str]:
    return {n for n, k in _KINDS.items() if k.producer}


__all__ = ["ModuleKind", "ParamDims", "ShrinkerView", "get_kind", "is_kind_module", "module_kinds", "producer_kinds",
           "register_module_kind", "set_shrinker", "unregister_module_kind"]
