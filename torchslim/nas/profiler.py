"""Hardware-aware costs of an architecture sample, without training or real compute.

Every profiler freezes the sample from a *meta-device* copy of the space (no weights are
allocated, nothing is computed), so profiling thousands of samples is cheap:

- :class:`NumParamsProfiler`: parameter count;
- :class:`FlopsProfiler`: multiply-accumulates of Conv/Linear layers for an example input
  (shapes propagate on the meta device);
- :class:`LatencyProfiler`: a latency *table* measured on this machine, one entry per
  distinct (layer, input shape); a sample's latency is the sum of its layers' entries.
  Layers not yet in the table are timed once, then looked up (the table saves to JSON).

Use ``profiler.profile(sample)`` in ``strategy.Filter`` (a budget: rejected samples never
train) or in ``export_top_models(objectives=...)`` (a Pareto front).
"""
from __future__ import annotations

import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from torchslim.nas.nn.base import ModelSpace

__all__ = ["Profiler", "NumParamsProfiler", "FlopsProfiler", "LatencyProfiler"]


def _key(sample: Mapping[str, Any]) -> str:
    return json.dumps(sample, sort_keys=True, default=str)


class Profiler:
    """Base: ``profile(sample) -> float``, cached per sample."""

    def __init__(self, model_space: ModelSpace) -> None:
        self.meta_space = copy.deepcopy(model_space).to("meta")
        self.cache: dict[str, float] = {}

    def frozen(self, sample: Mapping[str, Any]) -> nn.Module:
        """``sample`` frozen on the meta device (no memory, no compute)."""
        with torch.device("meta"):
            return self.meta_space.freeze(sample)

    def profile(self, sample: Mapping[str, Any]) -> float:
        key = _key(sample)
        if key not in self.cache:
            self.cache[key] = float(self._profile(self.frozen(sample)))
        return self.cache[key]

    __call__ = profile

    def _profile(self, model: nn.Module) -> float:
        raise NotImplementedError


class NumParamsProfiler(Profiler):
    """Number of parameters of the sample."""

    def _profile(self, model: nn.Module) -> float:
        return sum(p.numel() for p in model.parameters())


def _leaf_calls(model: nn.Module, example: Any) -> list[tuple[nn.Module, tuple[torch.Tensor, ...],
                                                              Any]]:
    """(leaf module, inputs, output) of every leaf call in a meta forward of ``example``."""
    calls: list[tuple[nn.Module, tuple[torch.Tensor, ...], Any]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: calls.append((m, i, o)))
             for m in model.modules() if not list(m.children())]
    try:
        model.eval()
        with torch.no_grad():
            model(*(example if isinstance(example, tuple) else (example,)))
    finally:
        for h in hooks:
            h.remove()
    return calls


def _meta(example: Any) -> Any:
    if isinstance(example, tuple):
        return tuple(_meta(e) for e in example)
    return example.to("meta")


class FlopsProfiler(Profiler):
    """Multiply-accumulates (MACs) of Conv2d / Linear layers for ``example_input``."""

    def __init__(self, model_space: ModelSpace, example_input: Any) -> None:
        super().__init__(model_space)
        self.example = _meta(example_input)

    def _profile(self, model: nn.Module) -> float:
        macs = 0
        for m, _, out in _leaf_calls(model, self.example):
            if isinstance(m, nn.Conv2d):
                k = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]
                macs += out.numel() * k
            elif isinstance(m, nn.Linear):
                macs += out.numel() * m.in_features
        return macs


class LatencyProfiler(Profiler):
    """Predicted latency (ms) of a sample: the sum of its layers' measured latencies."""

    def __init__(self, model_space: ModelSpace, example_input: Any,
                 table: str | Path | Mapping[str, float] | None = None, repeats: int = 20) -> None:
        super().__init__(model_space)
        self.example = _meta(example_input)
        self.repeats = repeats
        if isinstance(table, (str, Path)):
            self.table: dict[str, float] = (json.loads(Path(table).read_text())
                                            if Path(table).exists() else {})
        else:
            self.table = dict(table or {})
        self.measured = 0

    def _measure(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> float:
        real = copy.deepcopy(module).to_empty(device="cpu")
        for p in real.parameters():
            nn.init.normal_(p, std=0.02)  # deterministic-ish values (no NaN/denormal slowdowns)
        args = tuple(torch.randn(i.shape, dtype=i.dtype) if i.is_floating_point()
                     else torch.zeros(i.shape, dtype=i.dtype) for i in inputs)
        real.eval()
        times = []
        with torch.no_grad():
            real(*args)  # warm-up
            for _ in range(self.repeats):
                start = time.perf_counter()
                real(*args)
                times.append(time.perf_counter() - start)
        self.measured += 1
        return 1e3 * statistics.median(times)

    def _profile(self, model: nn.Module) -> float:
        total = 0.0
        for m, inputs, _ in _leaf_calls(model, self.example):
            key = f"{m!r}|{[tuple(i.shape) for i in inputs if isinstance(i, torch.Tensor)]}"
            if key not in self.table:
                tensors = tuple(i for i in inputs if isinstance(i, torch.Tensor))
                self.table[key] = self._measure(m, tensors)
            total += self.table[key]
        return total

    def save(self, path: str | Path) -> None:
        """Write the latency table (layer|shapes -> ms) as JSON."""
        Path(path).write_text(json.dumps(self.table, indent=1, sort_keys=True))
