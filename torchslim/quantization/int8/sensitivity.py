"""Which layers hurt when quantized: per-layer error on the user's data, and mixed precision.

:func:`sensitivity` quantizes one calibrated layer at a time (its calibration entries, simulated
with the same fake-quant ops the int8 export uses) and measures how far the model output moves
from fp32 on the user's batches. :func:`deploy_mixed` keeps the worst ``k`` layers in fp32 and
deploys the rest as int8, timing both int8 models side by side to show what the accuracy costs.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from torchslim.quantization.config import parse_dtype
from torchslim.quantization.hooks import ModuleQuant, attach, detach, quant_state
from torchslim.quantization.int8.common import example_args, first_output, float_copy
from torchslim.quantization.int8.dynamic import is_dynamic_entry
from torchslim.quantization.int8.onnx_qdq import qdq_copy
from torchslim.quantization.observers import qparams


class _DynamicQuant:
    """Per-batch range fake quantization (what a dynamic int8 kernel does to its input)."""

    observe_only = False

    def __call__(self, x: torch.Tensor, module: nn.Module | None = None, target: str = "") -> torch.Tensor:
        scale, zero_point = qparams(x.detach().min(), x.detach().max(), parse_dtype("uint8"), "affine")
        return torch.fake_quantize_per_tensor_affine(x, float(scale), int(zero_point), 0, 255)


@dataclass
class SensitivityReport:
    """Per-layer relative output error (``rows``, worst first) and that of the fully quantized model."""

    rows: list[dict[str, Any]]
    total_rel_err: float
    batches: int
    extra: dict[str, Any] = field(default_factory=dict)

    def worst(self, k: int) -> list[str]:
        return [r["layer"] for r in self.rows[:k]]

    def without(self, calibration: Mapping[str, Any], k: int) -> dict[str, Any]:
        """``calibration`` minus the ``k`` worst layers (deploy leaves layers without entries in fp32)."""
        drop = set(self.worst(k))
        return {name: entries for name, entries in calibration.items() if name not in drop}

    def to_markdown(self, top: int = 10) -> str:
        lines = [f"All {len(self.rows)} layers quantized: relative output error {self.total_rel_err:.4f} "
                 f"({self.batches} batches).", "", "| rank | layer | rel. output error, this layer alone |", "|---|---|---|"]
        lines += [f"| {i + 1} | {r['layer']} | {r['rel_err']:.4f} |" for i, r in enumerate(self.rows[:top])]
        return "\n".join(lines)


def _error(model: nn.Module, batches: list[tuple], refs: list[torch.Tensor]) -> float:
    num = den = 0.0
    with torch.no_grad():
        for args, ref in zip(batches, refs):
            out = first_output(model(*args)).float()
            num += float((out - ref).pow(2).sum())
            den += float(ref.pow(2).sum())
    return (num / max(den, 1e-24)) ** 0.5


def sensitivity(model: nn.Module, calibration: Mapping[str, Mapping[str, Any]], data: Iterable[Any],
                max_batches: int = 4) -> SensitivityReport:
    """Relative error of the model output vs fp32 when only one layer is quantized, for every layer.

    ``data``: batches of the model's inputs (tensors, tuples, or ``(inputs, labels)`` pairs whose
    first item is taken); the first ``max_batches`` are used.
    """
    batches = []
    for batch in data:
        if len(batches) >= max_batches:
            break
        batches.append(example_args(batch[0] if isinstance(batch, (list, tuple)) and len(batch) == 2
                                    and not torch.is_floating_point(batch[1]) and batch[1].dim() == 1 else batch))
    if not batches:
        raise ValueError("sensitivity() needs at least one batch of data")
    copy = qdq_copy(model, calibration)  # BN folded where QAT folded it; fake quant at every calibrated tensor
    modules = dict(copy.named_modules())
    states = {}
    for name, entries in calibration.items():
        module = modules.get(name)
        if module is None:
            continue
        state = quant_state(module)
        dynamic = [t for t, e in entries.items() if t.startswith("_input") and is_dynamic_entry(e)]
        if state is None and not dynamic:
            continue
        if state is not None:
            detach(module)
        states[name] = (module, state, dynamic)
    with torch.no_grad():
        refs = [first_output(copy(*args)).float() for args in batches]
    rows = []
    for name, (module, state, dynamic) in states.items():
        _attach(name, module, state, dynamic)
        rows.append({"layer": name, "rel_err": _error(copy, batches, refs)})
        detach(module)
    for name, (module, state, dynamic) in states.items():
        _attach(name, module, state, dynamic)
    total = _error(copy, batches, refs)
    rows.sort(key=lambda r: r["rel_err"], reverse=True)
    return SensitivityReport(rows, total, len(batches))


def _attach(name: str, module: nn.Module, state: Any, dynamic: list[str]) -> None:
    targets = dict(state.targets) if state is not None else {}
    targets.update({t: _DynamicQuant() for t in dynamic})
    attach(module, ModuleQuant(name, targets))


def deploy_mixed(model: nn.Module, calibration: Mapping[str, Mapping[str, Any]], example_input: Any,
                 data: Iterable[Any], keep_fp32: int, backend: str = "auto", rounds: int = 5,
                 **kwargs: Any) -> nn.Module:
    """Deploy with the ``keep_fp32`` most sensitive layers in fp32; ``result.mixed_precision`` holds the
    sensitivity report, the kept layers, and both int8 models' error vs fp32 and median latency on
    ``example_input`` (timed in interleaved rounds)."""
    from torchslim.quantization.int8 import deploy

    report = sensitivity(model, calibration, data)
    full = deploy(model, calibration, example_input, backend=backend, **kwargs)
    mixed = deploy(model, report.without(calibration, keep_fp32), example_input, backend=backend, **kwargs)
    args = example_args(example_input)
    plain = float_copy(model)
    with torch.no_grad():
        ref = first_output(plain(*args)).float()
    samples: dict[str, list[float]] = {"int8": [], "mixed": []}
    for m in (full, mixed):
        m(*args)  # warm-up
    for _ in range(rounds):
        for key, m in (("int8", full), ("mixed", mixed)):
            t0 = time.perf_counter()
            m(*args)
            samples[key].append((time.perf_counter() - t0) * 1000)
    errors = {key: float((first_output(m(*args)).float() - ref).norm() / ref.norm().clamp_min(1e-12))
              for key, m in (("int8", full), ("mixed", mixed))}
    ms = {key: statistics.median(v) for key, v in samples.items()}
    mixed.mixed_precision = {
        "kept_fp32": report.worst(keep_fp32), "report": report,
        "ms_int8": ms["int8"], "ms_mixed": ms["mixed"], "slowdown": ms["mixed"] / ms["int8"],
        "rel_err_int8": errors["int8"], "rel_err_mixed": errors["mixed"],
    }
    return mixed


__all__ = ["SensitivityReport", "deploy_mixed", "sensitivity"]
