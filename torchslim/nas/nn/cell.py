"""``Cell``: a DARTS-style cell, a small DAG whose edges choose an op and an input.

Node ``i`` (0-based) sums ``num_ops_per_node`` edges; each edge picks one of the cell's
inputs or earlier nodes (an :class:`InputChoice`, label ``<label>/input_<i>_<k>``) and runs
one of ``op_candidates`` on it (a :class:`LayerChoice`, label ``<label>/op_<i>_<k>``). The
cell's output concatenates its nodes (``merge_op='all'``) or only those no edge consumes
(``'loose_end'``).
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn as nn

from torchslim.errors import ConfigError
from torchslim.nas.nn.choice import InputChoice, LayerChoice

__all__ = ["Cell"]

OpFactory = Callable[..., nn.Module]


def _make(factory: OpFactory, node: int, op: int) -> nn.Module:
    params = inspect.signature(factory).parameters
    if isinstance(factory, type) and issubclass(factory, nn.Module) and not params:
        return factory()
    # NNI calls factories with (node_index, op_index, input_index); input is not known here
    return factory(node, op, None) if len(params) >= 3 else factory()


class Cell(nn.Module):
    """NNI's ``Cell(op_candidates, num_nodes, num_ops_per_node, num_predecessors, merge_op)``."""

    def __init__(self, op_candidates: Sequence[OpFactory] | Mapping[str, OpFactory],
                 num_nodes: int, num_ops_per_node: int = 1, num_predecessors: int = 1,
                 merge_op: str = "all", preprocessor: nn.Module | None = None,
                 concat_dim: int = 1, *, label: str = "cell") -> None:
        super().__init__()
        if merge_op not in ("all", "loose_end"):
            raise ConfigError(f"Cell merge_op is {merge_op!r}; allowed: 'all', 'loose_end'")
        if not all(isinstance(n, int) and n >= 1
                   for n in (num_nodes, num_ops_per_node, num_predecessors)):
            raise ConfigError("Cell needs num_nodes, num_ops_per_node, num_predecessors >= 1")
        names = list(op_candidates) if isinstance(op_candidates, Mapping) else None
        factories = list(op_candidates.values() if names else op_candidates)
        if not factories:
            raise ConfigError("Cell needs at least one op candidate")
        self.num_nodes, self.num_predecessors = num_nodes, num_predecessors
        self.merge_op, self.concat_dim, self.label = merge_op, concat_dim, label
        self.preprocessor = preprocessor
        self.ops = nn.ModuleList()
        self.inputs = nn.ModuleList()
        for i in range(num_nodes):
            ops, inputs = nn.ModuleList(), nn.ModuleList()
            for k in range(num_ops_per_node):
                made = [_make(f, i, k) for f in factories]
                ops.append(LayerChoice(dict(zip(names, made)) if names else made,
                                       label=f"{label}/op_{i}_{k}"))
                inputs.append(InputChoice(num_predecessors + i, 1,
                                          label=f"{label}/input_{i}_{k}"))
            self.ops.append(ops)
            self.inputs.append(inputs)

    def forward(self, *inputs: Any) -> torch.Tensor:
        states = list(inputs[0]) if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)) \
            else list(inputs)
        if len(states) != self.num_predecessors:
            raise ValueError(f"Cell {self.label!r} takes {self.num_predecessors} input(s), "
                             f"got {len(states)}")
        if self.preprocessor is not None:
            states = list(self.preprocessor(states))
        used: set[int] = set()
        for ops, inputs in zip(self.ops, self.inputs):
            out = 0
            for op, choose in zip(ops, inputs):
                used.update(choose.chosen())
                out = out + op(choose(states))
            states.append(out)
        nodes = range(self.num_predecessors, len(states))
        if self.merge_op == "loose_end":
            nodes = [n for n in nodes if n not in used] or [len(states) - 1]
        return torch.cat([states[n] for n in nodes], dim=self.concat_dim)
