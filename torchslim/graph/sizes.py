"""Where a size used in the graph was read from: ``x.shape``, ``x.size(d)`` and arithmetic on them.

A size read from a tensor's channel dim changes when that tensor is narrowed. Used to reshape
the same tensor (channel shuffle: ``x.view(b, g, c // g, h, w)``) it follows along; used to
reshape another tensor (timm's attention: ``B, N, C = x.shape ... out.reshape(B, N, C)``) it
ties the two widths, so both must stay whole.
"""
from __future__ import annotations

import builtins
import operator
from typing import Any

import torch.fx as fx

_ARITH = {operator.add, operator.sub, operator.mul, operator.floordiv, operator.truediv, operator.mod,
          operator.neg, builtins.int, builtins.max, builtins.min, operator.getitem}


def size_sources(arg: Any, depth: int = 12) -> list[tuple[fx.Node, int | None]]:
    """``(tensor node, dim)`` pairs a size argument was computed from (dim None: any dim)."""
    if depth <= 0:
        return []
    if isinstance(arg, (list, tuple)):
        return [s for a in arg for s in size_sources(a, depth)]
    if not isinstance(arg, fx.Node):
        return []
    node = arg
    if node.op == "call_method" and node.target in ("size", "numel") and node.args:
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        return [(node.args[0], dim if isinstance(dim, int) else None)]
    if node.op == "call_function" and node.target is builtins.getattr and len(node.args) > 1 \
            and node.args[1] == "shape":
        return [(node.args[0], None)]
    if node.op == "call_function" and node.target is operator.getitem and isinstance(node.args[1], int):
        inner = size_sources(node.args[0], depth - 1)
        return [(t, node.args[1] if d is None else d) for t, d in inner]
    if node.op == "call_function" and node.target in _ARITH:
        return [s for a in list(node.args) + list(node.kwargs.values()) for s in size_sources(a, depth - 1)]
    return []


_SHAPE_OPS = {"view", "reshape", "transpose", "permute", "contiguous", "flatten", "unflatten", "swapaxes",
              "swapdims", "squeeze", "unsqueeze"}


def op_name(node: fx.Node) -> str:
    """The method or function name a ``call_method`` / ``call_function`` node calls."""
    return node.target if node.op == "call_method" else getattr(node.target, "__name__", "")


def reshaped_from(node: Any, source: fx.Node, depth: int = 8) -> bool:
    """Whether ``node`` is ``source`` after shape ops only (the same channels, rearranged)."""
    while isinstance(node, fx.Node) and depth > 0:
        if node is source:
            return True
        if node.op not in ("call_method", "call_function") or op_name(node) not in _SHAPE_OPS or not node.args:
            return False
        node, depth = node.args[0], depth - 1
    return False


__all__ = ["op_name", "reshaped_from", "size_sources"]
