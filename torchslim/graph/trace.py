"""Trace a model into ``torch.fx`` graphs with shapes, falling back to submodules.

Only public fx APIs are used: :class:`torch.fx.Tracer` (``is_leaf_module``,
``autowrap_functions``), :class:`torch.fx.GraphModule` and
:class:`torch.fx.passes.shape_prop.ShapeProp`.

When the whole model cannot be traced (data-dependent control flow, ``*args`` unpacking of
shapes...), each child module is traced on the inputs it received during one real forward
pass, recursively. The boundary between separately traced parts is then a *barrier*:
channels crossing it are kept. :class:`TracedPart` records which parts were traced and why
their parent was not, so the report can say it.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from torchslim.utils.inputs import as_args


@dataclass
class TracedPart:
    """One traced graph: ``prefix`` is the module path of its root inside the model."""

    prefix: str
    root: nn.Module
    graph_module: fx.GraphModule
    example_args: tuple


@dataclass
class TraceResult:
    parts: list[TracedPart]
    untraced: list[tuple[str, str]] = field(default_factory=list)  # (module path, reason)


class SlimTracer(fx.Tracer):
    """An fx tracer whose leaves are torch.nn builtins, known-rule modules and user choices."""

    def __init__(self, leaf_modules: Iterable[type | str] = (), autowrap_functions: Iterable[Callable] = (),
                 path_prefix: str | None = None) -> None:
        super().__init__(autowrap_functions=tuple(autowrap_functions))
        self.path_prefix = path_prefix  # set when tracing a submodule through its call wrapper
        self.record_stack_traces = True  # barriers name the user's source line
        self.leaf_types = tuple(t for t in leaf_modules if isinstance(t, type))
        self.leaf_names = {t for t in leaf_modules if isinstance(t, str)}

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        from torchslim.graph.kinds import is_kind_module
        from torchslim.graph.module_rules import has_named_rule, is_norm_subclass

        if isinstance(m, self.leaf_types) or type(m).__name__ in self.leaf_names or has_named_rule(m) \
                or is_kind_module(m) or is_norm_subclass(m):
            return True
        path = module_qualified_name
        if self.path_prefix is not None:
            path = self.path_prefix + path.removeprefix("inner").lstrip(".")
        if path in self.leaf_names:
            return True
        return super().is_leaf_module(m, module_qualified_name)


    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _SlimProxy(node, self)

    def iter(self, obj: fx.Proxy) -> Any:
        """``list(x.split((a, b), 1))`` / ``list(x.chunk(n))``: the piece count is in the code,
        so the pieces are ``x[0]..x[n-1]`` (fx alone cannot iterate a traced value)."""
        count = _piece_count(obj.node)
        if count is None:
            return super().iter(obj)
        return iter([obj[i] for i in range(count)])


class _SlimProxy(fx.Proxy):
    """A traced value whose ``len()`` is known when it is a split into a fixed number of pieces."""

    def __len__(self) -> int:
        count = _piece_count(self.node)
        if count is None:
            return super().__len__()
        return count


def _piece_count(node: fx.Node) -> int | None:
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    if node.op not in ("call_method", "call_function") or name not in ("split", "chunk", "tensor_split"):
        return None
    arg = node.args[1] if len(node.args) > 1 else node.kwargs.get("split_size_or_sections",
                                                                   node.kwargs.get("chunks", node.kwargs.get("split_size")))
    if name == "split":
        return len(arg) if isinstance(arg, (list, tuple)) and all(isinstance(a, int) for a in arg) else None
    return arg if isinstance(arg, int) else None


class _Call(nn.Module):
    """Calls ``inner`` with the captured non-tensor arguments fixed, tensors as inputs."""

    def __init__(self, inner: nn.Module, args: tuple, kwargs: dict) -> None:
        super().__init__()
        self.inner = inner
        self._template = (args, kwargs)

    def call(self, *tensors: Any) -> Any:
        it = iter(tensors)
        args, kwargs = self._template
        args = [next(it) if isinstance(a, torch.Tensor) else a for a in args]
        kwargs = {k: next(it) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        return self.inner(*args, **kwargs)


def _make_call(inner: nn.Module, args: tuple, kwargs: dict) -> tuple[nn.Module, tuple]:
    tensors = tuple(a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor))
    names = ", ".join(f"t{i}" for i in range(len(tensors)))
    namespace: dict[str, Any] = {}
    # fx reads the argument names of forward, so it gets a fixed-arity signature
    exec(f"def forward(self, {names}):\n    return self.call({names})\n", namespace)
    cls = type("TracedCall", (_Call,), {"forward": namespace["forward"]})
    return cls(inner, args, kwargs), tensors


def capture_inputs(model: nn.Module, dummy_input: Any) -> dict[nn.Module, tuple[tuple, dict]]:
    """Arguments of each module's first call during one forward pass on ``dummy_input``."""
    seen: dict[nn.Module, tuple[tuple, dict]] = {}

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        seen.setdefault(module, (args, kwargs))

    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in model.modules()]
    try:
        with torch.no_grad():
            call_model(model, dummy_input)
    except Exception as exc:
        from torchslim.errors import SpeedupError

        raise SpeedupError(f"the model fails on dummy_input: {type(exc).__name__}: {exc}") from exc
    finally:
        for h in handles:
            h.remove()
    return seen


