"""Dependency groups: layers whose output channels are coupled one-to-one."""
from __future__ import annotations

from collections import Counter
from functools import reduce
from math import gcd
from typing import Any, Callable, Iterable

import torch
from torch import nn

from torchslim.graph.engine import Context, analyze_part, no_gc
from torchslim.graph.trace import trace_model

from torchslim.graph.kinds import producer_kinds

# attention modules whose output channels are their output projection's (a Linear the pruner masks)
OUTPUT_PROJECTIONS = {"mha": "out_proj", "qkvo_attention": "o_proj"}
PRODUCERS = ("conv", "grouped_conv", "depthwise", "linear", "conv1d_hf", "embedding")  # built-in ones


def analyze(model: nn.Module, dummy_input: Any, masks: Any = None, *, leaf_modules: Iterable[type | str] = (),
            autowrap_functions: Iterable[Callable] = (), strict: bool = False,
            narrow_normalized: bool = False) -> Context:
    """Trace ``model`` and run the channel analysis; the returned context is resolved.

    ``narrow_normalized``: LayerNorm'd residual streams may be narrowed (as with
    ``ModelSpeedup(..., narrow_normalized=True)``), so their layers form dependency groups.
    """
    was_training = model.training
    model.eval()
    try:
        with no_gc():
            traced = trace_model(model, dummy_input, leaf_modules=leaf_modules, autowrap_functions=autowrap_functions)
            ctx = Context(masks or {}, strict=strict, narrow_normalized=narrow_normalized)
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
    return coupled_layers(analyze(model, dummy_input, **options))


def coupled_layers(ctx: Context) -> list[list[str]]:
    """:func:`channel_groups` of an analysed (resolved) context."""
    return [[name for name, _ in members] for members in coupled_orders(ctx)]


def coupled_orders(ctx: Context) -> list[list[tuple[str, list[int]]]]:
    """Like :func:`coupled_layers`, with each layer's channel order: channel ``order[k]`` of
    every member is coupled to position ``k`` of the others. Orders differ where channels are
    permuted between the layers (channel shuffle, split + concat)."""
    producers = producer_kinds()
    by_labels: dict[tuple[int, ...], list[tuple[str, list[int]]]] = {}
    for name, use in ctx.uses.items():
        ids = use.slots.get("out")
        if (use.kind not in producers and use.kind not in OUTPUT_PROJECTIONS) or ids is None:
            continue
        labels = ctx.space.label(ids)
        if bool((labels == 0).all()):
            continue
        order = torch.argsort(labels, stable=True)
        member = f"{name}.{OUTPUT_PROJECTIONS[use.kind]}" if use.kind in OUTPUT_PROJECTIONS else name
        by_labels.setdefault(tuple(labels[order].tolist()), []).append((member, order.tolist()))
    return [members for members in by_labels.values() if len(members) > 1]


def group_counts(ctx: Context) -> dict[str, int]:
    """Per producer layer, into how many equal contiguous groups its output channels must be
    pruned alike (a grouped conv reads them, or it is one): each group then keeps as many.

    Layers whose channels meet two incompatible partitions are left out (speedup still keeps
    the groups equal, by keeping extra channels).
    """
    space = ctx.space
    part_of: dict[int, tuple[int, int]] = {}  # label -> (groups, group index)
    clash: set[int] = set()
    for use in ctx.uses.values():
        if use.groups <= 1:
            continue
        for ids in use.slots.values():
            labels = space.label(ids).reshape(use.groups, -1)
            for g, row in enumerate(labels.tolist()):
                for label in row:
                    if label == 0:
                        continue
                    seen = part_of.setdefault(label, (use.groups, g))
                    if seen[0] != use.groups:
                        clash.add(label)
    out: dict[str, int] = {}
    producers = producer_kinds()
    for name, use in ctx.uses.items():
        ids = use.slots.get("out")
        if use.kind not in producers or ids is None:
            continue
        labels = space.label(ids).tolist()
        parts = [part_of.get(label) for label in labels]
        if not any(parts) or any(label in clash for label in labels) or not all(parts):
            continue
        groups = parts[0][0]
        per = len(labels) // groups
        # contiguous: channel i belongs to group i // per, in order
        if len(labels) % groups == 0 and all(p[1] == i // per for i, p in enumerate(parts)):
            out[name] = groups
        elif len({p[1] for p in parts}) == groups:
            # a permutation of the groups (channel shuffle) still gives equal counts per block
            order = [p[1] for p in parts]
            if all(order[i] == order[(i // per) * per] for i in range(len(order))):
                out[name] = groups
    out.update(_chunk_counts(ctx, producers, skip=set(out)))
    return out


def _chunk_counts(ctx: Context, producers: set[str], skip: set[str]) -> dict[str, int]:
    """Groups that keep the pieces of equal chunks equal (ShuffleNet's ``x.chunk(2, 1)`` after a
    shuffle): a layer whose channels fall evenly into every piece of each chunk it reaches prunes
    as many in each run of channels that go to one piece, so the pieces stay equal without
    keeping extra channels."""
    space = ctx.space
    pieces: list[dict[int, int]] = []
    for ids, n in ctx.balanced:
        where: dict[int, int] = {}
        for g, row in enumerate(space.label(ids).reshape(n, -1).tolist()):
            for label in row:
                where[label] = g if where.get(label, g) == g else -1  # -1: in several pieces
        pieces.append(where)
    out: dict[str, int] = {}
    for name, use in ctx.uses.items():
        ids = use.slots.get("out")
        if use.kind not in producers or ids is None or name in skip or not pieces:
            continue
        labels = space.label(ids).tolist()
        signature = [tuple(p.get(label) for p in pieces) for label in labels]
        touched = [k for k in range(len(pieces)) if any(sig[k] is not None for sig in signature)]
        if not touched or any(sig[k] == -1 for sig in signature for k in touched):
            continue
        balanced = True
        for k in touched:
            counts = Counter(sig[k] for sig in signature if sig[k] is not None)
            balanced &= len(counts) == len({g for g in pieces[k].values() if g >= 0}) and len(set(counts.values())) == 1
        runs, start = [], 0
        for i in range(1, len(signature) + 1):
            if i == len(signature) or signature[i] != signature[start]:
                runs.append(i - start)
                start = i
        per = reduce(gcd, runs)
        if balanced and len(runs) > 1 and len(labels) % per == 0:
            out[name] = len(labels) // per
    return out


__all__ = ["analyze", "channel_groups", "coupled_layers", "coupled_orders", "group_counts", "PRODUCERS"]
