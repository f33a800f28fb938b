"""Channel rules of reductions and contractions (sum/mean/max, softmax, matmul, einsum), and
the argument and shape helpers every rule table uses.

Reductions and contractions *consume* channels: those summed over are kept while alive (or
whole, where a zero entry would still change the result), and the result carries none of them.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.fx as fx

from torchslim.graph.idspace import Chan, compress

Rule = Callable[[Any, fx.Node], Any]


def _arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _dim(d: int, ndim: int) -> int:
    return d % ndim if ndim else 0


def _permute(t: torch.Tensor, node: fx.Node) -> torch.Tensor:
    """``t`` permuted as ``node`` (a permute call) permutes its input."""
    dims = node.args[1:] if node.op == "call_method" else (_arg(node, 1, "dims"),)
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = dims[0]
    return t.permute(*dims)


def _transpose(t: torch.Tensor, node: fx.Node) -> torch.Tensor:
    """``t`` transposed as ``node`` (transpose / swapaxes / swapdims) transposes its input."""
    return t.transpose(_arg(node, 1, "dim0"), _arg(node, 2, "dim1"))


def _pad(chan: Chan, ndim: int) -> Chan:
    while chan.ndim < ndim:
        chan = chan.map(lambda t: t.unsqueeze(0))
    return chan


# --- reductions and contractions ----------------------------------------------------------------------
def reduction(zero_preserving: bool = True, zeros_drop_out: bool = False) -> Rule:
    """``zeros_drop_out``: a zero entry does not change the result (sum, norm), so channels
    that are exactly zero may go; otherwise (mean, max, var...) every reduced channel stays."""
    def rule(ctx, node: fx.Node) -> Any:
        chan = ctx.chan(node.args[0])
        if chan is None:
            return ctx.barrier(node, "reduction of an untracked tensor") if "tensor_meta" in node.meta else None
        out_shape = ctx.shape(node)
        dims = _arg(node, 1, "dim")
        keepdim = bool(_arg(node, 2, "keepdim", False))
        meta = node.meta.get("tensor_meta")
        multi = isinstance(meta, (tuple, list)) and not hasattr(meta, "shape")  # max(dim) -> (values, indices)
        if multi:
            out_shape = meta[0].shape
        if out_shape is None:
            return None
        if dims is None:
            dims = list(range(chan.ndim))
        dims = [dims] if isinstance(dims, int) else list(dims)
        dims = sorted(_dim(d, chan.ndim) for d in dims)
        reduced = chan
        for d in dims:
            if d in chan.varying():  # channels reduced over are consumed
                if zeros_drop_out:
                    ctx.space.keep_alive(reduced)
                else:
                    ctx.space.keep(reduced.ids)
            reduced = Chan(reduced.ids.narrow(d, 0, 1), reduced.dead.all(d, keepdim=True))
        if not keepdim:
            for d in reversed(dims):
                reduced = reduced.map(lambda t, d=d: t.squeeze(d))
        if chan.varying() and all(d in dims for d in chan.varying()):
            # every channel was summed over: the result carries none of them (a fresh, kept
            # identity), so the reduced channels' group ends here with no extra channel kept
            reduced = Chan(torch.zeros_like(reduced.ids), reduced.dead)
        out = reduced if zero_preserving else reduced.alive()
        if multi:
            return (out, out.alive())
        return out
    return rule


def _softmax(ctx, node: fx.Node) -> Any:
    chan = ctx.chan(node.args[0])
    if chan is None:
        return ctx.barrier(node, "softmax of an untracked tensor")
    dim = _dim(_arg(node, 1, "dim", -1), chan.ndim)
    if dim in chan.varying():
        ctx.space.keep(chan.ids)
    return chan.alive()


def _matmul(ctx, node: fx.Node) -> Any:
    a, b = _arg(node, 0, "input"), _arg(node, 1, "other")
    ca, cb = ctx.chan(a), ctx.chan(b)
    sa, sb, so = ctx.shape(a), ctx.shape(b), ctx.shape(node)
    if ca is None or cb is None or sa is None or sb is None or len(sa) < 2 or len(sb) < 2:
        return ctx.barrier(node, "matmul of untracked or 1-D tensors")
    nd = len(so)
    ca, cb = _pad(ca, nd), _pad(cb, nd)
    # contraction: a[..., k] pairs with b[..., k, :]
    ka = ctx.space.rect(ca, (nd - 1,))
    kb = ctx.space.rect(cb, (nd - 2,))
    ctx.space.union(ka.ids.reshape(-1), kb.ids.reshape(-1))
    ctx.space.keep_alive(Chan(ka.ids.reshape(-1), ka.dead.reshape(-1) | kb.dead.reshape(-1)))
    if (nd - 2) in ca.varying() and (nd - 1) in cb.varying():
        ctx.space.keep(ca.ids)
        ctx.space.keep(cb.ids)
    batch_a = ca.ids.narrow(nd - 1, 0, 1)
    batch_b = cb.ids.narrow(nd - 2, 0, 1).transpose(-1, -2)
    ctx.space.union(batch_a.narrow(nd - 2, 0, 1), batch_b.narrow(nd - 2, 0, 1))
    ids = torch.broadcast_tensors(ca.ids.narrow(nd - 1, 0, 1), cb.ids.narrow(nd - 2, 0, 1))[0]
    if (nd - 1) in cb.varying():
        ids = torch.broadcast_tensors(ids, cb.ids.narrow(nd - 2, 0, 1))[1]
    alive_a = (~ca.dead).float().expand(sa if len(sa) == nd else (1,) * (nd - len(sa)) + tuple(sa))
    alive_b = (~cb.dead).float().expand(sb if len(sb) == nd else (1,) * (nd - len(sb)) + tuple(sb))
    dead = (alive_a @ alive_b) == 0
    ids, dead = torch.broadcast_tensors(ids, dead)
    return compress(Chan(ids, dead))


def _einsum(ctx, node: fx.Node) -> Any:
    """einsum = product in the joint index space, then a sum over contracted letters."""
    equation = node.args[0]
    operands = node.args[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = operands[0]
    if not isinstance(equation, str) or "..." in equation or "->" not in equation:
        return ctx.barrier(node, "einsum without an explicit output")
    lhs, out = equation.replace(" ", "").split("->")
    inputs = lhs.split(",")
    chans = [ctx.chan(o) for o in operands]
    if len(inputs) != len(chans) or any(c is None for c in chans):
        return ctx.barrier(node, "einsum of untracked tensors")
    letters = sorted(set("".join(inputs)), key=lambda c: (c not in out, out.index(c) if c in out else 0, c))
    joint_ids, joint_dead = None, None
    for spec, chan in zip(inputs, chans):
        ids, dead = chan.ids, chan.dead
        order = [spec.index(c) for c in letters if c in spec]
        ids, dead = ids.permute(order), dead.permute(order)
        shape = [ids.shape[order.index(spec.index(c))] if c in spec else 1 for c in letters]
        ids, dead = ids.reshape(shape), dead.reshape(shape)
        if joint_ids is None:
            joint_ids, joint_dead = ids, dead
        else:
            ctx.space.union(joint_ids, ids)
            joint_ids = torch.broadcast_tensors(joint_ids, ids)[0]
            joint_dead = joint_dead | dead
    joint = compress(Chan(*torch.broadcast_tensors(joint_ids, joint_dead)))
    for d in range(len(letters) - 1, len(out) - 1, -1):  # contracted letters come last
        if d in joint.varying():
            ctx.space.keep_alive(joint)
        joint = Chan(joint.ids.narrow(d, 0, 1).squeeze(d), joint.dead.all(d))
    return compress(joint)


__all__ = ["reduction"]
