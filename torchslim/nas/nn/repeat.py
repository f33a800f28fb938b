"""``Repeat``: a block stacked a chosen number of times."""
from __future__ import annotations

import copy
import inspect
from typing import Any, Callable, Mapping, Sequence

import torch.nn as nn

from torchslim.errors import ConfigError
from torchslim.experiment.searchspace import Categorical
from torchslim.nas.nn.base import UNLABELLED, Mutable

__all__ = ["Repeat"]


def _depth_choice(depth: Any, label: str | None) -> Categorical:
    if isinstance(depth, Categorical):
        values = depth.options
        choice = depth
    else:
        if isinstance(depth, int):
            values = [depth]
        elif isinstance(depth, (tuple, list)) and len(depth) == 2 and all(
                isinstance(d, int) for d in depth):
            values = list(range(depth[0], depth[1] + 1))
        else:
            raise ConfigError(f"Repeat depth is {depth!r}; allowed: an int, (min, max) or "
                              f"torchslim.choice(label, [depths])")
        choice = Categorical(values, label or UNLABELLED)
    if not values or not all(isinstance(v, int) and v >= 0 for v in values):
        raise ConfigError(f"Repeat depths must be ints >= 0, got {values}")
    return choice


class Repeat(Mutable):
    """``blocks`` repeated ``depth`` times (the first ``depth`` of the largest stack run).

    ``blocks``: a module (copied), a list of modules (one per position) or a factory called
    with the block index.
    """

    def __init__(self, blocks: nn.Module | Sequence[nn.Module] | Callable[..., nn.Module],
                 depth: Any, *, label: str | None = None) -> None:
        super().__init__()
        self.choice = _depth_choice(depth, label)
        self.auto_label = label is None and not isinstance(depth, Categorical)
        most = max(self.choice.options)
        if isinstance(blocks, nn.Module):
            made = [copy.deepcopy(blocks) for _ in range(most)]
        elif isinstance(blocks, Sequence):
            made = list(blocks)
            if len(made) < most:
                raise ConfigError(f"Repeat got {len(made)} blocks but depth can be {most}")
        elif callable(blocks):
            takes_index = bool(inspect.signature(blocks).parameters)
            made = [blocks(i) if takes_index else blocks() for i in range(most)]
        else:
            raise ConfigError(f"Repeat blocks is {blocks!r}; allowed: a module, a list of "
                              f"modules or a factory")
        self.blocks = nn.ModuleList(made[:most])

    @property
    def label(self) -> str:
        return self.choice.label

    def decisions(self) -> list[Categorical]:
        return [self.choice]

    def freeze(self, sample: Mapping[str, Any]) -> nn.Module:
        return nn.Sequential(*list(self.blocks)[:sample[self.label]])

    def forward(self, x: Any) -> Any:
        for block in list(self.blocks)[:self.value(self.choice)]:
            x = block(x)
        return x

    def extra_repr(self) -> str:
        return f"depth={self.choice!r}"
