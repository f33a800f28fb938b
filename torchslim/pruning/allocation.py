"""Sparsity allocation: turn per-block scores into 0/1 masks.

Three policies compose:

* per layer: each target keeps its best ``1 - sparse_ratio`` of blocks (or the blocks whose
  score reaches ``sparse_threshold``);
* dependency groups (``dependency_group_id``): coupled targets with the same number of
  channels are scored together (sum of normalised scores) and keep the *same* channels;
* global groups (``global_group_id``, v2 ``total_sparsity``): one threshold over all members,
  chosen so that the pruned share of their parameters is ``sparse_ratio``, with each
  member capped by its ``max_sparse_ratio``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Hashable

import torch

Key = tuple[str, str]  # (module name, target name)


@dataclass
class Candidate:
    """Scores of one target (already reduced to its block grid)."""

    key: Key
    scores: torch.Tensor
    block_numel: int  # parameters per block
    settings: dict[str, Any]
    structured: bool


@dataclass
class _Item:
    """Targets sharing one choice of blocks (a dependency group, or a single target)."""

    members: list[Candidate]
    scores: torch.Tensor = field(init=False)  # 1-D
    unit_numel: int = field(init=False)

    def __post_init__(self) -> None:
        flat = [_order(m, m.scores.reshape(-1).float()) for m in self.members]
        if len(flat) == 1:
            self.scores = flat[0]
        else:
            # scales differ between layers; normalise each before summing
            self.scores = sum(s / (s.abs().max() + 1e-12) for s in flat)
        self.unit_numel = sum(m.block_numel for m in self.members)

    @property
    def settings(self) -> dict[str, Any]:
        return self.members[0].settings

    @property
    def structured(self) -> bool:
        return any(m.structured for m in self.members)

    def min_keep(self) -> int:
        # a structured layer with no channel left would break the network
        return 1 if self.structured else 0

    def max_prune(self, n: int | None = None) -> int:
        """Most blocks that may go out of ``n`` (default: all of this item's)."""
        n = self.scores.numel() if n is None else n
        cap = self.settings.get("max_sparse_ratio")
        limit = n - self.min_keep()
        if cap is not None:
            limit = min(limit, math.floor(cap * n + 1e-9))
        return max(limit, 0)


def _keep_mask(scores: torch.Tensor, n_prune: int) -> torch.Tensor:
    mask = torch.ones_like(scores)
    if n_prune > 0:
        # stable order so that ties are broken by position, deterministically
        order = torch.argsort(scores, stable=True)
        mask[order[:n_prune]] = 0
    return mask


def _allocate_item(item: _Item) -> torch.Tensor:
    groups = item.settings.get("channel_groups", 1)
    n = item.scores.numel()
    if groups > 1 and item.structured and n % groups == 0 and n > groups:
        # equal counts per contiguous group (a grouped conv reads these channels): the total
        # asked for, spread evenly, rounded up so that at least the requested share goes
        per_group = -(-_n_prune(item, item.scores) // groups)
        per = n // groups
        cap = min(per - 1, item.max_prune(per) if "max_sparse_ratio" in item.settings else per - 1)
        return torch.cat([_keep_mask(s, min(per_group, cap)) for s in item.scores.reshape(groups, -1)])
    return _keep_mask(item.scores, min(_n_prune(item, item.scores), item.max_prune()))


def _n_prune(item: _Item, scores: torch.Tensor) -> int:
    n = scores.numel()
    settings = item.settings
    if "sparse_threshold" in settings:
        n_prune = int((scores < settings["sparse_threshold"]).sum())
    else:
        n_prune = math.floor(settings.get("sparse_ratio", 0.0) * n + 1e-9)
    return max(n_prune, math.ceil(settings.get("min_sparse_ratio", 0.0) * n - 1e-9))


def _allocate_global(items: list[_Item]) -> list[torch.Tensor]:
    """One ranking over all items; prune cheapest blocks until the parameter budget is met.

    Blocks of different sizes are compared by score per parameter. Within an item the global
    order equals the item's own order, so a per-item cap is a cap on the within-item rank.
    """
    ratio = items[0].settings.get("sparse_ratio", 0.0)
    scores = torch.cat([item.scores / item.unit_numel for item in items])
    sizes = torch.cat([torch.full((item.scores.numel(),), float(item.unit_numel)) for item in items])
    within_rank = torch.cat([torch.argsort(torch.argsort(item.scores, stable=True)) for item in items])
    limits = torch.cat([torch.full((item.scores.numel(),), item.max_prune()) for item in items])
    budget = ratio * float(sizes.sum())
    order = torch.argsort(scores, stable=True)
    eligible = order[within_rank[order] < limits[order]]
    spent = torch.cumsum(sizes[eligible], 0)
    chosen = eligible[spent <= budget + 1e-6]
    keep = torch.ones_like(scores)
    keep[chosen] = 0
    return list(keep.split([item.scores.numel() for item in items]))


def allocate(candidates: list[Candidate]) -> dict[Key, torch.Tensor]:
    """Masks in each candidate's grid shape (1 = keep)."""
    by_dependency: dict[Hashable, list[Candidate]] = {}
    items: list[_Item] = []
    for cand in candidates:
        group = cand.settings.get("dependency_group_id")
        if group is None or not cand.structured:
            items.append(_Item([cand]))
        else:
            by_dependency.setdefault(group, []).append(cand)
    for group, members in by_dependency.items():
        sizes = {m.scores.numel() for m in members}
        if len(sizes) > 1:
            warnings.warn(
                f"dependency group {group!r} mixes targets with {sorted(sizes)} channels; "
                "pruning them independently", stacklevel=2,
            )
            items.extend(_Item([m]) for m in members)
        else:
            items.append(_Item(members))

    by_global: dict[Hashable, list[_Item]] = {}
    results: dict[Key, torch.Tensor] = {}
    for item in items:
        group = item.settings.get("global_group_id")
        if group is None:
            _store(results, item, _allocate_item(item))
        else:
            by_global.setdefault(group, []).append(item)
    for members in by_global.values():
        for item, mask in zip(members, _allocate_global(members)):
            _store(results, item, mask)
    return results


def _order(member: Candidate, flat: torch.Tensor) -> torch.Tensor:
    """A dependency-group member's scores in the group's common channel order."""
    order = member.settings.get("channel_order")
    if order is None or len(order) != flat.numel():
        return flat
    return flat[torch.as_tensor(order)]


def _store(results: dict[Key, torch.Tensor], item: _Item, flat_mask: torch.Tensor) -> None:
    for member in item.members:
        mask = flat_mask
        order = member.settings.get("channel_order")
        if len(item.members) > 1 and order is not None and len(order) == flat_mask.numel():
            mask = torch.empty_like(flat_mask)
            mask[torch.as_tensor(order)] = flat_mask  # back to the member's own channel order
        results[member.key] = mask.reshape(member.scores.shape).to(member.scores.dtype)
