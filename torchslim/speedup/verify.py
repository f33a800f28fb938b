"""Compare the shrunk model with the masked reference, naming the first layer that differs."""
from __future__ import annotations

import dataclasses

from typing import Any, Callable

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
