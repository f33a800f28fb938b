"""Channel rules of leaf modules: who produces, consumes or passes channels through.

Each rule records the module's *slots* (1-D channel ids of its input/output dims) on a
:class:`~torchslim.graph.engine.ModuleUse`; speedup later shrinks the module along the kept
positions of each slot. Rules are looked up by class (first match in the MRO), or by class
name for optional libraries (transformers) so they need not be imported.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.fx as fx
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.instancenorm import _InstanceNorm

from torchslim.graph.idspace import Chan, along, compress
from torchslim.graph.normalized import layer_norm_module
from torchslim.graph.contractions import _softmax
from torchslim.graph.rules import _regroup, spatial, unary

ModuleRule = Callable[[Any, fx.Node, nn.Module, str], Any]


def _rows(mask: torch.Tensor, dim: int) -> torch.Tensor:
    rows = mask.movedim(dim, 0).reshape(mask.shape[dim], -1)
    # min/max reductions are vectorised; count_nonzero/any are ~30x slower on CPU
    return rows.to(torch.uint8) if rows.dtype == torch.bool else rows.abs()


def rows_dead(mask: torch.Tensor | None, dim: int, n: int) -> torch.Tensor:
    """Channels along ``dim`` whose mask is zero everywhere else (False without a mask)."""
    if mask is None:
        return torch.zeros(n, dtype=torch.bool)
    return _rows(mask, dim).amax(1) == 0


def in_out_dead(mask: torch.Tensor | None, o_dim: int, i_dim: int, n_out: int, n_in: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dead output rows and dead input columns of a weight mask, in one pass when row-structured."""
    if mask is None:
        return torch.zeros(n_out, dtype=torch.bool), torch.zeros(n_in, dtype=torch.bool)
    rows = _rows(mask, o_dim)
    high, low = rows.amax(1), rows.amin(1)
    out_dead = high == 0
    if bool((high == low).all()):  # whole rows kept or dropped: a column dies only with every row
        return out_dead, torch.full((n_in,), bool(out_dead.all()))
    return out_dead, rows_dead(mask, i_dim, n_in)


def _bias_dead(ctx, name: str, module: nn.Module, n: int) -> torch.Tensor:
    if getattr(module, "bias", None) is None:
        return torch.ones(n, dtype=torch.bool)
    return rows_dead(ctx.mask_of(name, "bias"), 0, n)


def _input(ctx, node: fx.Node) -> Chan | None:
    return ctx.chan(node.args[0]) if node.args else ctx.chan(next(iter(node.kwargs.values()), None))


def _requested(ctx, use, name: str, own_dead: torch.Tensor) -> None:
    if ctx.mask_of(name, "weight") is not None and own_dead.numel():
        use.requested = float(own_dead.float().mean())


def _produce(ctx, use, name: str, ndim: int, dim: int, n: int, dead: torch.Tensor) -> Chan:
    _requested(ctx, use, name, dead)
    ids = ctx.module_ids(name, "out", n)
    ctx.slot(use, "out", ids)
    return along(ndim, dim, ids, dead)


def _consume(ctx, use, chan: Chan | None, dim: int, n: int, col_dead: torch.Tensor) -> None:
    if chan is None:
        use.slots.setdefault("in", torch.zeros(n, dtype=torch.long))
        return
    ids, dead = ctx.ids_along(chan, dim, n)
    ctx.slot(use, "in", ids)
    ctx.space.keep_alive(Chan(ids, dead | col_dead))


def conv(ctx, node: fx.Node, m: _ConvNd, name: str) -> Any:
    x = _input(ctx, node)
    out_shape = ctx.shape(node)
    ndim = len(out_shape)
    wmask = ctx.mask_of(name, "weight")
    o_dim, i_dim = (1, 0) if m.transposed else (0, 1)
    own_dead, col_dead = in_out_dead(wmask, o_dim, i_dim, m.weight.shape[o_dim], m.weight.shape[i_dim])
    if m.groups == 1:
        use = ctx.use(name, m, "conv")
        _consume(ctx, use, x, 1, m.in_channels, col_dead)
        return _produce(ctx, use, name, ndim, 1, m.out_channels, own_dead & _bias_dead(ctx, name, m, m.out_channels))
    if m.groups == m.in_channels == m.out_channels and x is not None and not m.transposed:
        use = ctx.use(name, m, "depthwise")
        ids, dead_in = ctx.ids_along(x, 1, m.in_channels)
        ctx.slot(use, "in", ids)
        ctx.slot(use, "out", ids)
        _requested(ctx, use, name, own_dead)
        ctx.zero(name, "weight", 0, dead_in)
        if m.bias is not None:
            ctx.zero(name, "bias", 0, dead_in)
        dead = dead_in | (own_dead & _bias_dead(ctx, name, m, m.out_channels))
        return along(ndim, 1, ids, dead)
    if not m.transposed:
        # grouped: any channels may go as long as every group keeps as many (balanced later)
        use = ctx.use(name, m, "grouped_conv")
        use.groups = m.groups
        _consume(ctx, use, x, 1, m.in_channels, torch.zeros(m.in_channels, dtype=torch.bool))
        return _produce(ctx, use, name, ndim, 1, m.out_channels, own_dead & _bias_dead(ctx, name, m, m.out_channels))
    return ctx.barrier(node, f"grouped transposed convolution (groups={m.groups}) is kept whole")


