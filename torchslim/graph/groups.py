"""Dependency groups: layers whose output channels are coupled one-to-one."""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import nn

from torchslim.graph.engine import Context, analyze_part, no_gc
from torchslim.graph.trace import trace_model

PRODUCERS = ("conv", "grouped_conv", "depthwise", "linear", "conv1d_hf", "embedding")


def analyze(model: nn.Module, dummy_input: Any, masks: Any = None, *, leaf_modules: Iterable[type | str] = (),
            autowrap_functions: Iterable[Callable] = (), strict: bool = False) -> Context:
    """Trace ``model`` and run the channel analysis; the returned context is resolved."""
    was_training = model.training
    model.eval()
    try:
        with no_gc():
            traced = trace_model(model, dummy_input, leaf_modules=leaf_modules, autowrap_functions=autowrap_functions)
            ctx = Context(masks or {}, strict=strict)
            for part in traced.parts:
                analyze_part(ctx, part)
            ctx.space.resolve()
    finally:
        model.train(was_training)
    return ctx


def channel_groups(model: nn.Module, dummy_input: Any, **options: Any) -> list[list[str]]:
    """Groups (size >= 2) of layers whose output channel i must be pruned together.

    Layers whose channels are pinned (feeding the model output, a barrier, a LayerNorm...)
    are left out: pruning them cannot make the model smaller.
    """
    ctx = analyze(model, dummy_input, **options)
    by_labels: dict[tuple[int, ...], list[str]] = {}
    for name, use in ctx.uses.items():
        ids = use.slots.get("out")
        if use.kind not in PRODUCERS or ids is None:
            continue
        labels = ctx.space.label(ids)
        if bool((labels == 0).all()):
            continue
        by_labels.setdefault(tuple(labels.tolist()), []).append(name)
    return [names for names in by_labels.values() if len(names) > 1]


__all__ = ["analyze", "channel_groups", "PRODUCERS"]
