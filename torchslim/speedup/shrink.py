"""Shrink modules in place along kept channel indices.

Modules keep their class, so user code that reads attributes (``out_channels``,
``num_heads``...) and isinstance checks still work; parameters are replaced by smaller
ones (new Parameter objects: optimizers must be rebuilt after speedup).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from torchslim.graph.kinds import ShrinkerView, set_shrinker

Keep = dict[str, torch.Tensor]  # slot -> kept indices (sorted LongTensor)
Shrinker = Callable[[nn.Module, Keep], None]


@torch.no_grad()
def select_(module: nn.Module, attr: str, dim: int, index: torch.Tensor) -> None:
    """Replace ``module.<attr>`` (parameter or buffer) by its slice along ``dim``."""
    tensor = getattr(module, attr, None)
    if not isinstance(tensor, torch.Tensor):
        return
    if tensor.shape[dim] == index.numel():
        return
    new = tensor.index_select(dim, index.to(tensor.device))
    if isinstance(tensor, nn.Parameter):
        setattr(module, attr, nn.Parameter(new, requires_grad=tensor.requires_grad))
    elif attr in module._buffers:
        module._buffers[attr] = new
    else:
        setattr(module, attr, new)


def _weight_in_out(m: nn.Module, keep: Keep, out_dim: int, in_dim: int) -> tuple[int, int]:
    select_(m, "weight", out_dim, keep["out"])
    select_(m, "weight", in_dim, keep["in"])
    select_(m, "bias", 0, keep["out"])
    return keep["out"].numel(), keep["in"].numel()


def _conv(m: nn.Module, keep: Keep) -> None:
    m.out_channels, m.in_channels = _weight_in_out(m, keep, *((1, 0) if m.transposed else (0, 1)))


def _depthwise(m: nn.Module, keep: Keep) -> None:
    select_(m, "weight", 0, keep["out"])
    select_(m, "bias", 0, keep["out"])
    m.in_channels = m.out_channels = m.groups = keep["out"].numel()


def _grouped_conv(m: nn.Module, keep: Keep) -> None:
    groups = m.groups
    out_idx, in_idx = keep["out"], keep["in"]
    in_per_group, out_per_group = m.in_channels // groups, m.out_channels // groups
    local_in = (in_idx.reshape(groups, -1) - torch.arange(groups).unsqueeze(1) * in_per_group)
    # each kept output channel reads its own group's kept inputs
    rows = local_in[out_idx // out_per_group]
    with torch.no_grad():
        weight = m.weight.index_select(0, out_idx)
        index = rows.reshape(rows.shape + (1,) * (weight.dim() - 2)).expand(-1, -1, *weight.shape[2:])
        m.weight = nn.Parameter(weight.gather(1, index.to(weight.device)), requires_grad=m.weight.requires_grad)
    select_(m, "bias", 0, out_idx)
    m.out_channels, m.in_channels = out_idx.numel(), in_idx.numel()


def _linear(m: nn.Module, keep: Keep) -> None:
    m.out_features, m.in_features = _weight_in_out(m, keep, 0, 1)


def _conv1d_hf(m: nn.Module, keep: Keep) -> None:
    # transformers' Conv1D stores weight as [in, out]
    m.nf, n_in = _weight_in_out(m, keep, 1, 0)
    if hasattr(m, "nx"):
        m.nx = n_in


def _per_channel(attrs: tuple[str, ...], count_attr: str) -> Shrinker:
    def shrink(m: nn.Module, keep: Keep) -> None:
        for attr in attrs:
            select_(m, attr, 0, keep["out"])
        setattr(m, count_attr, keep["out"].numel())
    return shrink


def _groupnorm(m: nn.GroupNorm, keep: Keep) -> None:
    per_group = m.num_channels // m.num_groups
    select_(m, "weight", 0, keep["out"])
    select_(m, "bias", 0, keep["out"])
    m.num_channels = keep["out"].numel()
    m.num_groups = m.num_channels // per_group


def _layernorm(m: nn.LayerNorm, keep: Keep) -> None:
    # narrow_normalized: the statistics then span the kept channels only
    select_(m, "weight", 0, keep["out"])
    select_(m, "bias", 0, keep["out"])
    m.normalized_shape = (keep["out"].numel(),)


def _embedding(m: nn.Embedding, keep: Keep) -> None:
    select_(m, "weight", 1, keep["out"])
    m.embedding_dim = keep["out"].numel()


_BUILTIN: dict[str, Shrinker] = {
    "conv": _conv,
    "depthwise": _depthwise,
    "grouped_conv": _grouped_conv,
    "linear": _linear,
    "conv1d_hf": _conv1d_hf,
    "batchnorm": _per_channel(("weight", "bias", "running_mean", "running_var"), "num_features"),
    "instancenorm": _per_channel(("weight", "bias", "running_mean", "running_var"), "num_features"),
    "prelu": _per_channel(("weight",), "num_parameters"),
    "groupnorm": _groupnorm,
    "layernorm": _layernorm,
    "embedding": _embedding,
}
# {kind: shrinker}, a view over the module-kind registry (one ModuleKind object per kind)
SHRINKERS = ShrinkerView()


def register_shrinker(kind: str, shrinker: Shrinker) -> None:
    """Teach speedup to shrink a module kind produced by a custom channel rule.

    For ``load(path, model=...)`` the kind must also know its slot sizes: prefer registering
    the whole kind with :func:`torchslim.graph.kinds.register_module_kind`.
    """
    set_shrinker(kind, shrinker)


for _name, _fn in _BUILTIN.items():
    set_shrinker(_name, _fn)
