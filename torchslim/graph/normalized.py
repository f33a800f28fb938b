"""Normalised residual streams: LayerNorm rules, exact by default, narrowing when asked.

A LayerNorm's statistics span every channel it normalises, so removing any of them changes
its output: by default the analysis keeps those channels (speedup stays exact). With
``narrow_normalized=True`` (Torch-Pruning's behaviour) the stream is narrowed instead: the
LayerNorm's own weight and bias lose the removed channels and its ``normalized_shape``
shrinks, and the stream's parameters (class token, position embedding, layer scale) are cut
with it. The result then differs from the masked model; speedup measures by how much.

In narrowing mode a parameter read in the traced graph (``get_attr``) gets channel ids along
its last dim of size > 1 and counts as zero on the channels that go (speedup zeroes them in the
reference it checks against, like a norm layer's bias left unmasked).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from torchslim.graph.idspace import along, pinned


@dataclass
class StreamParam:
    """A parameter read in the traced graph whose dim ``dim`` carries channel ids ``ids``."""

    path: str  # qualified name, e.g. 'encoder.pos_embedding'
    owner: str  # module path holding it ('' for the root)
    attr: str
    dim: int
    ids: torch.Tensor
    tensor: torch.Tensor


@dataclass
class NarrowedNorm:
    """A LayerNorm whose normalised channels ``ids`` may be narrowed."""

    name: str  # the module, or the parameter path of its weight (functional form)
    weight: torch.Tensor
    ids: torch.Tensor


def stream_param(ctx: Any, path: str, tensor: torch.Tensor) -> Any:
    """Chan of a parameter read by ``get_attr`` in narrowing mode (pinned if it has no channel dim)."""
    sizes = [d for d in range(tensor.dim()) if tensor.shape[d] > 1]
    if not sizes:
        return pinned(tensor.dim())
    dim = sizes[-1]
    n = int(tensor.shape[dim])
    param = ctx.params.get(path)
    if param is None:
        owner, _, attr = path.rpartition(".")
        param = ctx.params[path] = StreamParam(path, owner, attr, dim, ctx.space.fresh(n), tensor)
    return along(tensor.dim(), dim, param.ids, torch.ones(n, dtype=torch.bool))


def layer_norm_module(ctx: Any, node: fx.Node, m: nn.LayerNorm, name: str) -> Any:
    """``nn.LayerNorm`` as a leaf: statistics over the last ``len(normalized_shape)`` dims."""
    x = ctx.chan(node.args[0]) if node.args else ctx.chan(next(iter(node.kwargs.values()), None))
    if x is None:
        return ctx.barrier(node, "LayerNorm on an untracked tensor")
    n = len(m.normalized_shape)
    if not any(d >= x.ndim - n for d in x.varying()):
        return x.alive()
    if ctx.narrow_normalized and n == 1 and isinstance(m.weight, torch.Tensor):
        use = ctx.use(name, m, "layernorm")
        ids, dead = ctx.ids_along(x, x.ndim - 1, int(m.normalized_shape[0]))
        ctx.slot(use, "in", ids)
        ctx.slot(use, "out", ids)
        ctx.narrowed.append(NarrowedNorm(name, m.weight, ids))
        return along(x.ndim, x.ndim - 1, ids, dead)  # removed channels are gone, not zero
    ctx.space.keep(x.ids)  # statistics over these channels: removing any changes them
    return x.alive()


def layer_norm_function(ctx: Any, node: fx.Node) -> Any:
    """``F.layer_norm`` (LayerNorm2d-style modules traced through)."""
    args = list(node.args) + [None] * 5
    chan = ctx.chan(args[0])
    shape = args[1] if args[1] is not None else node.kwargs.get("normalized_shape")
    weight = args[2] if args[2] is not None else node.kwargs.get("weight")
    bias = args[3] if args[3] is not None else node.kwargs.get("bias")
    if chan is None or shape is None:
        return ctx.barrier(node, "layer_norm of an untracked tensor")
    n = 1 if isinstance(shape, int) else len(shape)
    if not any(d >= chan.ndim - n for d in chan.varying()):
        return chan.alive()
    param = ctx.param_at(weight)
    if ctx.narrow_normalized and n == 1 and param is not None and param.dim == 0:
        size = int(param.tensor.shape[0])
        ids, dead = ctx.ids_along(chan, chan.ndim - 1, size)
        ctx.space.union(ids, param.ids)
        bias_param = ctx.param_at(bias)
        if bias_param is not None:
            ctx.space.union(ids, bias_param.ids)
        elif bias is not None:
            ctx.space.keep(ids)  # a bias the analysis cannot cut
        ctx.narrowed.append(NarrowedNorm(param.path, param.tensor, ids))
        return along(chan.ndim, chan.ndim - 1, ids, dead)
    ctx.space.keep(chan.ids)  # statistics over these channels: removing any changes them
    for arg in (weight, bias):
        other = ctx.chan(arg)
        if other is not None:
            ctx.space.keep(other.ids)
    return chan.alive()


__all__ = ["NarrowedNorm", "StreamParam", "layer_norm_function", "layer_norm_module", "stream_param"]
