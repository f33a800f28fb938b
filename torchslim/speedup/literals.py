"""Sizes written as numbers in ``forward`` (``x.view(-1, 4 * 4 * 50)``), and channel shuffles
(graph/shuffle.py), rewritten after shrinking.

The analysis proves such a size is a flatten of channel and spatial dims; here the number in
the traced graph is replaced by the kept count and the model's ``forward`` becomes the graph's
(the graph calls the model's own, shrunk, submodules). Only a graph traced from the whole model
is used this way; elsewhere the channels stay and the report names the line.
"""
from __future__ import annotations

from typing import Any

import operator

import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from torchslim.graph.engine import Literal
from torchslim.graph.rules import set_piece_size, set_size_arg
from torchslim.graph.shuffle import Chunk, Shuffle, kept_permutation

_MISSING = object()


def rewrite_literals(model: nn.Module, literals: list[Literal], space: Any,
                     shuffles: list[Shuffle] = (), chunks: list[Chunk] = ()) -> list[tuple[Any, ...]]:
    """Rewrite every recorded literal whose channels shrink, and every channel shuffle that
    loses channels (as an index of the kept ones); returns what :func:`undo` needs."""
    undo: list[tuple[Any, ...]] = []
    graphs = {}
    for sh in shuffles:
        kept = space.kept(sh.ids)
        if bool(kept.all()):
            continue
        undo.append(("node", sh.end, sh.end.op, sh.end.target, sh.end.args, sh.end.kwargs))
        index_instead(sh.end, sh.source, sh.dim, kept_permutation(sh, kept))
        graphs[id(sh.gm)] = sh.gm
    for chunk in chunks:
        sizes = chunk.kept_sizes(space)
        if len(set(sizes)) == 1:
            continue  # equal pieces: chunk() still splits them right
        undo.append(("node", chunk.node, chunk.node.op, chunk.node.target, chunk.node.args, chunk.node.kwargs))
        split_instead(chunk.node, chunk.source, chunk.dim, sizes)
        graphs[id(chunk.gm)] = chunk.gm
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
            sync_attrs(gm, model)
            gm.recompile()
            model.forward = gm.forward  # the graph holds the model's own submodules
    return undo


def sync_attrs(gm: fx.GraphModule, model: nn.Module) -> None:
    """Point the graph's parameters and modules at the model's current ones (narrow_normalized
    replaced some parameters, shrinkers may replace modules) and give ``F.layer_norm`` the current
    width of its weight."""
    for node in gm.graph.nodes:
        if node.op in ("get_attr", "call_module"):
            owner, _, attr = node.target.rpartition(".")
            try:
                value = model.get_submodule(owner) if owner else model
                value = getattr(value, attr)
            except AttributeError:
                continue
            setattr(gm.get_submodule(owner) if owner else gm, attr, value)
        elif node.op == "call_function" and node.target is F.layer_norm and len(node.args) > 2 \
                and isinstance(node.args[2], fx.Node) and node.args[2].op == "get_attr":
            width = gm.get_parameter(node.args[2].target).shape[0]
            node.args = (node.args[0], (int(width),), *node.args[2:])


def undo_literals(model: nn.Module, undo: list[tuple[Any, ...]]) -> None:
    for step in reversed(undo):
        if step[0] == "args":
            step[1].args, step[1].kwargs = step[2], step[3]
        elif step[0] == "node":
            step[1].op, step[1].target, step[1].args, step[1].kwargs = step[2:]
        elif step[1] is _MISSING:
            model.__dict__.pop("forward", None)
        else:
            model.forward = step[1]


def index_instead(end: fx.Node, source: fx.Node, dim: int, perm: list[int]) -> None:
    """Turn the view ending a channel shuffle into ``source[..., perm]`` along ``dim``, and drop
    the shuffle's view/transpose chain (its sizes would not fit the kept channel count)."""
    chain = end.args[0]
    end.op, end.target = "call_function", operator.getitem
    end.args, end.kwargs = (source, (slice(None),) * dim + (perm,)), {}
    _drop_unused(chain, source)


def split_instead(node: fx.Node, source: fx.Node, dim: int, sizes: list[int]) -> None:
    """Turn ``x.chunk(n, dim)`` into ``x.split(sizes, dim)``."""
    node.op, node.target, node.args, node.kwargs = "call_method", "split", (source, list(sizes), dim), {}


def _drop_unused(node: Any, stop: fx.Node) -> None:
    if not isinstance(node, fx.Node) or node is stop or node.users or node.op not in ("call_method", "call_function"):
        return
    inputs = node.all_input_nodes
    node.graph.erase_node(node)
    for arg in inputs:
        _drop_unused(arg, stop)


def literal_spec(literals: list[Literal], space: Any, shuffles: list[Shuffle] = (),
                 chunks: list[Chunk] = ()) -> list[tuple]:
    """``(node name, dim or piece, kept count, is a split)`` of rewritten literals and
    ``('shuffle', end node, input node, dim, permutation)`` of rewritten shuffles, saved with
    the shape spec."""
    out: list[tuple] = []
    for chunk in chunks:
        sizes = chunk.kept_sizes(space)
        if len(set(sizes)) > 1:
            out.append(("chunk", chunk.node.name, chunk.source.name, chunk.dim, sizes))
    for sh in shuffles:
        kept = space.kept(sh.ids)
        if not bool(kept.all()):
            out.append(("shuffle", sh.end.name, sh.source.name, sh.dim, kept_permutation(sh, kept)))
    for lit in literals:
        kept = int(space.kept(lit.ids).sum())
        if kept != lit.ids.numel():
            out.append((lit.node.name, lit.dim, kept, lit.piece))
    return out


def apply_literal_spec(model: nn.Module, rewrites: list[tuple[str, int, int, bool]]) -> None:
    """Rewrite the same literals in a fresh model (traced again: node names are deterministic)."""
    if not rewrites:
        return
    from torchslim.graph.trace import SlimTracer

    graph = SlimTracer().trace(model)
    gm = fx.GraphModule(model, graph)
    nodes = {n.name: n for n in gm.graph.nodes}
    for entry in rewrites:
        if entry[0] == "shuffle" and len(entry) == 5:
            _, end, source, dim, perm = entry
            index_instead(nodes[end], nodes[source], dim, list(perm))
            continue
        if entry[0] == "chunk" and len(entry) == 5:
            _, name, source, dim, sizes = entry
            split_instead(nodes[name], nodes[source], dim, list(sizes))
            continue
        name, dim, kept, piece = entry
        (set_piece_size if piece else set_size_arg)(nodes[name], dim, kept)
    gm.recompile()
    model.forward = gm.forward


__all__ = ["apply_literal_spec", "literal_spec", "rewrite_literals", "undo_literals"]
