"""Channel shuffles (ShuffleNet): a view that splits the channel dim, shape ops, a view back.

As written (``x.view(b, g, c // g, h, w).transpose(1, 2).view(b, c, h, w)``) a shuffle maps the
kept channels right only if every group keeps the same positions. That couples channels across
groups and, through the pass-through halves of ShuffleNet's blocks, merges a stage's channels
into a few classes (3 per stage in shufflenet_v2_x0_5): almost nothing can go. Where the traced
graph can stand in for the model's forward, the chain is recorded instead as the fixed
permutation it is, and speedup rewrites it as an index of the kept channels (``x[:, perm]``):
any channels may go. Likewise ``x.chunk(2, 1)`` becomes a split with each piece's kept count.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx

from torchslim.graph.contractions import _permute, _transpose
from torchslim.graph.idspace import Chan, along
from torchslim.graph.sizes import op_name

_REARRANGE = {"transpose", "permute", "contiguous", "swapaxes", "swapdims"}


@dataclass
class Shuffle:
    """``end`` = ``source`` permuted along ``dim``: output position k is input ``perm[k]``."""

    gm: fx.GraphModule
    source: fx.Node  # the tensor shuffled
    end: fx.Node
    dim: int
    ids: torch.Tensor  # 1-D channel ids of the input
    perm: torch.Tensor


def _chain(start: fx.Node) -> tuple[fx.Node, list[fx.Node]] | None:
    """The view/reshape ending a run of single-user rearranging ops after ``start``."""
    chain, node = [], start
    while len(node.users) == 1:
        user = next(iter(node.users))
        if user.op not in ("call_method", "call_function") or not user.args or user.args[0] is not node:
            return None
        if op_name(user) in ("view", "reshape"):
            return user, chain
        if op_name(user) not in _REARRANGE:
            return None
        chain.append(user)
        node = user
    return None


def _apply(node: fx.Node, t: torch.Tensor) -> torch.Tensor:
    name = op_name(node)
    if name == "contiguous":
        return t
    return _permute(t, node) if name == "permute" else _transpose(t, node)


def detect(ctx: Any, node: fx.Node, chan: Chan, in_shape: tuple, out_shape: tuple) -> bool:
    """Record a shuffle starting at view/reshape ``node``; its end then yields the permuted ids."""
    varying = chan.varying()
    if not ctx.rewritable or ctx.gm is None or len(varying) != 1 or len(in_shape) == len(out_shape):
        return False
    found = _chain(node)
    if found is None:
        return False
    end, chain = found
    end_shape = ctx.shape(end)
    if end_shape is None or tuple(end_shape) != tuple(in_shape):
        return False
    dim, n = varying[0], in_shape[varying[0]]
    try:
        pos = torch.arange(n).reshape([n if d == dim else 1 for d in range(len(in_shape))]).expand(in_shape)
        t = pos.reshape(out_shape)
        for step in chain:
            t = _apply(step, t)
        t = t.reshape(end_shape)
    except (RuntimeError, TypeError, IndexError):
        return False
    perm = t.movedim(dim, 0).reshape(n, -1)[:, 0]
    line = perm.reshape([n if d == dim else 1 for d in range(len(in_shape))])
    if not torch.equal(t, line.expand(end_shape)) or not torch.equal(perm.sort().values, torch.arange(n)):
        return False
    ids, dead = ctx.ids_along(chan, dim, n)
    ctx.shuffles.append(Shuffle(ctx.gm, node.args[0], end, dim, ids, perm))
    ctx.shuffle_out[end] = along(len(in_shape), dim, ids[perm], dead[perm])
    return True


@dataclass
class Chunk:
    """``x.chunk(n, dim)`` with channels ``ids`` along ``dim``: rewritten as a split with the
    kept count of each piece when the pieces keep different counts."""

    gm: fx.GraphModule
    node: fx.Node
    source: fx.Node
    dim: int
    ids: torch.Tensor
    pieces: int

    def kept_sizes(self, space: Any) -> list[int]:
        return [int(k.sum()) for k in space.kept(self.ids).reshape(self.pieces, -1)]


def record_chunk(ctx: Any, node: fx.Node, dim: int, ids: torch.Tensor, pieces: int) -> bool:
    """Let the pieces of an equal chunk keep different counts (False where the graph cannot
    stand in for the forward: the pieces must then keep as many channels each)."""
    if not ctx.rewritable or ctx.gm is None:
        return False
    ctx.chunks.append(Chunk(ctx.gm, node, node.args[0], dim, ids, pieces))
    return True


def kept_permutation(shuffle: Shuffle, kept: torch.Tensor) -> list[int]:
    """The shuffle over the kept channels only: output k reads kept input ``result[k]``."""
    rank = torch.cumsum(kept.long(), 0) - 1
    return rank[shuffle.perm[kept[shuffle.perm]]].tolist()


__all__ = ["Chunk", "Shuffle", "detect", "kept_permutation", "record_chunk"]
