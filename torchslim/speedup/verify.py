"""Compare the shrunk model with the masked reference, naming the first layer that differs."""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

from torchslim.graph.idspace import Chan


def flat_tensors(value: Any) -> list[torch.Tensor]:
    """Tensors of a (nested) model output: tuples, lists, dicts, dataclasses, ModelOutput."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in flat_tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in flat_tensors(v)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [t for f in dataclasses.fields(value) for t in flat_tensors(getattr(value, f.name))]
    return []


def max_error(ref: torch.Tensor, out: torch.Tensor) -> float:
    if ref.numel() == 0:
        return 0.0
    return float((ref.float() - out.float()).abs().max())


def close(ref: torch.Tensor, out: torch.Tensor, rtol: float, atol: float) -> bool:
    """Equal up to float reassociation: |a-b| <= atol + rtol * max|ref| (scale-aware)."""
    if ref.shape != out.shape:
        return False
    if not ref.is_floating_point():
        return bool(torch.equal(ref, out))
    scale = float(ref.float().abs().max()) if ref.numel() else 0.0
    return max_error(ref, out) <= atol + rtol * scale


class OutputRecorder:
    """Records the first output of each named module while active."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.modules = modules
        self.outputs: dict[str, Any] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> "OutputRecorder":
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def _hook(self, name: str) -> Callable:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if name not in self.outputs:
                first = flat_tensors(output)
                self.outputs[name] = first[0].detach().clone() if first else None
        return hook

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()


def select_kept(ref: torch.Tensor, kept: torch.Tensor) -> torch.Tensor | None:
    """Positions of ``ref`` whose channels were kept, in the shrunk layout."""
    mask = kept.expand(ref.shape) if kept.dim() == ref.dim() else None
    if mask is None:
        return None
    shape = [int(kept.any(dim=[e for e in range(kept.dim()) if e != d]).sum()) if kept.shape[d] > 1 else ref.shape[d]
             for d in range(ref.dim())]
    return ref[mask].reshape(shape)


def first_divergence(order: list[str], ref: dict[str, Any], out: dict[str, Any],
                     kept_of: Callable[[str], torch.Tensor | None], rtol: float, atol: float) -> tuple[str, str] | None:
    """Name and description of the first module (in execution order) whose output differs."""
    for name in order:
        r, o = ref.get(name), out.get(name)
        if r is None or o is None:
            continue
        kept = kept_of(name)
        sel = r if kept is None else select_kept(r, kept)
        if sel is None or sel.shape != o.shape:
            return name, f"output shape {tuple(o.shape)} where the kept channels give {None if sel is None else tuple(sel.shape)}"
        if not close(sel, o, rtol, atol):
            return name, f"max abs difference {max_error(sel, o):.3g}"
    return None


def chan_kept(space: Any, chan: Any) -> torch.Tensor | None:
    if not isinstance(chan, Chan):
        return None
    return space.kept(chan.ids)


# --- the output check: several inputs, tolerance relative to the output's spread ---------------------
FLOAT_NOISE = 1e-6  # float32 re-association error, relative to the output's magnitude


@dataclass
class CheckResult:
    """Outcome of comparing a model with its reference on several inputs.

    ``status`` is ``"equal"`` (every input-dependent output matches within ``rtol`` of its spread),
    ``"differs"``, or ``"unverified"`` (no output depends on the input enough to tell a wrong
    channel from a right one, so equality proves nothing), or
    ``"narrowed"`` (``narrow_normalized=True``): equal to the masked model with its LayerNorm'd
    stream narrowed, which itself differs from the masked model (``report.deviation``).
    """

    status: str
    max_abs_diff: float = 0.0
    spread: float = 0.0  # RMS variation across inputs of the output that decided the verdict
    relative: float = 0.0  # max |difference| / spread (0 when equal bit for bit)
    inputs: int = 0
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status != "differs"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        text = (f"{self.status} on {self.inputs} input(s): max |difference| {self.max_abs_diff:.3g}, "
                f"{self.relative:.3g} x the output spread {self.spread:.3g}")
        return f"{text} ({self.detail})" if self.detail else text


