"""Channel rules of functions and tensor methods, declared in one table.

A rule ``(ctx, node) -> value`` returns the output :class:`Chan` (or a tuple of them, or
``None`` for non-tensors). Shape ops run on the ids themselves; elementwise ops couple
their operands; reductions and contractions *consume* channels (keep the live ones).
Dead-ness follows the arithmetic: ``a + b`` is zero where both are, ``a * b`` where either
is, ``relu(0) = 0`` but ``sigmoid(0) = 0.5``.
"""
from __future__ import annotations

import builtins
import operator
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn.functional as F

from torchslim.graph.contractions import _arg, _dim, _pad, _permute, _softmax, _einsum, _matmul, _transpose, reduction
from torchslim.graph.idspace import Chan, compress, pinned, reshape_chan, reshape_groups
from torchslim.graph.normalized import layer_norm_function
from torchslim.graph import shuffle
from torchslim.graph.sizes import reshaped_from, size_sources

Rule = Callable[[Any, fx.Node], Any]


# --- pass-through ops ---------------------------------------------------------------------
def unary(zero_preserving: bool) -> Rule:
    def rule(ctx, node: fx.Node) -> Any:
        chan = ctx.chan(node.args[0] if node.args else next(iter(node.kwargs.values())))
        if chan is None:
            return ctx.barrier(node, "unary op on a non-traced tensor") if "tensor_meta" in node.meta else None
        out_shape = ctx.shape(node)
        if out_shape is not None and len(out_shape) != chan.ndim:
            return ctx.barrier(node, "unary op changed the rank")
        return chan if zero_preserving else chan.alive()
    return rule


def spatial(first_spatial: int = 2) -> Rule:
    """Pooling, interpolation, padding: fine while channel ids do not vary spatially."""
    def rule(ctx, node: fx.Node) -> Any:
        chan = ctx.chan(node.args[0])
        out_shape = ctx.shape(node)
        if chan is None or out_shape is None or len(out_shape) != chan.ndim:
            return ctx.barrier(node, "spatial op on unexpected input")
        if any(d >= first_spatial for d in chan.varying()):
            return ctx.barrier(node, "channel identities vary along the spatial dims of this op")
        zero_ok = node.target not in (F.pad, "pad") or not (_arg(node, 3, "value", 0) or 0)
        return chan if zero_ok else chan.alive()
    return rule


def _roll(ctx, node: fx.Node) -> Any:
    chan = ctx.chan(node.args[0])
    dims = _arg(node, 2, "dims")
    if chan is None or dims is None:
        return ctx.barrier(node, "roll without explicit dims")
    dims = [dims] if isinstance(dims, int) else list(dims)
    if any(_dim(d, chan.ndim) in chan.varying() for d in dims):
        return ctx.barrier(node, "roll along a channel dim")
    return chan


# --- elementwise binary ops ------------------------------------------------------------------
def _is_zero(x: Any) -> bool:
    return isinstance(x, (int, float)) and x == 0


