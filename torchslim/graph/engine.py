"""Walk traced graphs, apply per-op channel rules, and resolve which channels survive.

The walk is an abstract interpretation over :class:`~torchslim.graph.idspace.Chan` values:
rules say how each op maps channel identities and zero-ness ("dead") from inputs to outputs,
which positions it couples (union) and which it needs (keep). Ops without a rule are
*barriers*: their inputs are kept whole and their outputs are pinned; they are reported,
or raise in ``strict`` mode.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.fx as fx
from torch import nn

from torchslim.errors import SpeedupError
from torchslim.graph.idspace import Chan, Space, along, pinned
from torchslim.graph.normalized import NarrowedNorm, StreamParam, stream_param
from torchslim.graph.shuffle import Chunk, Shuffle
from torchslim.graph.trace import TracedPart, qualified


@contextlib.contextmanager
def no_gc() -> Any:
    """Pause cyclic garbage collection: analysis allocates many small objects and GC passes
    over the fx graph cost more than the analysis itself."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class Barrier:
    node: str
    target: str
    reason: str


@dataclass
class ModuleUse:
    """What the analysis learned about one leaf module (all its calls merged)."""

    name: str
    module: nn.Module
    kind: str
    slots: dict[str, torch.Tensor] = field(default_factory=dict)  # slot -> 1-D ids
    outputs: list[Any] = field(default_factory=list)  # Chan per call (for verification)
    requested: float | None = None  # share of output channels its own masks removed
    groups: int = 1  # slots must keep the same number of channels in each of this many groups