def linear(ctx, node: fx.Node, m: nn.Module, name: str, transposed: bool = False) -> Any:
    x = _input(ctx, node)
    out_shape = ctx.shape(node)
    weight = m.weight
    n_out, n_in = (weight.shape[1], weight.shape[0]) if transposed else (weight.shape[0], weight.shape[1])
    o_dim, i_dim = (1, 0) if transposed else (0, 1)
    wmask = ctx.mask_of(name, "weight")
    use = ctx.use(name, m, "conv1d_hf" if transposed else "linear")
    own_dead, col_dead = in_out_dead(wmask, o_dim, i_dim, n_out, n_in)
    _consume(ctx, use, x, -1, n_in, col_dead)
    dead = own_dead & _bias_dead(ctx, name, m, n_out)
    return _produce(ctx, use, name, len(out_shape), len(out_shape) - 1, n_out, dead)


def channel_affine(kind: str, keeps_zero_without_affine: bool) -> ModuleRule:
    """Modules acting per channel on dim 1 (BN, InstanceNorm, PReLU): input = output channels."""
    def rule(ctx, node: fx.Node, m: nn.Module, name: str) -> Any:
        x = _input(ctx, node)
        n = _num_channels(m)
        if x is None or n is None:
            return ctx.barrier(node, f"{type(m).__name__} on an untracked tensor")
        use = ctx.use(name, m, kind)
        ids, dead_in = ctx.ids_along(x, 1, n)
        ctx.slot(use, "in", ids)
        ctx.slot(use, "out", ids)
        weight = getattr(m, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.numel() == n:
            # the reference masked model: a dead input channel is zero after this module too
            ctx.zero(name, "weight", 0, dead_in)
            if getattr(m, "bias", None) is not None:
                ctx.zero(name, "bias", 0, dead_in)
            own = rows_dead(ctx.mask_of(name, "weight"), 0, n) & _bias_dead(ctx, name, m, n)
            dead = dead_in | own
            act = getattr(m, "act", None)  # fused norm + activation (timm's BatchNormAct2d)
            if isinstance(act, nn.Module) and not isinstance(act, _ZERO_KEEPING_MODULES):
                dead = torch.zeros_like(dead)
        else:
            dead = dead_in if keeps_zero_without_affine else torch.zeros_like(dead_in)
        return along(len(ctx.shape(node)), 1, ids, dead)
    return rule


def _num_channels(m: nn.Module) -> int | None:
    for attr in ("num_features", "num_parameters", "num_channels"):
        if hasattr(m, attr):
            return int(getattr(m, attr))
    return None


def prelu(ctx, node: fx.Node, m: nn.PReLU, name: str) -> Any:
    if m.num_parameters == 1:
        return _input(ctx, node)
    return channel_affine("prelu", True)(ctx, node, m, name)


def group_norm(ctx, node: fx.Node, m: nn.GroupNorm, name: str) -> Any:
    x = _input(ctx, node)
    if x is None:
        return ctx.barrier(node, "GroupNorm on an untracked tensor")
    use = ctx.use(name, m, "groupnorm")
    ids, dead_in = ctx.ids_along(x, 1, m.num_channels)
    # statistics are per group: only whole groups may go
    grouped = ids.reshape(m.num_groups, -1)
    ctx.space.union(grouped, grouped[:, :1])
    ctx.slot(use, "in", ids)
    ctx.slot(use, "out", ids)
    if m.affine:
        ctx.zero(name, "weight", 0, dead_in)
        ctx.zero(name, "bias", 0, dead_in)
        dead = dead_in
    else:
        dead = torch.zeros_like(dead_in)
    return along(len(ctx.shape(node)), 1, ids, dead)


def embedding(ctx, node: fx.Node, m: nn.Embedding, name: str) -> Any:
    idx = _input(ctx, node)
    if idx is not None:
        ctx.space.keep(idx.ids)
    use = ctx.use(name, m, "embedding")
    out_shape = ctx.shape(node)
    dead = rows_dead(ctx.mask_of(name, "weight"), 1, m.embedding_dim)
    return _produce(ctx, use, name, len(out_shape), len(out_shape) - 1, m.embedding_dim, dead)


def _module_shape(rule) -> ModuleRule:
    def wrapped(ctx, node: fx.Node, m: nn.Module, name: str) -> Any:
        return rule(ctx, node)
    return wrapped


def _flatten_module(ctx, node: fx.Node, m: nn.Flatten, name: str) -> Any:
    return _regroup(ctx, node)


def _softmax_module(ctx, node: fx.Node, m: nn.Module, name: str) -> Any:
    fake = fx.Node(node.graph, node.name, "call_function", torch.softmax, (node.args[0], m.dim), {})
    fake.meta = node.meta
    return _softmax(ctx, fake)


_ZERO_KEEPING_MODULES = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.Mish, nn.Tanh, nn.LeakyReLU,
                         nn.ELU, nn.Hardtanh, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                         nn.AlphaDropout, nn.Identity, nn.SELU, nn.CELU, nn.Softsign, nn.Tanhshrink)