def binary(kind: str) -> Rule:
    """kind: 'add' (dead where both are), 'mul' (where either is), 'div' (where numerator is)."""
    def rule(ctx, node: fx.Node) -> Any:
        a, b = _arg(node, 0, "input"), _arg(node, 1, "other")
        ca, cb = ctx.chan(a), ctx.chan(b)
        out_shape = ctx.shape(node)
        if out_shape is None:
            return None
        ndim = len(out_shape)
        if ca is None and cb is None:
            if isinstance(a, fx.Node) or isinstance(b, fx.Node):
                return ctx.barrier(node, "elementwise op on untracked tensors")
            return None
        if ca is None or cb is None:
            chan, other = (ca, b) if cb is None else (cb, a)
            if isinstance(other, fx.Node) and "tensor_meta" in other.meta:
                return ctx.barrier(node, "elementwise op with an untracked tensor")
            chan = _pad(chan, ndim)
            keeps_zero = (kind == "mul") or (kind == "div" and ca is not None) or (kind == "add" and _is_zero(other))
            return chan if keeps_zero else chan.alive()
        ca, cb = _pad(ca, ndim), _pad(cb, ndim)
        sa, sb = ctx.shape(a), ctx.shape(b)
        sa = (1,) * (ndim - len(sa)) + tuple(sa)
        sb = (1,) * (ndim - len(sb)) + tuple(sb)
        a_src = any(sa[d] == 1 < out_shape[d] and d in cb.varying() for d in range(ndim))
        b_src = any(sb[d] == 1 < out_shape[d] and d in ca.varying() for d in range(ndim))
        if a_src and b_src:
            return ctx.barrier(node, "both operands broadcast over the other's channels")
        if a_src or b_src:
            src, main = (ca, cb) if a_src else (cb, ca)
            ctx.space.keep_alive(src)  # a broadcast operand is consumed, not coupled
            main_dead = main.dead
            if kind == "mul":
                main_dead = main_dead | src.dead
            elif kind == "div" and main is cb:
                main_dead = torch.zeros_like(main_dead)
            elif kind == "add":
                main_dead = main_dead & src.dead
            return main.with_dead(main_dead)
        ctx.space.union(ca.ids, cb.ids)
        ids = torch.broadcast_tensors(ca.ids, cb.ids)[0]
        if kind == "add":
            dead = ca.dead & cb.dead
        elif kind == "mul":
            dead = ca.dead | cb.dead
        else:
            dead = ca.dead & torch.ones_like(cb.dead)
        ids, dead = torch.broadcast_tensors(ids, dead)
        return compress(Chan(ids, dead))
    return rule


# --- shape ops ---------------------------------------------------------------------------------
def shape_op(fn: Callable[[torch.Tensor, fx.Node], torch.Tensor]) -> Rule:
    """Ops whose effect on ids is the op itself (permute, transpose, unsqueeze): no expansion."""
    def rule(ctx, node: fx.Node) -> Any:
        chan = ctx.chan(node.args[0])
        if chan is None:
            return ctx.barrier(node, "shape op on an untracked tensor")
        return compress(chan.map(lambda t: fn(t, node)))
    return rule


def _regroup(ctx, node: fx.Node) -> Any:
    """flatten/unflatten: a reshape to the traced output shape."""
    chan, in_shape, out_shape = ctx.chan(node.args[0]), ctx.shape(node.args[0]), ctx.shape(node)
    if chan is None or in_shape is None or out_shape is None:
        return ctx.barrier(node, "reshape of an untracked tensor")
    out = reshape_chan(chan, in_shape, out_shape)
    if len(out.varying()) > 1 and node.target in ("unflatten", torch.unflatten):
        ctx.space.keep(out.ids)
    return out


def _static(x: Any) -> Any:
    """Concrete python value of an argument whose Nodes stand for dynamic sizes."""
    if isinstance(x, fx.Node):
        return None
    if isinstance(x, (list, tuple)):
        return type(x)(_static(v) for v in x)
    return x


def _unsqueeze(t: torch.Tensor, node: fx.Node) -> torch.Tensor:
    return t.unsqueeze(_arg(node, 1, "dim"))


def _squeeze(t: torch.Tensor, node: fx.Node) -> torch.Tensor:
    # only dims of size 1 in the value go (ids may have size 1 where the value does not)
    shape = node.args[0].meta["tensor_meta"].shape
    dim = _arg(node, 1, "dim")
    dims = range(len(shape)) if dim is None else ([dim] if isinstance(dim, int) else dim)
    return t.squeeze(tuple(d % len(shape) for d in dims if shape[d] == 1))


