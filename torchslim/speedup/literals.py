"""Sizes written as numbers in ``forward`` (``x.view(-1, 4 * 4 * 50)``), rewritten after shrinking.

The analysis proves such a size is a flatten of channel and spatial dims; here the number in
the traced graph is replaced by the kept count and the model's ``forward`` becomes the graph's
(the graph calls the model's own, shrunk, submodules). Only a graph traced from the whole model
is used this way; elsewhere the channels stay and the report names the line.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from torchslim.graph.engine import Literal
from torchslim.graph.rules import set_piece_size, set_size_arg

_MISSING = object()


def rewrite_literals(model: nn.Module, literals: list[Literal], space: Any) -> list[tuple[Any, ...]]:
    """Rewrite every recorded literal whose channels shrink; returns what :func:`undo` needs."""
    undo: list[tuple[Any, ...]] = []
    graphs = {}
    for lit in literals:
        kept = int(space.kept(lit.ids).sum())
        if kept == lit.ids.numel():
            continue
        undo.append(("args", lit.node, lit.node.args, lit.node.kwargs))
        (set_piece_size if lit.piece else set_size_arg)(lit.node, lit.dim, kept)
        graphs[id(lit.gm)] = lit.gm
    if graphs:
        undo.append(("forward", model.__dict__.get("forward", _MISSING)))
        for gm in graphs.values():
            gm.recompile()
            model.forward = gm.forward  # the graph holds the model's own submodules
    return undo


def undo_literals(model: nn.Module, undo: list[tuple[Any, ...]]) -> None:
    for step in reversed(undo):
        if step[0] == "args":
            step[1].args, step[1].kwargs = step[2], step[3]
        elif step[1] is _MISSING:
            model.__dict__.pop("forward", None)
        else:
            model.forward = step[1]


def literal_spec(literals: list[Literal], space: Any) -> list[tuple[str, int, int, bool]]:
    """``(node name, dim or piece, kept count, is a split)`` of rewritten literals, saved with
    the shape spec."""
    out = []
    for lit in literals:
        kept = int(space.kept(lit.ids).sum())
        if kept != lit.ids.numel():
            out.append((lit.node.name, lit.dim, kept, lit.piece))
    return out


def apply_literal_spec(model: nn.Module, rewrites: list[tuple[str, int, int, bool]]) -> None:
    """Rewrite the same literals in a fresh model (traced again: node names are deterministic)."""
    if not rewrites:
        return
    import torch.fx as fx

    from torchslim.graph.trace import SlimTracer

    graph = SlimTracer().trace(model)
    gm = fx.GraphModule(model, graph)
    nodes = {n.name: n for n in gm.graph.nodes}
    for name, dim, kept, piece in rewrites:
        (set_piece_size if piece else set_size_arg)(nodes[name], dim, kept)
    gm.recompile()
    model.forward = gm.forward


__all__ = ["apply_literal_spec", "literal_spec", "rewrite_literals", "undo_literals"]
