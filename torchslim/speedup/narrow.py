"""Narrowing LayerNorm'd streams (``ModelSpeedup(..., narrow_normalized=True)``).

What it changes, and the reference the shrunk model is checked against:

* every narrowed LayerNorm normalises over its kept channels only (its weight and bias lose
  the others, ``normalized_shape`` shrinks);
* the stream's parameters read in the graph (class token, position embedding, layer scale)
  lose the removed channels.

The *narrowed reference* is the masked model run with those LayerNorms computing their
statistics over the kept channels (zero on the others) and those parameters zeroed on the
removed channels: the shrunk model must equal it, and how far it is from the masked model is
the deviation speedup reports.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from torchslim.speedup.shrink import select_

CAUSE = "LayerNorm over a narrowed stream"


@dataclass
class Narrowing:
    """What narrowing removes: kept indices per LayerNorm weight and per stream parameter."""

    norms: list[tuple[str, torch.Tensor, torch.Tensor]]  # (name, weight tensor, kept indices)
    params: list[tuple[Any, torch.Tensor]]  # (StreamParam, kept indices along its dim)

    def __bool__(self) -> bool:
        return bool(self.norms or self.params)

    def describe(self) -> str:
        text = f"{CAUSE}: {len(self.norms)} LayerNorm(s) normalise over fewer channels"
        if self.params:
            names = ", ".join(p.path for p, _ in self.params[:4]) + (", ..." if len(self.params) > 4 else "")
            text += f", {len(self.params)} stream parameter(s) cut with them ({names})"
        return text


def plan(ctx: Any, keep: dict[str, dict[str, torch.Tensor]]) -> Narrowing:
    """The LayerNorms and stream parameters that lose channels, from a resolved analysis.

    A parameter is cut only along channels it shares with a layer that is itself shrunk
    (the stream), never on its own."""
    space = ctx.space
    norms = []
    for norm in ctx.narrowed:
        kept = space.kept(norm.ids)
        if not bool(kept.all()):
            norms.append((norm.name, norm.weight, torch.nonzero(kept).reshape(-1)))
    if not ctx.params:
        return Narrowing(norms, [])
    shrunk_labels: set[int] = set()
    for name in keep:
        for slot, ids in ctx.uses[name].slots.items():
            shrunk_labels.update(space.label(ids).tolist())
    params = []
    for param in ctx.params.values():
        labels = space.label(param.ids)
        tied = torch.tensor([int(label) in shrunk_labels for label in labels.tolist()], dtype=torch.bool)
        kept = space.kept(param.ids) | ~tied
        if not bool(kept.all()):
            params.append((param, torch.nonzero(kept).reshape(-1)))
    return Narrowing(norms, params)


def owners(model: nn.Module, narrowing: Narrowing) -> list[nn.Module]:
    return [model.get_submodule(p.owner) for p, _ in narrowing.params]


def cut_params(model: nn.Module, narrowing: Narrowing) -> None:
    """Shrink the stream parameters in place (LayerNorm-like owners get a smaller normalized_shape)."""
    for param, kept in narrowing.params:
        cut_param(model.get_submodule(param.owner), param.attr, param.dim, kept)


def cut_param(owner: nn.Module, attr: str, dim: int, kept: torch.Tensor) -> None:
    select_(owner, attr, dim, kept)
    if attr == "weight" and isinstance(getattr(owner, "normalized_shape", None), (tuple, list)):
        owner.normalized_shape = (int(kept.numel()),)


def spec_entries(narrowing: Narrowing) -> dict[str, tuple[str, dict[str, int], int]]:
    """Shape-spec entries (see serialize.py) of the cut parameters: ``path -> ('parameter', {dim: n}, 1)``."""
    return {p.path: ("parameter", {str(p.dim): int(kept.numel())}, 1) for p, kept in narrowing.params}


@contextlib.contextmanager
def narrowed_reference(model: nn.Module, narrowing: Narrowing) -> Iterator[None]:
    """Run the masked model as narrowing will make it (see the module docstring)."""
    original = F.layer_norm
    by_weight = {id(weight): kept for _, weight, kept in narrowing.norms}

    def layer_norm(input: torch.Tensor, normalized_shape: Any, weight: torch.Tensor | None = None,
                   bias: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
        kept = by_weight.get(id(weight)) if weight is not None else None
        if kept is None:
            return original(input, normalized_shape, weight, bias, eps)
        idx = kept.to(input.device)
        out = original(input.index_select(-1, idx), (idx.numel(),), weight.index_select(0, idx),
                       None if bias is None else bias.index_select(0, idx), eps)
        return input.new_zeros(input.shape).index_copy(-1, idx, out)

    saved = []
    with torch.no_grad():
        for param, kept in narrowing.params:
            tensor = param.tensor
            removed = torch.ones(tensor.shape[param.dim], dtype=torch.bool)
            removed[kept] = False
            saved.append((tensor, tensor.detach().clone()))
            tensor.index_fill_(param.dim, torch.nonzero(removed).reshape(-1).to(tensor.device), 0)
    F.layer_norm = layer_norm
    try:
        yield
    finally:
        F.layer_norm = original
        with torch.no_grad():
            for tensor, value in reversed(saved):
                tensor.copy_(value)


__all__ = ["CAUSE", "Narrowing", "cut_param", "cut_params", "narrowed_reference", "owners", "plan", "spec_entries"]