def _reshape(ctx, node: fx.Node) -> Any:
    """view/reshape: reshape the ids; dims given as constants cannot shrink."""
    out_shape, in_shape, chan = ctx.shape(node), ctx.shape(node.args[0]), ctx.chan(node.args[0])
    if chan is None or in_shape is None or out_shape is None:
        return ctx.barrier(node, "reshape of an untracked tensor")
    if node in ctx.shuffle_out:  # the end of a channel shuffle: its input, permuted
        return ctx.shuffle_out.pop(node)
    if shuffle.detect(ctx, node, chan, in_shape, out_shape):
        return reshape_chan(chan, in_shape, out_shape)  # no coupling: the shuffle becomes an index
    out = reshape_chan(chan, in_shape, out_shape)
    sizes = node.args[1:] if node.op == "call_method" else (_arg(node, 1, "shape"),)
    if len(sizes) == 1 and isinstance(sizes[0], (list, tuple)):
        sizes = sizes[0]
    static = [_static(s) for s in sizes] if len(sizes) == len(out_shape) else [out_shape[d] for d in range(len(out_shape))]
    _tie_read_sizes(ctx, node, sizes, out)
    const_dims = [d for d, s in enumerate(static) if isinstance(s, int) and s != -1 and out_shape[d] > 1]
    varying = out.varying()
    if varying and all(d in const_dims for d in varying):
        if len(varying) == 1 and len(static) == len(out_shape) and _flattens_into(in_shape, out_shape, varying[0]):
            # a channel count written as a number (x.view(-1, 4 * 4 * 50)): rewritten to the
            # kept count in the traced graph, if the graph can stand in for the forward
            if ctx.literal(node, varying[0], out.ids.reshape(-1)):
                return out
        ctx.fixed_size(node, "a size written as a number fixes the channel count here")
        ctx.space.keep(out.ids)  # every dim that carries channels is fixed in the code
        return out
    for d in const_dims:
        out = ctx.space.union_along(out, d)
    if len(out.varying()) > 1:
        ctx.space.keep(out.ids)
    return out


def _tie_read_sizes(ctx, node: fx.Node, sizes: Any, out: Chan) -> None:
    """A size read from another tensor's channel dim fixes both widths (see graph/sizes.py)."""
    for source, dim in size_sources(list(sizes)):
        chan = ctx.chan(source)
        if chan is None or not chan.varying() or reshaped_from(node.args[0], source):
            continue
        if dim is None or _dim(dim, chan.ndim) in chan.varying():
            ctx.space.keep(chan.ids)
            ctx.space.keep(out.ids)
            if ctx.narrow_normalized:  # (a LayerNorm'd stream's width read this way stays whole)
                ctx.fixed_size(node, "a size read from another tensor's channels fixes both widths")
            return


def _flattens_into(in_shape: tuple, out_shape: tuple, dim: int) -> bool:
    """Whether output ``dim`` is exactly a run of whole input dims (a flatten), so its size
    is a product of channel and spatial counts and scales with the kept channels."""
    groups = reshape_groups(tuple(in_shape), tuple(out_shape))
    return groups is not None and any(gj == [dim] for _, gj in groups)


def set_size_arg(node: fx.Node, dim: int, value: int) -> None:
    """Write ``value`` as the size of output ``dim`` in a view/reshape node's arguments."""
    if node.op == "call_method":
        rest = node.args[1:]
        if len(rest) == 1 and isinstance(rest[0], (list, tuple)):
            sizes = list(rest[0])
            sizes[dim] = value
            node.args = (node.args[0], type(rest[0])(sizes))
        else:
            sizes = list(rest)
            sizes[dim] = value
            node.args = (node.args[0], *sizes)
    elif len(node.args) > 1:
        sizes = list(node.args[1])
        sizes[dim] = value
        node.args = (node.args[0], type(node.args[1])(sizes), *node.args[2:])
    else:
        sizes = list(node.kwargs["shape"])
        sizes[dim] = value
        node.kwargs = {**node.kwargs, "shape": type(node.kwargs["shape"])(sizes)}


def set_piece_size(node: fx.Node, piece: int, value: int) -> None:
    """Write ``value`` as the size of piece ``piece`` in a split node's sizes."""
    if len(node.args) > 1:
        sizes = list(node.args[1])
        sizes[piece] = value
        node.args = (node.args[0], type(node.args[1])(sizes), *node.args[2:])
    else:
        key = "split_size_or_sections" if "split_size_or_sections" in node.kwargs else "split_size"
        sizes = list(node.kwargs[key])
        sizes[piece] = value
        node.kwargs = {**node.kwargs, key: type(node.kwargs[key])(sizes)}