class Context:
    """State of one analysis; handed to every rule."""

    def __init__(self, masks: Mapping[str, Mapping[str, torch.Tensor]], *, strict: bool = False,
                 time_limit: float | None = None, progress: Callable[[int, int, str], None] | None = None,
                 narrow_normalized: bool = False) -> None:
        self.space = Space()
        # narrow LayerNorm'd streams (see graph/normalized.py): parameters read in the graph
        # get channel ids, LayerNorms record the channels they may lose
        self.narrow_normalized = narrow_normalized
        self.params: dict[str, StreamParam] = {}
        self.narrowed: list[NarrowedNorm] = []
        self.masks = masks
        self.strict = strict
        self.time_limit = time_limit
        self.progress = progress
        self.uses: dict[str, ModuleUse] = {}
        self.barriers: list[Barrier] = []
        self.zeros: list[tuple[str, str, int, torch.Tensor]] = []  # propagated masks
        self.env: dict[fx.Node, Any] = {}
        self.gm: fx.GraphModule | None = None
        self.node: fx.Node | None = None
        # (1-D ids, n): the ids form n equal runs that must keep as many channels each (chunk)
        self.balanced: list[tuple[torch.Tensor, int]] = []
        self.literals: list[Literal] = []  # sizes written as numbers that speedup rewrites
        self.shuffles: list[Shuffle] = []  # channel shuffles rewritten as an index (graph/shuffle.py)
        self.shuffle_out: dict[fx.Node, Chan] = {}
        self.chunks: list[Chunk] = []  # equal chunks rewritten as splits of the kept counts
        self.rewritable = False  # the current graph may replace its module's forward
        self._module_ids: dict[tuple[str, str], torch.Tensor] = {}
        self._start = time.perf_counter()

    # --- values --------------------------------------------------------------------------
    def chan(self, arg: Any) -> Chan | None:
        if isinstance(arg, fx.Node):
            value = self.env.get(arg)
            return value if isinstance(value, Chan) else None
        return None

    def value(self, arg: Any) -> Any:
        if isinstance(arg, fx.Node):
            return self.env.get(arg)
        if isinstance(arg, (list, tuple)):
            return [self.value(a) for a in arg] if _is_namedtuple(arg) else type(arg)(self.value(a) for a in arg)
        if isinstance(arg, dict):  # dict outputs (torchvision segmentation, ModelOutput)
            return {k: self.value(v) for k, v in arg.items()}
        if dataclasses.is_dataclass(arg) and not isinstance(arg, type):
            return {f.name: self.value(getattr(arg, f.name)) for f in dataclasses.fields(arg)}
        return None

    @staticmethod
    def shape(arg: Any) -> torch.Size | None:
        if not isinstance(arg, fx.Node):
            return None
        meta = arg.meta.get("tensor_meta")
        return getattr(meta, "shape", None)

    def pinned_like(self, node: fx.Node) -> Any:
        return _pinned_for_meta(node.meta.get("tensor_meta"))

    # --- module bookkeeping ----------------------------------------------------------------
    def use(self, name: str, module: nn.Module, kind: str) -> ModuleUse:
        use = self.uses.get(name)
        if use is None:
            use = self.uses[name] = ModuleUse(name, module, kind)
        return use

    def module_ids(self, name: str, slot: str, n: int) -> torch.Tensor:
        """Fresh ids created once per module, so a reused module's calls share classes."""
        key = (name, slot)
        if key not in self._module_ids:
            self._module_ids[key] = self.space.fresh(n)
        return self._module_ids[key]

    def slot(self, use: ModuleUse, slot: str, ids: torch.Tensor) -> None:
        ids = ids.reshape(-1)
        old = use.slots.get(slot)
        if old is None:
            use.slots[slot] = ids
        else:
            self.space.union(old, ids)

    def zero(self, name: str, target: str, dim: int, dead: torch.Tensor) -> None:
        if bool(dead.any()):
            self.zeros.append((name, target, dim, dead.reshape(-1)))

    def param_at(self, arg: Any) -> StreamParam | None:
        """The stream parameter a ``get_attr`` node reads (narrowing mode), else None."""
        if not isinstance(arg, fx.Node) or arg.op != "get_attr" or self.gm is None:
            return None
        return self.params.get(qualified(self.gm, arg.target))

    def mask_of(self, name: str, target: str) -> torch.Tensor | None:
        return self.masks.get(name, {}).get(target)

    # --- barriers ------------------------------------------------------------------------
    def barrier(self, node: fx.Node, reason: str) -> Any:
        target = qualified(self.gm, node.target) if node.op in ("call_module", "get_attr") else _target_name(node)
        chans = [c for arg in _flat_nodes((node.args, node.kwargs)) for c in _flat_chans(self.env.get(arg))]
        if all(bool((c.ids == 0).all()) for c in chans):
            return self.pinned_like(node)  # only constants and kept channels: nothing is lost
        if self.strict:
            raise SpeedupError(
                f"speedup cannot reason about node '{node.name}' ({node.op} {target}): {reason}. "
                "Use strict=False to keep it whole (a barrier), or register a channel rule."
            )
        self.barriers.append(Barrier(node.name, target, reason))
        for chan in chans:
            self.space.keep(chan.ids)
        return self.pinned_like(node)

    def literal(self, node: fx.Node, dim: int, ids: torch.Tensor, piece: bool = False) -> bool:
        """Record that output ``dim`` of this view/reshape (or piece ``dim`` of a split) is
        written as a number that speedup rewrites to the kept count; False where the graph
        cannot be rewritten."""
        if not self.rewritable or self.gm is None:
            return False
        self.literals.append(Literal(self.gm, node, dim, ids, piece))
        return True

    def fixed_size(self, node: fx.Node, reason: str) -> None:
        """Report a node whose channels are kept because the code fixes their count."""
        line = source_line(node)
        self.barriers.append(Barrier(node.name, _target_name(node), reason + (f" ({line})" if line else "")))

    def ids_along(self, chan: Chan, dim: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """1-D ids and dead flags of a Chan that varies at most along ``dim``."""
        chan = self.space.rect(chan, (dim,))
        ids = chan.ids.reshape(-1)
        dead = chan.dead.reshape(-1)
        if ids.numel() == 1 and size != 1:
            ids, dead = ids.expand(size), dead.expand(size)
        return ids, dead

    def check_time(self, node: fx.Node, index: int, total: int) -> None:
        if self.progress is not None:
            self.progress(index, total, node.name)
        if self.time_limit is not None and time.perf_counter() - self._start > self.time_limit:
            raise SpeedupError(
                f"speedup analysis exceeded its time limit of {self.time_limit:.0f} s at node "
                f"'{node.name}' ({node.op} {_target_name(node)})"
            )


@dataclass
class Literal:
    """A view/reshape size written as a number in ``gm`` that carries channels ``ids``."""

    gm: fx.GraphModule
    node: fx.Node
    dim: int
    ids: torch.Tensor
    piece: bool = False  # a split size (piece ``dim``) rather than a view/reshape dim


# torch's and torchslim's package folders (with a trailing separator, so "torchslim_x/" does not match)
_TOOL_DIRS = tuple(os.path.join(os.path.realpath(folder), "")
                   for folder in (os.path.dirname(torch.__file__), os.path.join(os.path.dirname(__file__), os.pardir)))


def source_line(node: fx.Node) -> str:
    """``file:line: code`` of the user's source that produced ``node`` (if recorded)."""
    trace = node.meta.get("stack_trace") or getattr(node, "stack_trace", None)
    if not trace:
        return ""
    lines = [ln.strip() for ln in trace.strip().splitlines()]
    found = ""
    for i, line in enumerate(lines):
        if not line.startswith("File "):
            continue
        path = line.split('"')[1] if line.count('"') >= 2 else ""
        if path.startswith("<") or os.path.realpath(path).startswith(_TOOL_DIRS):
            continue  # the tracer's own frames (by package directory: a checkout may be named torchslim too)
        where = line.removeprefix("File ").replace('"', "").replace(", line ", ":").split(", in ")[0]
        code = lines[i + 1] if i + 1 < len(lines) and not lines[i + 1].startswith("File ") else ""
        found = f"{where}: {code}".strip()
    return found


def _pinned_for_meta(meta: Any) -> Any:
    if meta is None:
        return None
    if hasattr(meta, "shape"):
        return pinned(len(meta.shape))
    if isinstance(meta, (list, tuple)):
        return tuple(_pinned_for_meta(m) for m in meta)
    if isinstance(meta, dict):
        return {k: _pinned_for_meta(v) for k, v in meta.items()}
    return None


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _is_namedtuple(obj: Any) -> bool:
    return isinstance(obj, tuple) and hasattr(obj, "_fields")


def _flat_nodes(obj: Any) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg(obj, lambda n: out.append(n) or n)
    return out


def _flat_chans(value: Any) -> list[Chan]:
    if isinstance(value, Chan):
        return [value]
    if isinstance(value, (list, tuple)):
        return [c for v in value for c in _flat_chans(v)]
    if isinstance(value, dict):
        return [c for v in value.values() for c in _flat_chans(v)]
    return []


def _target_name(node: fx.Node) -> str:
    t = node.target
    if isinstance(t, str):
        return t
    module = getattr(t, "__module__", "") or ""
    return f"{module}.{getattr(t, '__qualname__', getattr(t, '__name__', repr(t)))}".lstrip(".")


def analyze_part(ctx: Context, part: TracedPart) -> None:
    """Run the rules over one traced graph."""
    from torchslim.graph.rules import function_rule, method_rule
    from torchslim.graph.module_rules import module_rule

    gm = part.graph_module
    ctx.gm = gm
    # only a graph of the whole model, called as the model is, can replace its forward
    ctx.rewritable = part.prefix == "" and getattr(gm, "_torchslim_path_prefix", None) is None
    ctx.env = {}
    nodes = list(gm.graph.nodes)
    for index, node in enumerate(nodes):
        ctx.node = node
        ctx.check_time(node, index, len(nodes))
        if node.op == "placeholder":
            value = ctx.pinned_like(node)
        elif node.op == "get_attr":
            attr = _get_attr(gm, node.target)
            if ctx.narrow_normalized and isinstance(attr, nn.Parameter):
                value = stream_param(ctx, qualified(gm, node.target), attr)
            else:
                value = pinned(attr.dim()) if isinstance(attr, torch.Tensor) else None
        elif node.op == "output":
            for chan in _flat_chans(ctx.value(node.args[0])):
                ctx.space.keep(chan.ids)
            continue
        elif node.op == "call_module":
            module = gm.get_submodule(node.target)
            name = qualified(gm, node.target)
            rule = module_rule(module)
            if rule is None:
                value = ctx.barrier(node, f"no channel rule for module type {type(module).__name__} ({name})")
            else:
                value = rule(ctx, node, module, name)
                if name in ctx.uses:
                    ctx.uses[name].outputs.append(value)
        else:
            rule = function_rule(node.target) if node.op == "call_function" else method_rule(node.target)
            if rule is None and node.op == "call_function" and isinstance(node.target, type) \
                    and dataclasses.is_dataclass(node.target):
                value = ctx.value(dict(zip(_field_names(node.target), node.args), **node.kwargs))  # an output
            elif rule is None:
                tensor_out = "tensor_meta" in node.meta
                if tensor_out:
                    value = ctx.barrier(node, "no channel rule for this operation")
                else:  # a size, a flag, a container: what it reads may still be used, so it stays
                    for chan in _flat_chans(ctx.value(list(node.args) + list(node.kwargs.values()))):
                        ctx.space.keep(chan.ids)
                    value = None
            else:
                value = rule(ctx, node)
        ctx.env[node] = value


def _get_attr(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


__all__ = ["Barrier", "Context", "Literal", "ModuleUse", "analyze_part", "along", "source_line"]
