"""Importance scorers: how much each block of a tensor matters (low score = pruned first).

A scorer is a plain function ``fn(ctx: ScoreContext) -> Tensor`` returning one score per
block (the grid shape of the target's granularity). Register new ones by name with
:func:`register_importance`; pruners refer to them by that name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from torchslim.errors import ConfigError
from torchslim.compression.granularity import to_units


@dataclass
class ScoreContext:
    """Everything a scorer may look at for one (module, target)."""

    module_name: str
    module: nn.Module
    target: str
    block: tuple[int, ...]
    settings: dict[str, Any]
    # data collected by the pruner (activations, gradients, ...), keyed by the scorer's needs
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def tensor(self) -> torch.Tensor:
        return getattr(self.module, self.target).detach()

    def units(self, tensor: torch.Tensor | None = None) -> torch.Tensor:
        """``tensor`` (default: the target) as [*grid, elements_per_block]."""
        return to_units(self.tensor if tensor is None else tensor, self.block)


Scorer = Callable[[ScoreContext], torch.Tensor]
_SCORERS: dict[str, Scorer] = {}


def register_importance(name: str) -> Callable[[Scorer], Scorer]:
    """Decorator: make a scorer available to pruners as ``importance=name``."""

    def add(fn: Scorer) -> Scorer:
        _SCORERS[name] = fn
        return fn

    return add


def get_importance(name_or_fn: str | Scorer) -> Scorer:
    if callable(name_or_fn):
        return name_or_fn
    if name_or_fn not in _SCORERS:
        import torchslim.pruning.data_importance  # noqa: F401  (registers the data-driven scorers)
    try:
        return _SCORERS[name_or_fn]
    except KeyError:
        raise ConfigError(
            f"unknown importance {name_or_fn!r}; registered: {', '.join(sorted(_SCORERS))}"
        ) from None


def available_importances() -> list[str]:
    return sorted(_SCORERS)


@register_importance("level")
@register_importance("l1")
def l1_importance(ctx: ScoreContext) -> torch.Tensor:
    """Sum of absolute values per block (fine-grained: the magnitude itself)."""
    return ctx.units().abs().sum(-1)


@register_importance("l2")
def l2_importance(ctx: ScoreContext) -> torch.Tensor:
    return ctx.units().pow(2).sum(-1).sqrt()


@register_importance("fpgm")
def fpgm_importance(ctx: ScoreContext) -> torch.Tensor:
    """Filter Pruning via Geometric Median: blocks close to all others are redundant.

    Score = sum of Euclidean distances from a block to every other block of the tensor.
    """
    units = ctx.units()
    grid = units.shape[:-1]
    flat = units.reshape(-1, units.shape[-1]).float()
    return torch.cdist(flat, flat).sum(-1).reshape(grid)
