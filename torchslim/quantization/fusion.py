"""Find module chains that int8 backends fuse (conv → batch norm → relu) by tracing with torch.fx."""
from __future__ import annotations

import warnings
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import fx, nn

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_COMPUTE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_RELU_MODULES = (nn.ReLU, nn.ReLU6)
_RELU_FUNCTIONS = (F.relu, torch.relu, F.relu6)


def trace(model: nn.Module) -> fx.GraphModule | None:
    """A symbolic trace of ``model``, or None (with a warning) if it cannot be traced."""
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - any tracing failure means "no graph"
        warnings.warn(f"torch.fx could not trace {type(model).__name__} ({type(exc).__name__}: {exc})", stacklevel=3)
        return None


def _single_user(node: fx.Node) -> fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _is_relu(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(node.target), _RELU_MODULES)
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    return node.op == "call_method" and node.target in ("relu", "relu_")


def fused_chains(model: nn.Module, graph: fx.GraphModule | None = None) -> dict[str, list[fx.Node]]:
    """``{compute module name: [following bn node?, relu node?]}`` for every conv / linear call."""
    graph = graph if graph is not None else trace(model)
    if graph is None:
        return {}
    modules = dict(model.named_modules())
    chains: dict[str, list[fx.Node]] = {}
    for node in graph.graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), _COMPUTE):
            continue
        chain: list[fx.Node] = []
        nxt = _single_user(node)
        if nxt is not None and nxt.op == "call_module" and isinstance(modules.get(nxt.target), _BN):
            chain.append(nxt)
            nxt = _single_user(nxt)
        if nxt is not None and _is_relu(nxt, modules):
            chain.append(nxt)
        chains[node.target] = chain
    return chains


def conv_bn_pairs(model: nn.Module, names: Iterable[str] | None = None) -> dict[str, str]:
    """``{conv name: bn name}`` for convs whose only consumer is a batch norm."""
    modules = dict(model.named_modules())
    pairs = {}
    for name, chain in fused_chains(model).items():
        if names is not None and name not in names:
            continue
        if chain and chain[0].op == "call_module" and isinstance(modules.get(chain[0].target), _BN):
            pairs[name] = chain[0].target
    return pairs


__all__ = ["conv_bn_pairs", "fused_chains", "trace"]