def call_model(model: nn.Module, dummy_input: Any) -> Any:
    """``model`` called on an example input as speedup takes it: keyword dict, tuple of arguments or one tensor."""
    if isinstance(dummy_input, dict):
        return model(**dummy_input)
    return model(*as_args(dummy_input))


def trace_model(
    model: nn.Module,
    dummy_input: Any,
    *,
    leaf_modules: Iterable[type | str] = (),
    autowrap_functions: Iterable[Callable] = (),
    fallback: bool = True,
) -> TraceResult:
    """Trace ``model`` (or, failing that, its submodules) and annotate shapes with ShapeProp.

    ``leaf_modules``: module classes, class names or qualified module names not to trace
    into (they become barriers unless a channel rule knows them).
    """
    leaf_modules = tuple(leaf_modules)
    autowrap_functions = tuple(autowrap_functions)
    captured: dict[nn.Module, tuple[tuple, dict]] | None = None
    result = TraceResult(parts=[])
    todo: list[tuple[str, nn.Module]] = [("", model)]
    while todo:
        prefix, module = todo.pop(0)
        children = [(f"{prefix}.{n}" if prefix else n, c) for n, c in module.named_children()]
        if module is model and not isinstance(dummy_input, dict):
            root, args = module, as_args(dummy_input)
        else:
            if captured is None:
                captured = capture_inputs(model, dummy_input)
            if module not in captured:  # a container (ModuleList...) or unused: look inside
                todo[:0] = children
                continue
            root, args = _make_call(module, *captured[module])
        tracer = SlimTracer(leaf_modules, autowrap_functions,
                            None if root is module else (f"{prefix}." if prefix else ""))
        try:
            graph = tracer.trace(root)
            gm = fx.GraphModule(root, graph)
            propagate_shapes(gm, args)
        except Exception as exc:  # any tracing failure: go one level down
            cause = exc.__cause__ or exc
            reason = f"{type(cause).__name__}: {str(cause).splitlines()[0][:160] if str(cause) else ''}"
            if not fallback:
                from torchslim.errors import SpeedupError

                raise SpeedupError(
                    f"torch.fx could not trace {type(module).__name__} ({prefix or 'the model'}): {reason}. "
                    "Mark the failing module as a leaf with leaf_modules=[...] (class, class name or "
                    "module path), or wrap the failing function with autowrap_functions=[...]."
                ) from exc
            result.untraced.append((prefix or "<root>", reason))
            todo[:0] = children
            continue
        if root is not module:
            # module paths in the wrapper's graph start with 'inner.'
            gm._torchslim_path_prefix = f"{prefix}." if prefix else ""  # type: ignore[attr-defined]
        result.parts.append(TracedPart(prefix, module, gm, args))
    return result


class _ShapePropCall(nn.Module):
    """Runs ShapeProp inside ``torch.func.functional_call`` so parameters can be swapped."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__()
        self.gm = gm

    def forward(self, *args: Any) -> Any:
        return ShapeProp(self.gm).propagate(*args)


def propagate_shapes(gm: fx.GraphModule, args: tuple) -> None:
    """Annotate ``tensor_meta`` on every node.

    First on the ``meta`` device (parameters, buffers and inputs swapped for shape-only
    tensors through ``torch.func.functional_call``: no arithmetic is done), falling back to
    a real forward pass when an op has no meta kernel or reads a constant tensor.
    """
    with contextlib.redirect_stderr(io.StringIO()):  # ShapeProp prints tracebacks itself
        if all(isinstance(a, torch.Tensor) for a in args):
            runner = _ShapePropCall(gm)
            state = {n: torch.empty_like(t, device="meta") for n, t in
                     list(runner.named_parameters()) + list(runner.named_buffers())}
            try:
                torch.func.functional_call(runner, state, tuple(a.to("meta") for a in args), strict=False)
                return
            except Exception:  # noqa: BLE001 - any failure: do it for real
                pass
        ShapeProp(gm).propagate(*args)


def qualified(gm: fx.GraphModule, target: str) -> str:
    """Module path inside the user's model of a ``call_module``/``get_attr`` target."""
    outer = getattr(gm, "_torchslim_path_prefix", None)
    if outer is None:
        return target
    if target == "inner":
        return outer.rstrip(".")
    return outer + target[len("inner."):] if target.startswith("inner.") else target