def _expand(ctx, node: fx.Node) -> Any:
    chan = ctx.chan(node.args[0])
    out_shape = ctx.shape(node)
    if chan is None or out_shape is None:
        return ctx.barrier(node, "expand of an untracked tensor")
    return _pad(chan, len(out_shape))


def _cat(ctx, node: fx.Node) -> Any:
    tensors = _arg(node, 0, "tensors")
    dim = _arg(node, 1, "dim", 0)
    out_shape = ctx.shape(node)
    chans = [ctx.chan(t) for t in tensors]
    if out_shape is None or any(c is None for c in chans):
        return ctx.barrier(node, "cat of untracked tensors")
    dim = _dim(dim, len(out_shape))
    common = [max(c.ids.shape[d] for c in chans) for d in range(len(out_shape))]
    parts = []
    for t, c in zip(tensors, chans):
        shape = list(common)
        shape[dim] = ctx.shape(t)[dim]
        parts.append(c.full(shape))
    out = compress(Chan(torch.cat([p.ids for p in parts], dim), torch.cat([p.dead for p in parts], dim)))
    if dim in out.varying() and len(out.varying()) > 1:
        out = ctx.space.union_along(out, dim)
    return out


def _stack(ctx, node: fx.Node) -> Any:
    tensors = _arg(node, 0, "tensors")
    dim = _arg(node, 1, "dim", 0)
    chans = [ctx.chan(t) for t in tensors]
    if any(c is None for c in chans):
        return ctx.barrier(node, "stack of untracked tensors")
    first = chans[0]
    dead = first.dead
    for c in chans[1:]:
        ctx.space.union(first.ids, c.ids)
        dead = dead & c.dead
    ids, dead = torch.broadcast_tensors(first.ids, dead)
    nd = ids.dim() + 1
    return compress(Chan(ids.unsqueeze(_dim(dim, nd)), dead.unsqueeze(_dim(dim, nd))))


def _split_like(ctx, node: fx.Node, pieces: list[int], dim: int, equal: bool) -> Any:
    chan = ctx.chan(node.args[0])
    in_shape = ctx.shape(node.args[0])
    if chan is None or in_shape is None:
        return ctx.barrier(node, "split of an untracked tensor")
    dim = _dim(dim, len(in_shape))
    if dim in chan.varying():
        if not equal or len(set(pieces)) != 1:
            # split sizes written as numbers: each piece's size is rewritten to its kept count
            starts = [sum(pieces[:i]) for i in range(len(pieces))]
            rewritable = len(chan.varying()) == 1 and isinstance(_arg(node, 1, "split_size_or_sections"), (list, tuple))
            # ctx.literal is all-or-nothing per graph: the first refusal records none
            if not (rewritable and all(ctx.literal(node, i, chan.ids.narrow(dim, st, size).reshape(-1), piece=True)
                                       for i, (st, size) in enumerate(zip(starts, pieces)))):
                ctx.fixed_size(node, "split sizes written as numbers fix the channel count here")
                ctx.space.keep(chan.ids)  # fixed split sizes: channels cannot move between pieces
        elif len(chan.varying()) == 1:
            # a split of the kept counts, or equal chunks keeping as many channels each (topped up)
            ids = ctx.space.rect(chan, (dim,)).ids.reshape(-1)
            if not shuffle.record_chunk(ctx, node, dim, ids, len(pieces)):
                ctx.balanced.append((ids, len(pieces)))
        else:
            # equal chunks stay equal: couple position j of every chunk
            full = chan.full(in_shape)
            shape = list(in_shape[:dim]) + [len(pieces), pieces[0]] + list(in_shape[dim + 1:])
            ids = full.ids.reshape(shape)
            first = ids.narrow(dim, 0, 1)
            ctx.space.union(ids, first)
    full = chan.full(in_shape)
    outs, start = [], 0
    for size in pieces:
        outs.append(compress(Chan(full.ids.narrow(dim, start, size), full.dead.narrow(dim, start, size))))
        start += size
    return tuple(outs)