def check_inputs(dummy_input: Any, n: int = 4, seed: int = 0) -> list[Any]:
    """``dummy_input`` and ``n - 1`` random inputs of the same structure, shapes, dtypes and
    value range (floats: same mean/std, non-negative stays non-negative; integers: drawn in
    the given min..max, so token ids stay valid; bools and constant tensors kept as given)."""
    gen = torch.Generator().manual_seed(seed)
    return [dummy_input] + [_like(dummy_input, gen) for _ in range(max(n, 1) - 1)]


def _like(value: Any, gen: torch.Generator) -> Any:
    if isinstance(value, torch.Tensor):
        if value.numel() < 2 or value.dtype == torch.bool or value.is_complex():
            return value
        if value.is_floating_point():
            v = value.detach().float()
            mean, std = float(v.mean()), float(v.std())
            std = std or max(abs(mean), 1.0)
            new = torch.randn(value.shape, generator=gen) * std + mean
            new = new.abs() if float(v.min()) >= 0 else new
            return new.to(device=value.device, dtype=value.dtype)
        lo, hi = int(value.min()), int(value.max())
        if lo == hi:
            return value
        return torch.randint(lo, hi + 1, value.shape, generator=gen).to(device=value.device, dtype=value.dtype)
    if isinstance(value, dict):
        return {k: _like(v, gen) for k, v in value.items()}
    if isinstance(value, list):
        return [_like(v, gen) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_like(v, gen) for v in value)
    return value


def compare_outputs(refs: list[list[torch.Tensor]], outs: list[list[torch.Tensor]], rtol: float = 1e-3,
                    atol: float = 0.0) -> CheckResult:
    """Compare flat outputs per input (``refs[k][j]``: output j on input k).

    Tolerance per output: ``rtol * spread + atol + FLOAT_NOISE * max|ref|``, where spread is the
    RMS over elements of the output's standard deviation across inputs: a wrong channel moves
    the output by about its spread, whatever its absolute size. Outputs that vary less than
    ``100 * FLOAT_NOISE`` of their size are input-independent: compared against their size, but
    they can only make the result ``"unverified"``, never ``"equal"``.
    """
    k = len(refs)
    if len(outs) != k or any(len(o) != len(r) for r, o in zip(refs, outs)):
        got = len(outs[0]) if outs else 0
        return CheckResult("differs", float("inf"), 0.0, float("inf"), k,
                           f"the model returns {got} tensors instead of {len(refs[0]) if refs else 0}")
    verdicts: list[CheckResult] = []
    for j in range(len(refs[0]) if refs else 0):
        verdicts.append(_compare_one(j, [r[j] for r in refs], [o[j] for o in outs], rtol, atol))
    if not verdicts:
        return CheckResult("unverified", inputs=k, detail="the model returns no tensor")
    for status in ("differs", "equal", "unverified"):
        chosen = [v for v in verdicts if v.status == status]
        if chosen:
            worst = max(chosen, key=lambda v: v.relative)
            worst.max_abs_diff = max(v.max_abs_diff for v in verdicts)
            return worst
    raise AssertionError("unreachable")


def _compare_one(j: int, rs: list[torch.Tensor], os: list[torch.Tensor], rtol: float, atol: float) -> CheckResult:
    k = len(rs)
    for r, o in zip(rs, os):
        if r.shape != o.shape:
            return CheckResult("differs", float("inf"), 0.0, float("inf"), k,
                               f"output {j} has shape {tuple(o.shape)} instead of {tuple(r.shape)}")
    if not rs[0].is_floating_point():
        same = all(torch.equal(r, o) for r, o in zip(rs, os))
        varies = any(not torch.equal(rs[0], r) for r in rs[1:])
        status = "differs" if not same else ("equal" if varies else "unverified")
        return CheckResult(status, 0.0 if same else float("inf"), float(varies), 0.0 if same else float("inf"), k,
                           "" if same else f"output {j} (integers) differs")
    try:
        ref = torch.stack([r.detach().double() for r in rs])
        out = torch.stack([o.detach().double() for o in os])
    except RuntimeError:  # shapes vary with the input: no element-wise spread
        ref = torch.cat([r.detach().double().reshape(-1) for r in rs]).unsqueeze(0)
        out = torch.cat([o.detach().double().reshape(-1) for o in os]).unsqueeze(0)
    if ref.numel() == 0:
        return CheckResult("unverified", inputs=k, detail=f"output {j} is empty")
    err = float((ref - out).abs().max())
    scale = float(ref.abs().max())
    spread = float(ref.var(0, unbiased=False).mean().sqrt()) if ref.shape[0] > 1 else 0.0
    floor = FLOAT_NOISE * scale + atol
    if err != err:  # NaN
        return CheckResult("differs", err, spread, err, k, f"output {j} is NaN")
    if spread <= 100 * FLOAT_NOISE * scale or spread == 0.0:
        ok = err <= rtol * scale + floor
        detail = (f"output {j} does not depend on the input (spread {spread:.3g}, size {scale:.3g})" if ok else
                  f"output {j} differs by {err:.3g} (size {scale:.3g}; it does not depend on the input)")
        return CheckResult("unverified" if ok else "differs", err, spread, err / scale if scale else 0.0, k, detail)
    status = "equal" if err <= rtol * spread + floor else "differs"
    detail = "" if status == "equal" else f"output {j} differs by {err:.3g}, {err / spread:.3g} x its spread across inputs"
    return CheckResult(status, err, spread, err / spread, k, detail)