_ZERO_BREAKING_MODULES = (nn.Sigmoid, nn.Hardsigmoid, nn.Softplus, nn.LogSigmoid)
_SPATIAL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
                    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Upsample, nn.UpsamplingNearest2d,
                    nn.UpsamplingBilinear2d, nn.ZeroPad2d, nn.ConstantPad2d, nn.LPPool2d)

_BY_TYPE: list[tuple[type, ModuleRule]] = [
    (_ConvNd, conv),
    (nn.Linear, linear),
    (_BatchNorm, channel_affine("batchnorm", False)),
    (_InstanceNorm, channel_affine("instancenorm", True)),
    (nn.PReLU, prelu),
    (nn.GroupNorm, group_norm),
    (nn.LayerNorm, layer_norm_module),
    (nn.Embedding, embedding),
    (nn.Flatten, _flatten_module),
    (nn.Softmax, _softmax_module),
    (_ZERO_KEEPING_MODULES, _module_shape(unary(True))),
    (_ZERO_BREAKING_MODULES, _module_shape(unary(False))),
    (_SPATIAL_MODULES, _module_shape(spatial())),
]
_BY_NAME: dict[str, ModuleRule] = {
    "Conv1D": lambda ctx, node, m, name: linear(ctx, node, m, name, transposed=True),
}


def register_module_rule(key: type | str, rule: ModuleRule) -> None:
    """Add a channel rule for a module class (or class name); newest registration wins."""
    if isinstance(key, str):
        _BY_NAME[key] = rule
    else:
        _BY_TYPE.insert(0, (key, rule))


def unregister_module_rule(key: type | str, rule: ModuleRule) -> None:
    """Remove a registration made with :func:`register_module_rule`."""
    if isinstance(key, str):
        if _BY_NAME.get(key) is rule:
            del _BY_NAME[key]
    else:
        _BY_TYPE[:] = [(k, r) for k, r in _BY_TYPE if not (k is key and r is rule)]


def is_norm_subclass(module: nn.Module) -> bool:
    """A BatchNorm subclass from another library (timm's BatchNormAct2d): one leaf, ruled as
    BatchNorm, instead of a traced ``F.batch_norm`` the analysis cannot shrink."""
    return isinstance(module, _BatchNorm) and not type(module).__module__.startswith("torch.nn")


def has_named_rule(module: nn.Module) -> bool:
    """Modules of libraries outside torch.nn with a rule by class name: traced as leaves."""
    from torchslim.graph import attention  # noqa: F401  (registers attention rules)

    return type(module).__name__ in _BY_NAME


def module_rule(module: nn.Module) -> ModuleRule | None:
    from torchslim.graph import attention  # noqa: F401  (registers attention rules)

    rule = _BY_NAME.get(type(module).__name__)
    if rule is not None:
        return rule
    for cls, rule in _BY_TYPE:
        if isinstance(module, cls):
            return rule
    return None


__all__ = ["module_rule", "register_module_rule", "rows_dead", "compress", "is_norm_subclass", "unregister_module_rule"]