def _chunk_or_split(ctx, node: fx.Node) -> Any:
    """chunk(n) keeps its pieces equal after pruning; split(sizes) has fixed sizes."""
    metas = node.meta.get("tensor_meta")
    dim = _arg(node, 2, "dim", 0)
    if not isinstance(metas, (list, tuple)) or hasattr(metas, "shape"):
        return ctx.barrier(node, f"{node.target} without shape information")
    nd = len(metas[0].shape)
    pieces = [m.shape[_dim(dim, nd)] for m in metas]
    is_chunk = node.target in ("chunk", torch.chunk) and isinstance(_arg(node, 1, "chunks"), int)
    return _split_like(ctx, node, pieces, dim, equal=is_chunk and len(set(pieces)) == 1)


def _unbind(ctx, node: fx.Node) -> Any:
    chan = ctx.chan(node.args[0])
    in_shape = ctx.shape(node.args[0])
    if chan is None or in_shape is None:
        return ctx.barrier(node, "unbind of an untracked tensor")
    dim = _dim(_arg(node, 1, "dim", 0), len(in_shape))
    if dim in chan.varying():
        ctx.space.keep(chan.ids)
    full = chan.full(in_shape)
    return tuple(compress(Chan(full.ids.select(dim, i), full.dead.select(dim, i))) for i in range(in_shape[dim]))


def _getitem(ctx, node: fx.Node) -> Any:
    src, index = node.args[0], node.args[1]
    value = ctx.env.get(src) if isinstance(src, fx.Node) else None
    if isinstance(value, (tuple, list)):
        return value[index] if isinstance(index, int) else type(value)(value[index])
    if isinstance(value, dict):
        return value.get(index)
    if not isinstance(value, Chan):
        return None if "tensor_meta" not in node.meta else ctx.barrier(node, "indexing an untracked value")
    in_shape = ctx.shape(src)
    index = index if isinstance(index, tuple) else (index,)
    if any(isinstance(i, fx.Node) or (i is not None and not isinstance(i, (int, slice, type(Ellipsis)))) for i in index):
        return ctx.barrier(node, "indexing with tensors")
    if any(isinstance(i, slice) and any(isinstance(v, fx.Node) for v in (i.start, i.stop, i.step)) for i in index):
        return ctx.barrier(node, "slicing with dynamic bounds")
    # dims that are cut (int or partial slice) cannot carry channels
    dim, cut = 0, []
    for pos, i in enumerate(index):
        if i is Ellipsis:
            dim = len(in_shape) - sum(1 for j in index[pos + 1:] if j is not None)
            continue
        if i is None:
            continue
        if isinstance(i, int) or i != slice(None):
            cut.append(dim)
        dim += 1
    if any(d in value.varying() for d in cut):
        ctx.space.keep(value.ids)
    full = value.full(in_shape)
    return compress(Chan(full.ids[index], full.dead[index]))


def _creation(ctx, node: fx.Node) -> Any:
    return ctx.pinned_like(node)


def _none(ctx, node: fx.Node) -> Any:
    return None


def _stochastic_depth(ctx, node: fx.Node) -> Any:
    return unary(True)(ctx, node)


# --- the tables ----------------------------------------------------------------------------------------
_ZERO_KEEPING = ["relu", "relu6", "gelu", "silu", "hardswish", "mish", "tanh", "leaky_relu", "elu",
                 "hardtanh", "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "neg",
                 "abs", "contiguous", "clone", "detach", "float", "half", "double", "to", "type_as",
                 "relu_", "selu", "celu", "hardshrink", "softshrink", "tanhshrink", "sin", "erf",
                 "sign", "square", "sqrt", "trunc", "round", "floor", "ceil", "clamp", "clip", "pow"]
_ZERO_BREAKING = ["sigmoid", "hardsigmoid", "exp", "cos", "softplus", "log_sigmoid", "logsigmoid",
                  "reciprocal", "rsqrt", "log", "masked_fill"]
_SPATIAL = ["max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
            "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
            "adaptive_max_pool2d", "adaptive_max_pool3d", "interpolate", "upsample", "pad", "lp_pool2d",
            "upsample_nearest", "upsample_bilinear"]