@torch.inference_mode()
def run_outputs(call: Callable[[Any], Any], inputs: list[Any]) -> list[list[torch.Tensor]]:
    """Flat output tensors (copies) of ``call`` on each input."""
    return [[t.detach().clone() for t in flat_tensors(call(x))] for x in inputs]


# --- what the analysis assumed to be zero --------------------------------------------------------------
Zero = tuple[str, str, int, torch.Tensor, float]  # module, tensor, dim, positions, max |value| there


def unmasked_zeros(model: nn.Module, zeros: list[tuple[str, str, int, torch.Tensor]],
                   kept_of: Callable[[str, int], torch.Tensor | None]) -> list[Zero]:
    """Positions the analysis took as zero (a pruned channel passing a norm or depthwise layer)
    and that speedup removes, but where the user's model holds a non-zero value: removing them
    changes the model. ``kept_of(name, n)`` gives the kept flags of a module's channels."""
    modules = dict(model.named_modules())
    found: list[Zero] = []
    for name, target, dim, dead in zeros:
        tensor = getattr(modules.get(name), target, None)
        if not isinstance(tensor, torch.Tensor) or tensor.shape[dim] != dead.numel():
            continue
        removed = dead.clone()
        kept = kept_of(name, dead.numel())
        if kept is not None:
            removed &= ~kept
        idx = torch.nonzero(removed).reshape(-1)
        if not idx.numel():
            continue
        rows = tensor.detach().index_select(dim, idx.to(tensor.device)).movedim(dim, 0).reshape(idx.numel(), -1)
        size = rows.abs().amax(1).float().cpu()
        if bool((size > 0).any()):
            found.append((name, target, dim, idx[size > 0], float(size.max())))
    return found


def describe_zeros(model: nn.Module, found: list[Zero], limit: int = 5) -> str:
    """One line per module: which of its tensors are non-zero on channels speedup removes."""
    modules = dict(model.named_modules())
    per_module: dict[str, list[str]] = {}
    for name, target, _, idx, size in found:
        per_module.setdefault(name, []).append(f"{target} on {idx.numel()} (max |value| {size:.3g})")
    parts = [f"{type(modules[n]).__name__} '{n}' is non-zero on removed channels: {', '.join(t)}"
             for n, t in list(per_module.items())[:limit]]
    more = f"; and {len(per_module) - limit} more modules" if len(per_module) > limit else ""
    return "; ".join(parts) + more


@contextlib.contextmanager
def zeroed(model: nn.Module, found: list[Zero]) -> Iterator[None]:
    """Temporarily zero the given positions (the model as speedup will make it), then restore."""
    modules = dict(model.named_modules())
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    with torch.no_grad():
        for name, target, dim, idx, _ in found:
            tensor = getattr(modules[name], target)
            saved.append((tensor, tensor.detach().clone()))
            tensor.index_fill_(dim, idx.to(tensor.device), 0)
    try:
        yield
    finally:
        with torch.no_grad():
            for tensor, value in reversed(saved):
                tensor.copy_(value)
