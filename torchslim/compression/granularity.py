"""Granularity as block sizes: the one mechanism behind fine-grained, channel and block pruning.

A granularity becomes a tuple with one block size per tensor dim: 1 keeps the dim's
elements apart, the dim's full length (written -1 in configs) reduces over it. So
``out_channel`` of a Conv2d weight [O, I, kH, kW] is ``(1, I, kH, kW)``: one score and one
mask bit per output channel.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from torchslim.errors import ConfigError

_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def channel_dim(module: nn.Module, target: str, which: str = "out_channel") -> int:
    """The dim of ``module.<target>`` that indexes output (or input) channels."""
    tensor = getattr(module, target)
    if tensor.dim() <= 1:
        return 0
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        out_dim = 1  # rows are vocabulary entries, columns the output features
    elif isinstance(module, _TRANSPOSED) or type(module).__name__ == "Conv1D":
        out_dim = 1  # transposed convs and transformers' Conv1D (GPT-2) store [in, out, ...]
    else:
        out_dim = 0
    return out_dim if which == "out_channel" else 1 - out_dim


def block_sizes(module: nn.Module, target: str, granularity: Any) -> tuple[int, ...]:
    """Resolve a canonical granularity to per-dim block sizes for ``module.<target>``."""
    shape = tuple(getattr(module, target).shape)
    if granularity in ("fine", "default", None):
        return (1,) * len(shape)
    if granularity in ("out_channel", "in_channel", "per_channel"):
        dim = channel_dim(module, target, "in_channel" if granularity == "in_channel" else "out_channel")
        return tuple(1 if d == dim else size for d, size in enumerate(shape))
    block = tuple(granularity)
    if len(block) != len(shape):
        raise ConfigError(
            f"granularity {list(block)} has {len(block)} block sizes but {target!r} of "
            f"{type(module).__name__} has shape {list(shape)}"
        )
    block = tuple(size if b == -1 else b for b, size in zip(block, shape))
    for b, size in zip(block, shape):
        if size % b:
            raise ConfigError(f"granularity {list(granularity)} does not divide shape {list(shape)} of {target!r}")
    return block


def to_units(tensor: torch.Tensor, block: tuple[int, ...]) -> torch.Tensor:
    """View ``tensor`` as [*grid, elements_per_block] for per-block reductions."""
    grid = [size // b for size, b in zip(tensor.shape, block)]
    split = []
    for g, b in zip(grid, block):
        split += [g, b]
    t = tensor.reshape(split)
    nd = tensor.dim()
    order = [2 * i for i in range(nd)] + [2 * i + 1 for i in range(nd)]
    return t.permute(order).reshape(*grid, -1)


def expand_mask(grid_mask: torch.Tensor, block: tuple[int, ...]) -> torch.Tensor:
    """Grow a per-block 0/1 mask back to the full tensor shape."""
    mask = grid_mask
    for dim, b in enumerate(block):
        if b > 1:
            mask = mask.repeat_interleave(b, dim=dim)
    return mask


def is_structured(block: tuple[int, ...]) -> bool:
    return any(b > 1 for b in block)