_SHAPE = {"permute": _permute, "transpose": _transpose, "unsqueeze": _unsqueeze,
          "squeeze": _squeeze, "swapaxes": _transpose, "swapdims": _transpose}
_BINARY = {"add": "add", "sub": "add", "mul": "mul", "div": "div", "true_divide": "div",
           "multiply": "mul", "subtract": "add", "rsub": "add", "iadd": "add", "isub": "add",
           "imul": "mul", "itruediv": "div", "truediv": "div", "add_": "add", "mul_": "mul",
           "sub_": "add", "div_": "div", "floordiv": "div"}
_REDUCE = {"mean": True, "sum": True, "amax": True, "max": True, "amin": True, "min": True,
           "std": True, "var": True, "nanmean": True, "logsumexp": False, "norm": True, "nansum": True}
_ZEROS_DROP_OUT = {"sum", "norm", "nansum"}
_OTHERS: dict[str, Rule] = {
    "cat": _cat, "concat": _cat, "concatenate": _cat, "stack": _stack, "chunk": _chunk_or_split, "split": _chunk_or_split,
    "tensor_split": _chunk_or_split, "unbind": _unbind, "getitem": _getitem, "view": _reshape, "reshape": _reshape,
    "view_as": _reshape, "reshape_as": _reshape, "unflatten": _regroup, "expand": _expand,
    "expand_as": _expand, "matmul": _matmul, "einsum": _einsum, "bmm": _matmul, "softmax": _softmax, "log_softmax": _softmax,
    "layer_norm": layer_norm_function, "roll": _roll, "zeros": _creation, "ones": _creation, "arange": _creation,
    "full": _creation, "empty": _creation, "zeros_like": _creation, "ones_like": _creation, "randn": _creation,
    "rand": _creation, "tensor": _creation, "as_tensor": _creation, "new_zeros": _creation,
    "new_ones": _creation, "new_full": _creation, "new_empty": _creation, "linspace": _creation,
    "meshgrid": _creation, "size": _none, "dim": _none, "numel": _none, "stochastic_depth": _stochastic_depth,
}


def _build() -> dict[str, Rule]:
    table: dict[str, Rule] = {}
    table.update({n: unary(True) for n in _ZERO_KEEPING})
    table.update({n: unary(False) for n in _ZERO_BREAKING})
    table.update({n: spatial() for n in _SPATIAL})
    table.update({n: shape_op(fn) for n, fn in _SHAPE.items()})
    table.update({n: binary(k) for n, k in _BINARY.items()})
    table.update({n: reduction(z, n in _ZEROS_DROP_OUT) for n, z in _REDUCE.items()})
    table.update(_OTHERS)
    table["flatten"] = _regroup
    return table


_BY_NAME = _build()
_BY_NAME["__getitem__"] = _getitem
_BY_NAME["__matmul__"] = _matmul

# functions are matched by identity first (so a user function named 'add' is not mistaken)
_TORCH_NAMESPACES = (torch, F, torch.Tensor, operator, torch.special)
_USER_FUNCTIONS: dict[Callable, Rule] = {}


def register_function_rule(fn: Callable, rule: Rule) -> None:
    """Teach speedup how a function (e.g. one wrapped with ``torch.fx.wrap``) maps channels."""
    _USER_FUNCTIONS[fn] = rule


def function_rule(target: Callable) -> Rule | None:
    if target in _USER_FUNCTIONS:
        return _USER_FUNCTIONS[target]
    name = getattr(target, "__name__", "")
    module = getattr(target, "__module__", "") or ""
    if target is builtins.getattr:
        return _none
    if name == "stochastic_depth" and module.startswith("torchvision"):
        return _stochastic_depth
    if module.startswith(("torch", "_operator", "operator")) or any(getattr(ns, name, None) is target for ns in _TORCH_NAMESPACES):
        return _BY_NAME.get(name.strip("_") if name.startswith("__") else name) or _BY_NAME.get(name)
    return None


def method_rule(name: str) -> Rule | None:
    return _BY_NAME.get(name)


__all__ = ["function_rule", "method_rule", "register_function_rule", "pinned", "set_piece_size", "set_size_arg"]
