"""Pruning units and a cost model: params / MACs of a per-unit sparsity without building it.

A *unit* is a set of layers whose output channels are coupled one-to-one (a dependency
group, or a single layer): the search gives each unit one sparsity. Every module's input
and output widths are linear in the units' kept fractions (a channel belongs to at most
one unit, found through the channel-dependency graph), so a module's cost is a product of
two linear forms. Costs are exact up to channel rounding; :func:`compress` checks the
built model and corrects.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from torchslim.errors import ConfigError

DEFAULT_OP_TYPES = ("Conv2d", "Linear")
_PRODUCERS = ("conv", "grouped_conv", "depthwise", "linear")


@dataclass
class Unit:
    """Layers that keep the same output channels; ``channels`` is their shared width."""

    members: list[str]
    channels: int

    @property
    def name(self) -> str:
        return self.members[0] if len(self.members) == 1 else f"{self.members[0]} (+{len(self.members) - 1})"


@dataclass
class ModuleCost:
    """Costs of one module split by how they scale: with in×out, with out only, not at all."""

    name: str
    in_w: np.ndarray  # fraction of its input channels owned by each unit
    in_c: float  # fraction owned by no unit (always kept)
    out_w: np.ndarray
    out_c: float
    io: dict[str, float] = field(default_factory=dict)  # metric -> part scaling with in×out
    o: dict[str, float] = field(default_factory=dict)  # metric -> part scaling with out
    const: dict[str, float] = field(default_factory=dict)

    def fractions(self, keep: np.ndarray) -> tuple[float, float]:
        return self.in_c + float(self.in_w @ keep), self.out_c + float(self.out_w @ keep)


class CostModel:
    """Units of a model and its params / MACs as functions of the units' kept fractions."""

    def __init__(self, model: nn.Module, example_input: Any, *, op_types: Sequence[str] = DEFAULT_OP_TYPES,
                 exclude: Iterable[str] = (), **trace_options: Any) -> None:
        from torchslim.graph import analyze
        from torchslim.utils.inputs import as_args

        exclude = set(exclude)
        modules = dict(model.named_modules())
        unknown = sorted(exclude - set(modules))
        if unknown:
            raise ConfigError(f"exclude names {unknown}, which the model does not have")
        # analyse as if every candidate layer were pruned whole: what stays kept is pinned
        # (feeds the output, a barrier...) and cannot shrink
        everything = {n: {"weight": torch.zeros_like(m.weight)} for n, m in modules.items()
                      if type(m).__name__ in op_types and isinstance(getattr(m, "weight", None), torch.Tensor)}
        ctx = analyze(model, example_input, everything, **trace_options)
        by_labels: dict[tuple[int, ...], list[str]] = {}
        for name, use in ctx.uses.items():
            ids = use.slots.get("out")
            if use.kind not in _PRODUCERS or ids is None or type(use.module).__name__ not in op_types:
                continue
            if bool(ctx.space.kept(ids).any()):
                continue
            labels = ctx.space.label(ids)
            by_labels.setdefault(tuple(labels.tolist()), []).append(name)
        # a unit with an excluded member is left whole: its channels are coupled to the excluded layer
        kept_keys = [key for key, names in by_labels.items() if not exclude & set(names)]
        self.units = [Unit(by_labels[key], len(key)) for key in kept_keys]
        if not self.units:
            raise ConfigError(f"no prunable layer of types {list(op_types)} in the model "
                              "(every output channel is pinned or excluded)")
        owner = {label: i for i, key in enumerate(kept_keys) for label in key}

        macs = _module_macs(model, as_args(example_input))
        self.dense_params = sum(p.numel() for p in model.parameters())
        self.dense_macs = float(macs.pop("", 0))
        self.modules: list[ModuleCost] = []
        covered_params = 0
        for name, use in ctx.uses.items():
            in_w, in_c = _ownership(ctx, use.slots.get("in"), owner, len(self.units))
            out_w, out_c = _ownership(ctx, use.slots.get("out"), owner, len(self.units))
            cost = ModuleCost(name, in_w, in_c, out_w, out_c)
            own = {n: p.numel() for n, p in use.module.named_parameters(recurse=False)}
            covered_params += sum(own.values())
            scales_io = use.kind in ("conv", "grouped_conv", "linear")
            weight = own.pop("weight", 0)
            cost.io["params"] = float(weight) if scales_io else 0.0
            cost.o["params"] = float(sum(own.values()) + (0 if scales_io else weight))
            m = float(macs.get(name, 0))
            cost.io["macs"] = m if scales_io else 0.0
            cost.o["macs"] = 0.0 if scales_io else m
            self.modules.append(cost)
        self.const = {"params": float(self.dense_params - covered_params),
                      "macs": self.dense_macs - sum(float(macs.get(c.name, 0)) for c in self.modules)}
        self._arrays: dict[str, tuple[np.ndarray, ...]] = {}
        self._stack()

    # --- evaluation ----------------------------------------------------------------------
    def _stack(self) -> None:
        self.in_w = np.stack([c.in_w for c in self.modules])
        self.in_c = np.array([c.in_c for c in self.modules])
        self.out_w = np.stack([c.out_w for c in self.modules])
        self.out_c = np.array([c.out_c for c in self.modules])

    def coefficients(self, metric: str) -> tuple[np.ndarray, np.ndarray, float]:
        return (np.array([c.io.get(metric, 0.0) for c in self.modules]),
                np.array([c.o.get(metric, 0.0) for c in self.modules]), self.const.get(metric, 0.0))

    def fractions(self, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.in_c + self.in_w @ keep, self.out_c + self.out_w @ keep

    def evaluate(self, metric: str, sparsity: Sequence[float] | np.ndarray) -> float:
        """``metric`` ('params' or 'macs') of the model with these per-unit sparsities."""
        io, o, const = self._arrays.get(metric) or self._arrays.setdefault(metric, self.coefficients(metric))
        keep = self.keep_fractions(sparsity)
        fin, fout = self.fractions(keep)
        return float(io @ (fin * fout) + o @ fout + const)

    def keep_fractions(self, sparsity: Sequence[float] | np.ndarray) -> np.ndarray:
        """Kept fraction per unit, rounded to whole channels (at least one kept)."""
        s = np.clip(np.asarray(sparsity, dtype=float), 0.0, 1.0)
        widths = np.array([u.channels for u in self.units], dtype=float)
        kept = np.maximum(np.round(widths * (1.0 - s)), 1.0)
        return kept / widths

    def config_list(self, sparsity: Sequence[float] | np.ndarray) -> list[dict[str, Any]]:
        """A config_list pruning each unit to its sparsity (coupled layers share channels)."""
        entries = []
        keep = self.keep_fractions(sparsity)
        for i, (unit, k) in enumerate(zip(self.units, keep)):
            pruned = unit.channels - int(round(k * unit.channels))
            if pruned <= 0:
                continue
            ratio = pruned / unit.channels  # exact: the allocator floors ratio × channels
            entry: dict[str, Any] = {"op_names": list(unit.members), "sparse_ratio": ratio}
            if len(unit.members) > 1:
                entry["dependency_group_id"] = f"unit{i}"
            entries.append(entry)
        return entries

    def describe(self, sparsity: Sequence[float] | np.ndarray) -> list[dict[str, Any]]:
        keep = self.keep_fractions(sparsity)
        return [{"unit": u.name, "members": u.members, "channels": u.channels,
                 "kept": int(round(k * u.channels)), "sparsity": float(1.0 - k)} for u, k in zip(self.units, keep)]


def _ownership(ctx: Any, ids: torch.Tensor | None, owner: Mapping[int, int], n_units: int) -> tuple[np.ndarray, float]:
    weights = np.zeros(n_units)
    if ids is None or ids.numel() == 0:
        return weights, 1.0
    labels = ctx.space.label(ids).tolist()
    for label in labels:
        unit = owner.get(label)
        if unit is not None:
            weights[unit] += 1.0
    weights /= len(labels)
    return weights, 1.0 - float(weights.sum())


@torch.no_grad()
def _module_macs(model: nn.Module, args: tuple) -> dict[str, int]:
    """MACs of each leaf module in one forward pass (aten FLOP count / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(*args)
    finally:
        model.train(was_training)
    root = type(model).__name__
    counts = counter.get_flop_counts()
    out: dict[str, int] = {"": int(sum(counts.get("Global", {}).values())) // 2}  # the whole model
    for key, ops in counts.items():
        if key.startswith(root + "."):
            out[key[len(root) + 1:]] = int(sum(ops.values())) // 2
    return out


__all__ = ["CostModel", "ModuleCost", "Unit", "DEFAULT_OP_TYPES"]
