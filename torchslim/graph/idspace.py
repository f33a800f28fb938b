"""Channel identities of tensor values, and the union-find that couples them.

Every tensor value in a traced graph gets a :class:`Chan`: an integer tensor ``ids``
(broadcastable to the value's shape, size 1 along dims where the identity does not vary)
and a bool tensor ``dead`` (the value is exactly zero there in the masked model). Two
positions holding the same id — or ids joined by :meth:`Space.union` — form one *class*:
the class is removed everywhere or nowhere. Shape ops are applied to ``ids`` themselves,
so reshape, permute, flatten, cat, split and channel shuffle need no hand-written index maps.

Id 0 is the pinned class: positions that must physically stay (graph inputs and outputs,
barriers, constants).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

PIN = 0


@dataclass
class Chan:
    ids: torch.Tensor   # int64, same ndim as the value
    dead: torch.Tensor  # bool, same shape as ids

    @property
    def ndim(self) -> int:
        return self.ids.dim()

    def varying(self) -> list[int]:
        return [d for d in range(self.ids.dim()) if self.ids.shape[d] > 1]

    def map(self, fn) -> "Chan":
        """Apply the same shape op to ids and dead."""
        return Chan(fn(self.ids), fn(self.dead))

    def full(self, shape: torch.Size | tuple) -> "Chan":
        return Chan(self.ids.expand(shape), self.dead.expand(shape))

    def compressed(self) -> "Chan":
        return compress(self)

    def with_dead(self, dead: torch.Tensor) -> "Chan":
        ids, dead = torch.broadcast_tensors(self.ids, dead)
        return compress(Chan(ids, dead))

    def alive(self) -> "Chan":
        return Chan(self.ids, torch.zeros_like(self.dead))


def pinned(ndim: int) -> Chan:
    shape = (1,) * ndim
    return Chan(torch.zeros(shape, dtype=torch.long), torch.zeros(shape, dtype=torch.bool))


def compress(chan: Chan) -> Chan:
    """Shrink every dim along which neither ids nor dead vary to size 1."""
    ids, dead = chan.ids, chan.dead
    for d in range(ids.dim()):
        if ids.shape[d] > 1:
            first_i, first_d = ids.narrow(d, 0, 1), dead.narrow(d, 0, 1)
            if bool((ids == first_i).all()) and bool((dead == first_d).all()):
                ids, dead = first_i, first_d
    return Chan(ids.contiguous(), dead.contiguous())


def reshape_groups(in_shape: tuple, out_shape: tuple) -> list[tuple[list[int], list[int]]] | None:
    """Pair runs of input and output dims with equal products (how a reshape regroups dims)."""
    if 0 in in_shape or 0 in out_shape:
        return None
    groups: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(in_shape) and j < len(out_shape):
        gi, gj = [i], [j]
        pi, pj = in_shape[i], out_shape[j]
        i, j = i + 1, j + 1
        while pi != pj:
            if pi < pj:
                if i >= len(in_shape):
                    return None
                gi.append(i); pi *= in_shape[i]; i += 1  # noqa: E702
            else:
                if j >= len(out_shape):
                    return None
                gj.append(j); pj *= out_shape[j]; j += 1  # noqa: E702
        groups.append((gi, gj))
    rest_i, rest_j = list(range(i, len(in_shape))), list(range(j, len(out_shape)))
    if any(in_shape[d] != 1 for d in rest_i) or any(out_shape[d] != 1 for d in rest_j):
        return None
    if groups:
        groups[-1][0].extend(rest_i)
        groups[-1][1].extend(rest_j)
    elif rest_i or rest_j:
        groups.append((rest_i, rest_j))
    return groups


def reshape_chan(chan: Chan, in_shape: tuple, out_shape: tuple) -> Chan:
    """Apply a reshape to ids, expanding only the dim groups whose ids vary."""
    in_shape, out_shape = tuple(in_shape), tuple(out_shape)
    groups = reshape_groups(in_shape, out_shape)
    if groups is None:
        full = chan.full(in_shape)
        return compress(Chan(full.ids.reshape(out_shape), full.dead.reshape(out_shape)))
    partial_in = list(chan.ids.shape)
    partial_out = [1] * len(out_shape)
    for gi, gj in groups:
        if any(chan.ids.shape[d] > 1 for d in gi):
            for d in gi:
                partial_in[d] = in_shape[d]
            for d in gj:
                partial_out[d] = out_shape[d]
    full = chan.full(tuple(partial_in))
    return compress(Chan(full.ids.reshape(partial_out), full.dead.reshape(partial_out)))


def along(ndim: int, dim: int, ids: torch.Tensor, dead: torch.Tensor | None = None) -> Chan:
    """A Chan varying only along ``dim``."""
    shape = [1] * ndim
    shape[dim] = ids.numel()
    if dead is None:
        dead = torch.zeros(ids.numel(), dtype=torch.bool)
    return Chan(ids.reshape(shape), dead.reshape(shape).bool())


class Space:
    """Allocates ids, collects unions and keep requests; resolves classes at the end."""

    def __init__(self) -> None:
        self.next_id = 1
        self._edges: list[torch.Tensor] = []
        self._keeps: list[torch.Tensor] = [torch.zeros(1, dtype=torch.long)]
        self.labels: torch.Tensor | None = None
        self.kept_labels: torch.Tensor | None = None
        self._kept_ids: torch.Tensor | None = None

    def fresh(self, n: int) -> torch.Tensor:
        ids = torch.arange(self.next_id, self.next_id + n, dtype=torch.long)
        self.next_id += n
        return ids

    def union(self, a: torch.Tensor, b: torch.Tensor) -> None:
        a, b = torch.broadcast_tensors(a, b)
        a, b = a.reshape(-1), b.reshape(-1)
        differ = a != b
        if bool(differ.any()):
            # one int64 key per pair makes de-duplication a cheap 1-D unique
            keys = torch.unique(a[differ] * (1 << 31) + b[differ])
            self._edges.append(torch.stack([keys >> 31, keys & ((1 << 31) - 1)], 1))

    def union_along(self, chan: Chan, dim: int) -> Chan:
        """Make ids identical along ``dim`` (a class then spans the whole dim)."""
        if chan.ids.shape[dim] == 1:
            return chan
        first = chan.ids.narrow(dim, 0, 1)
        self.union(chan.ids, first)
        dead = chan.dead.all(dim=dim, keepdim=True)
        return Chan(first.contiguous(), dead)

    def rect(self, chan: Chan, dims: tuple[int, ...]) -> Chan:
        """Union along every dim not in ``dims`` so removal is a selection along ``dims``."""
        keep = {d % chan.ndim for d in dims}
        for d in range(chan.ndim):
            if d not in keep:
                chan = self.union_along(chan, d)
        return chan

    def keep(self, ids: torch.Tensor) -> None:
        if ids.numel():
            self._keeps.append(torch.unique(ids.reshape(-1)))

    def keep_alive(self, chan: Chan) -> None:
        ids, dead = torch.broadcast_tensors(chan.ids, chan.dead)
        self.keep(ids[~dead])

    # --- resolution ----------------------------------------------------------------------
    def resolve(self) -> None:
        n = self.next_id
        labels = torch.arange(n, dtype=torch.long)
        if self._edges:
            edges = torch.cat(self._edges)
            a, b = edges[:, 0], edges[:, 1]
            while True:
                la, lb = labels[a], labels[b]
                low = torch.minimum(la, lb)
                new = labels.clone()
                new.scatter_reduce_(0, la, low, "amin")
                new.scatter_reduce_(0, lb, low, "amin")
                while True:  # pointer jumping to the roots
                    jumped = new[new]
                    if torch.equal(jumped, new):
                        break
                    new = jumped
                if torch.equal(new, labels):
                    break
                labels = new
        self.labels = labels
        kept = torch.zeros(n, dtype=torch.bool)
        kept[labels[torch.cat(self._keeps)]] = True
        self.kept_labels = kept
        self._kept_ids = kept[labels]

    def kept(self, ids: torch.Tensor) -> torch.Tensor:
        """Whether each position's class survives (after :meth:`resolve`)."""
        assert self.labels is not None, "call resolve() first"
        return self._kept_ids[ids]

    def label(self, ids: torch.Tensor) -> torch.Tensor:
        assert self.labels is not None
        return self.labels[ids]

    def add_keep_and_refresh(self, ids: torch.Tensor) -> None:
        """Keep more classes after resolution (used by rounding and empty-layer guards)."""
        assert self.labels is not None and self.kept_labels is not None
        self.kept_labels[self.labels[ids]] = True
        self._keeps.append(ids.reshape(-1))
        self._kept_ids = self.kept_labels[self.labels]
