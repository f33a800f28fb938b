"""Channel rules of multi-head attention modules: whole heads are the unit.

Pruning a head means its query/key/value rows (and its output-projection columns) go, and
the module's head count drops. A head can go when its value rows are masked (its output is
then exactly zero, whatever its attention pattern) or when the output projection ignores it.

* ``nn.MultiheadAttention`` and transformers' ``GPT2Attention`` hold their output projection:
  heads are internal, the module input is kept whole and its output channels come from the
  projection (prunable like a Linear's).
* transformers' ``BertSelfAttention`` / ``ViTSelfAttention`` return the per-head context;
  the following ``*SelfOutput.dense`` Linear consumes it, so heads are this module's output
  channels (each head's ``head_dim`` positions form one class).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
from torch import nn

from torchslim.graph.idspace import Chan, along
from torchslim.graph.module_rules import register_module_rule, rows_dead


def _pin_inputs(ctx, node: fx.Node, but: Any = None) -> None:
    for arg in list(node.args) + list(node.kwargs.values()):
        chan = ctx.chan(arg)
        if chan is not None and arg is not but:
            ctx.space.keep(chan.ids)


def _head_dead(dead_rows: torch.Tensor, heads: int) -> torch.Tensor:
    return dead_rows.reshape(heads, -1).all(1)


def _with_rest(node: fx.Node, first: Any, ctx) -> Any:
    meta = node.meta.get("tensor_meta")
    if meta is None or hasattr(meta, "shape"):
        return first
    rest = ctx.pinned_like(node)
    return (first,) + tuple(rest[1:])


def _first_shape(node: fx.Node) -> torch.Size:
    meta = node.meta.get("tensor_meta")
    return meta.shape if hasattr(meta, "shape") else meta[0].shape


def _internal_heads(ctx, node: fx.Node, m: nn.Module, name: str, kind: str, heads: int,
                    v_dead: torch.Tensor, proj_in_dead: torch.Tensor, out_dead: torch.Tensor,
                    consumed: Any = None) -> Any:
    _pin_inputs(ctx, node, but=consumed)
    use = ctx.use(name, m, kind)
    head_ids = ctx.module_ids(name, "heads", heads)
    ctx.slot(use, "heads", head_ids)
    dead = _head_dead(v_dead, heads) | _head_dead(proj_in_dead, heads)
    ctx.space.keep(head_ids[~dead])
    use.requested = float(dead.float().mean())
    shape = _first_shape(node)
    out_ids = ctx.module_ids(name, "out", shape[-1])
    ctx.slot(use, "out", out_ids)
    return _with_rest(node, along(len(shape), len(shape) - 1, out_ids, out_dead), ctx)


def multihead_attention(ctx, node: fx.Node, m: nn.MultiheadAttention, name: str) -> Any:
    if not m._qkv_same_embed_dim or m.in_proj_weight is None:
        return ctx.barrier(node, "MultiheadAttention with separate q/k/v projections is kept whole")
    e = m.embed_dim
    in_mask = ctx.mask_of(name, "in_proj_weight")
    in_bias = ctx.mask_of(name, "in_proj_bias")
    rows = rows_dead(in_mask, 0, 3 * e)
    if m.in_proj_bias is not None:
        rows = rows & rows_dead(in_bias, 0, 3 * e) if in_bias is not None else rows & (m.in_proj_bias == 0)
    proj = f"{name}.out_proj"
    proj_mask = ctx.mask_of(proj, "weight")
    proj_in_dead = rows_dead(proj_mask, 1, e)
    out_dead = rows_dead(proj_mask, 0, e) & (rows_dead(ctx.mask_of(proj, "bias"), 0, e)
                                             if m.out_proj.bias is not None else torch.ones(e, dtype=torch.bool))
    x = _self_attention_input(ctx, node)
    if x is not None:  # query = key = value: its channels are the in-projection's columns
        use = ctx.use(name, m, "mha")
        ids, dead = ctx.ids_along(ctx.chan(x), ctx.chan(x).ndim - 1, e)
        ctx.slot(use, "in", ids)
        ctx.space.keep_alive(Chan(ids, dead | rows_dead(in_mask, 1, e)))
    return _internal_heads(ctx, node, m, name, "mha", m.num_heads, rows[2 * e:], proj_in_dead, out_dead, consumed=x)


def _self_attention_input(ctx, node: fx.Node) -> fx.Node | None:
    """The one tensor given as query, key and value, if it carries channels along its last dim only."""
    args = list(node.args[:3]) + [node.kwargs.get(k) for k in ("query", "key", "value")[len(node.args):]]
    if len(args) < 3 or not isinstance(args[0], fx.Node) or any(a is not args[0] for a in args[:3]):
        return None
    chan = ctx.chan(args[0])
    if chan is None or any(d != chan.ndim - 1 for d in chan.varying()):
        return None
    return args[0]


def gpt2_attention(ctx, node: fx.Node, m: nn.Module, name: str) -> Any:
    if getattr(m, "is_cross_attention", False):
        return ctx.barrier(node, "cross-attention is kept whole")
    split = m.split_size
    attn, proj = f"{name}.c_attn", f"{name}.c_proj"
    cols = rows_dead(ctx.mask_of(attn, "weight"), 1, 3 * split) & rows_dead(ctx.mask_of(attn, "bias"), 0, 3 * split)
    proj_in_dead = rows_dead(ctx.mask_of(proj, "weight"), 0, split)
    e = m.c_proj.weight.shape[1]
    out_dead = rows_dead(ctx.mask_of(proj, "weight"), 1, e) & rows_dead(ctx.mask_of(proj, "bias"), 0, e) \
        if ctx.mask_of(proj, "weight") is not None else torch.zeros(e, dtype=torch.bool)
    return _internal_heads(ctx, node, m, name, "gpt2_attention", m.num_heads, cols[2 * split:], proj_in_dead, out_dead)


def qkvo_attention(ctx, node: fx.Node, m: nn.Module, name: str) -> Any:
    """Attention holding q_proj/k_proj/v_proj/o_proj Linears (transformers' ViTAttention...)."""
    if not all(hasattr(m, p) for p in ("q_proj", "k_proj", "v_proj", "o_proj")):
        return ctx.barrier(node, f"{type(m).__name__}: unknown attention layout is kept whole")
    heads, kv_heads = qkvo_head_counts(m)
    if heads is None or kv_heads is None or heads % kv_heads:
        return ctx.barrier(node, f"{type(m).__name__}: head counts unknown, kept whole")
    # grouped-query attention: the unit is one key/value head with the query heads reading it
    n = m.v_proj.weight.shape[0]
    v, o = f"{name}.v_proj", f"{name}.o_proj"
    v_dead = rows_dead(ctx.mask_of(v, "weight"), 0, n)
    v_dead = v_dead & (rows_dead(ctx.mask_of(v, "bias"), 0, n) if m.v_proj.bias is not None
                       else torch.ones(n, dtype=torch.bool))
    e = m.o_proj.weight.shape[0]
    o_mask = ctx.mask_of(o, "weight")
    out_dead = rows_dead(o_mask, 0, e) & (rows_dead(ctx.mask_of(o, "bias"), 0, e) if m.o_proj.bias is not None
                                          else torch.ones(e, dtype=torch.bool))
    if o_mask is None:
        out_dead = torch.zeros(e, dtype=torch.bool)
    proj_in_dead = rows_dead(o_mask, 1, m.o_proj.weight.shape[1])
    return _internal_heads(ctx, node, m, name, "qkvo_attention", kv_heads, v_dead, proj_in_dead, out_dead)


def qkvo_head_counts(m: nn.Module) -> tuple[int | None, int | None]:
    """(query heads, key/value heads) of a q/k/v/o attention, read from the projections."""
    head_dim = getattr(m, "head_dim", None) or getattr(m, "attention_head_size", None)
    if head_dim is None:
        heads = getattr(m, "num_attention_heads", None) or getattr(m, "num_heads", None)
        if heads is None:
            return None, None
        head_dim = m.q_proj.weight.shape[0] // heads
    return m.q_proj.weight.shape[0] // head_dim, m.k_proj.weight.shape[0] // head_dim


def hf_self_attention(ctx, node: fx.Node, m: nn.Module, name: str) -> Any:
    """BertSelfAttention / ViTSelfAttention: per-head context is the output."""
    _pin_inputs(ctx, node)
    heads, size = m.num_attention_heads, m.attention_head_size
    value = f"{name}.value"
    n = heads * size
    v_dead = rows_dead(ctx.mask_of(value, "weight"), 0, n)
    v_dead = v_dead & (rows_dead(ctx.mask_of(value, "bias"), 0, n) if m.value.bias is not None
                       else torch.ones(n, dtype=torch.bool))
    dead = _head_dead(v_dead, heads)
    use = ctx.use(name, m, "hf_self_attention")
    head_ids = ctx.module_ids(name, "heads", heads)
    ctx.slot(use, "heads", head_ids)
    use.requested = float(dead.float().mean())
    shape = _first_shape(node)
    ids = head_ids.repeat_interleave(size)
    return _with_rest(node, along(len(shape), len(shape) - 1, ids, dead.repeat_interleave(size)), ctx)


register_module_rule(nn.MultiheadAttention, multihead_attention)
register_module_rule("GPT2Attention", gpt2_attention)
register_module_rule("BertSelfAttention", hf_self_attention)
register_module_rule("ViTSelfAttention", hf_self_attention)
register_module_rule("ViTAttention", qkvo_attention)
register_module_rule("LlamaAttention", qkvo_attention)
register_module_rule("MistralAttention", qkvo_attention)
register_module_rule("Qwen2Attention", qkvo_attention)
