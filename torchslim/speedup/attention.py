"""Shrinking attention modules by whole heads (head counts updated on the module)."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torchslim.graph.attention import qkvo_head_counts
from torchslim.speedup.shrink import Keep, register_shrinker, select_


def head_rows(heads: torch.Tensor, head_dim: int, blocks: int = 1, block_size: int = 0) -> torch.Tensor:
    """Row indices of the kept heads, repeated for each of ``blocks`` packed projections (q, k, v)."""
    rows = (heads.unsqueeze(1) * head_dim + torch.arange(head_dim)).reshape(-1)
    return torch.cat([rows + b * block_size for b in range(blocks)])


class SlimMultiheadAttention(nn.Module):
    """``nn.MultiheadAttention`` with fewer heads than ``embed_dim // head_dim``.

    Same call signature and results; ``embed_dim`` (the input/output width) is unchanged
    while the inner width is ``num_heads * head_dim``.
    """

    def __init__(self, source: nn.MultiheadAttention, heads: torch.Tensor) -> None:
        super().__init__()
        head_dim = source.head_dim
        rows = head_rows(heads, head_dim, 3, source.embed_dim)
        self.embed_dim = source.embed_dim
        self.num_heads = int(heads.numel())
        self.head_dim = head_dim
        self.batch_first = source.batch_first
        self.dropout = source.dropout
        with torch.no_grad():
            self.in_proj_weight = nn.Parameter(source.in_proj_weight.index_select(0, rows))
            self.in_proj_bias = None if source.in_proj_bias is None else nn.Parameter(
                source.in_proj_bias.index_select(0, rows))
        self.out_proj = source.out_proj
        select_(self.out_proj, "weight", 1, head_rows(heads, head_dim))
        self.out_proj.in_features = self.num_heads * head_dim

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        batched = query.dim() == 3
        if not batched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if self.batch_first and batched:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        length, batch, _ = query.shape
        source = key.shape[0]
        inner = self.num_heads * self.head_dim
        w, b = self.in_proj_weight, self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else b.split(inner)
        q = F.linear(query, w[:inner], bq)
        k = F.linear(key, w[inner:2 * inner], bk)
        v = F.linear(value, w[2 * inner:], bv)

        def heads(t: torch.Tensor, n: int) -> torch.Tensor:  # (L, B, H*d) -> (B, H, L, d)
            return t.reshape(n, batch, self.num_heads, self.head_dim).permute(1, 2, 0, 3)

        q, k, v = heads(q, length), heads(k, source), heads(v, source)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        mask = _merge_masks(attn_mask, key_padding_mask, is_causal, batch, self.num_heads, length, source, scores)
        if mask is not None:
            scores = scores + mask
        weights = scores.softmax(-1)
        if self.training and self.dropout > 0:
            weights = F.dropout(weights, self.dropout)
        out = (weights @ v).permute(2, 0, 1, 3).reshape(length, batch, inner)
        out = self.out_proj(out)
        if self.batch_first and batched:
            out = out.transpose(0, 1)
        if not batched:
            out = out.squeeze(1)
        if not need_weights:
            return out, None
        weights = weights.mean(1) if average_attn_weights else weights
        return out, weights if batched else weights.squeeze(0)


def _merge_masks(attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None, is_causal: bool,
                 batch: int, heads: int, length: int, source: int, like: torch.Tensor) -> torch.Tensor | None:
    def additive(mask: torch.Tensor) -> torch.Tensor:
        if mask.dtype == torch.bool:
            return torch.zeros(mask.shape, dtype=like.dtype, device=like.device).masked_fill(mask, float("-inf"))
        return mask.to(like.dtype)

    total = None
    if attn_mask is None and is_causal:
        attn_mask = torch.ones(length, source, dtype=torch.bool, device=like.device).triu(1)
    if attn_mask is not None:
        mask = additive(attn_mask)
        total = mask.reshape(batch, heads, length, source) if mask.dim() == 3 else mask
    if key_padding_mask is not None:
        pad = additive(key_padding_mask).reshape(batch, 1, 1, source)
        total = pad if total is None else total + pad
    return total


def _mha(m: nn.MultiheadAttention, keep: Keep) -> nn.Module:
    slim = SlimMultiheadAttention(m, keep["heads"])
    inputs = keep.get("in")
    if inputs is not None:  # a narrowed input (self-attention on a narrowed stream)
        select_(slim, "in_proj_weight", 1, inputs)
    out = keep.get("out")
    if out is not None:
        select_(slim.out_proj, "weight", 0, out)
        select_(slim.out_proj, "bias", 0, out)
        slim.out_proj.out_features = out.numel()
    return slim


def _gpt2(m: Any, keep: Keep) -> None:
    heads = keep["heads"]
    rows = head_rows(heads, m.head_dim, 3, m.split_size)
    select_(m.c_attn, "weight", 1, rows)
    select_(m.c_attn, "bias", 0, rows)
    m.c_attn.nf = rows.numel()
    select_(m.c_proj, "weight", 0, head_rows(heads, m.head_dim))
    out = keep.get("out")
    if out is not None:
        select_(m.c_proj, "weight", 1, out)
        select_(m.c_proj, "bias", 0, out)
        m.c_proj.nf = out.numel()
    m.num_heads = int(heads.numel())
    m.split_size = m.num_heads * m.head_dim


def _hf_self_attention(m: Any, keep: Keep) -> None:
    rows = head_rows(keep["heads"], m.attention_head_size)
    for proj in (m.query, m.key, m.value):
        select_(proj, "weight", 0, rows)
        select_(proj, "bias", 0, rows)
        proj.out_features = rows.numel()
    m.num_attention_heads = int(keep["heads"].numel())
    m.all_head_size = rows.numel()


def _qkvo(m: Any, keep: Keep) -> None:
    """``keep['heads']`` are key/value heads; each takes its group of query heads along."""
    heads, kv_heads = qkvo_head_counts(m)
    head_dim = m.q_proj.weight.shape[0] // heads
    groups = keep["heads"]
    per = heads // kv_heads
    q_heads = (groups.unsqueeze(1) * per + torch.arange(per)).reshape(-1)
    rows, kv_rows = head_rows(q_heads, head_dim), head_rows(groups, head_dim)
    for proj, r in ((m.q_proj, rows), (m.k_proj, kv_rows), (m.v_proj, kv_rows)):
        select_(proj, "weight", 0, r)
        select_(proj, "bias", 0, r)
        proj.out_features = r.numel()
    select_(m.o_proj, "weight", 1, rows)
    m.o_proj.in_features = rows.numel()
    out = keep.get("out")
    if out is not None:
        select_(m.o_proj, "weight", 0, out)
        select_(m.o_proj, "bias", 0, out)
        m.o_proj.out_features = out.numel()
    for attr, value in (("num_attention_heads", q_heads.numel()), ("num_heads", q_heads.numel()),
                        ("num_key_value_heads", groups.numel())):
        if isinstance(getattr(m, attr, None), int):
            setattr(m, attr, int(value))


register_shrinker("mha", _mha)
register_shrinker("qkvo_attention", _qkvo)
register_shrinker("gpt2_attention", _gpt2)
register_shrinker("hf_self_attention", _hf_self_attention)
