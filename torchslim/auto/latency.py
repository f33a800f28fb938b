"""A per-layer latency table: predicted latency of a per-unit sparsity without building it.

Each Conv2d / Linear is timed alone, on its real input shape, at a few widths; its latency
is fitted as ``a + b * x`` where ``x`` is the share of its MACs kept (in × out fraction, or
out fraction for a depthwise conv). What the layers do not explain (norms, activations,
pooling, adds: memory-bound work) is the *remainder*, scaled with the kept share of the
output activations. The table is cached on disk, keyed by the layer shapes, batch and
threads, so a search — or a second search — never rebuilds the model to time a candidate.
After a real model is built and timed, :meth:`LatencyTable.calibrate` corrects the table:
predicted shares of dense are mapped through ``1 - beta * (1 - share)``, with ``beta`` fitted
to every measured point (a secant step per build), which fixes a table whose fixed costs
are off — the usual error when layers are timed alone on a busy machine.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from torchslim.auto.units import CostModel
from torchslim.utils.inputs import as_args
from torchslim.utils.metrics import measure_latency

FRACTIONS = (1.0, 0.5, 0.25)


class LatencyTable:
    """Predicts the latency (ms) of ``model`` pruned to a per-unit sparsity.

    Parameters
    ----------
    model, example_input: the dense model and the input the latency is about (its batch).
    cost: the :class:`CostModel` of the same model (defines the units).
    threads: torch threads while timing (the deployment setting).
    repeats: timed calls per measurement (the median of the fastest quarter is kept).
    cache_dir: where tables are kept between runs (None: no cache).
    progress: called with ``(done, total, layer)`` while timing.
    """

    def __init__(self, model: nn.Module, example_input: Any, cost: CostModel, *, threads: int = 2,
                 repeats: int = 10, cache_dir: str | Path | None = None,
                 progress: Callable[[int, int, str], None] | None = None) -> None:
        self.cost = cost
        self.threads = threads
        shapes = _input_shapes(model, example_input)
        modules = dict(model.named_modules())
        self.rows: dict[str, dict[str, float]] = {}
        key = _cache_key(model, shapes, threads)
        cache = Path(cache_dir) / f"latency-{key}.json" if cache_dir is not None else None
        if cache is not None and cache.exists():
            data = json.loads(cache.read_text())
            self.rows, self.dense_ms, self.remainder_ms = data["rows"], data["dense_ms"], data["remainder_ms"]
        else:
            timed = [c for c in cost.modules if c.name in shapes and isinstance(modules[c.name], (nn.Conv2d, nn.Linear))]
            for i, mc in enumerate(timed):
                if progress is not None:
                    progress(i, len(timed), mc.name)
                self.rows[mc.name] = _fit_layer(modules[mc.name], shapes[mc.name], mc, threads, repeats)
            self.dense_ms = measure_latency(model, example_input, threads=threads, repeats=max(3, repeats // 2))
            self.remainder_ms = max(0.0, self.dense_ms - sum(r["a"] + r["b"] for r in self.rows.values()))
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps({"rows": self.rows, "dense_ms": self.dense_ms,
                                             "remainder_ms": self.remainder_ms}))
        self.beta = 1.0
        self.points: list[tuple[float, float]] = []  # (raw predicted share, measured share)
        names = [c.name for c in cost.modules]
        self._index = np.array([names.index(n) for n in self.rows])
        self._a = np.array([r["a"] for r in self.rows.values()])
        self._b = np.array([r["b"] for r in self.rows.values()])
        self._depthwise = np.array([bool(r.get("depthwise")) for r in self.rows.values()])
        out_sizes = np.array([float(shapes.get(n, {}).get("out_numel", 0)) for n in names])
        self._act_w = out_sizes / out_sizes.sum() if out_sizes.sum() else np.zeros(len(names))
        self._raw_dense = self.raw(np.zeros(len(cost.units)))

    def predict(self, sparsity: Sequence[float] | np.ndarray) -> float:
        """Predicted latency in ms (after :meth:`calibrate`, corrected by measurements)."""
        share = self.raw(sparsity) / self._raw_dense
        return self.dense_ms * max(1.0 - self.beta * (1.0 - share), 0.0)

    def raw(self, sparsity: Sequence[float] | np.ndarray) -> float:
        """The table's own estimate in ms (sum of fitted layers and the scaled remainder)."""
        keep = self.cost.keep_fractions(sparsity)
        fin, fout = self.cost.fractions(keep)
        if len(self._index):
            x = np.where(self._depthwise, fout[self._index], fin[self._index] * fout[self._index])
            layers = float(self._a @ np.ones_like(x) + self._b @ x)
        else:
            layers = 0.0
        act = float(self._act_w @ fout) if self._act_w.sum() else 1.0
        return layers + self.remainder_ms * act

    def calibrate(self, sparsity: Sequence[float] | np.ndarray, measured_share: float) -> None:
        """Add a measurement: the built model at ``sparsity`` ran at ``measured_share`` of the
        dense model's latency (both timed in the same run)."""
        share = self.raw(sparsity) / self._raw_dense
        self.points.append((share, float(measured_share)))
        num = sum((1 - p) * (1 - m) for p, m in self.points)
        den = sum((1 - p) ** 2 for p, _ in self.points)
        if den > 1e-12 and num > 0:
            self.beta = num / den

    def to_dict(self) -> dict[str, Any]:
        return {"dense_ms": self.dense_ms, "remainder_ms": self.remainder_ms, "beta": self.beta,
                "calibration_points": self.points,
                "threads": self.threads, "layers": self.rows}


def _input_shapes(model: nn.Module, example_input: Any) -> dict[str, dict[str, Any]]:
    shapes: dict[str, dict[str, Any]] = {}
    handles = []
    for name, module in model.named_modules():
        def hook(mod: nn.Module, args: tuple, out: Any, name: str = name) -> None:
            if name not in shapes and args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor):
                shapes[name] = {"in": list(args[0].shape), "out_numel": out.numel()}
        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(*as_args(example_input))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    shapes.pop("", None)
    return shapes


def _fit_layer(module: nn.Module, shape: dict[str, Any], mc: Any, threads: int, repeats: int) -> dict[str, float]:
    in_prunable, out_prunable = mc.in_c < 1.0, mc.out_c < 1.0
    depthwise = isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels
    xs, ys = [], []
    for f in FRACTIONS:
        fin = f if in_prunable else 1.0
        fout = f if out_prunable else 1.0
        layer, x_in = _resized(module, shape["in"], fin, fout, depthwise)
        kept_in = x_in.shape[1] / shape["in"][1] if isinstance(module, nn.Conv2d) else x_in.shape[-1] / shape["in"][-1]
        kept_out = (layer.out_channels / module.out_channels if isinstance(module, nn.Conv2d)
                    else layer.out_features / module.out_features)
        xs.append(kept_out if depthwise else kept_in * kept_out)
        ys.append(measure_latency(layer, x_in, threads=threads, warmup=2, repeats=repeats))
        if not (in_prunable or out_prunable):
            break
    if len(xs) == 1:
        return {"a": 0.0, "b": ys[0], "depthwise": depthwise}
    b, a = np.polyfit(np.array(xs), np.array(ys), 1)
    b = max(float(b), 0.0)
    a = max(float(np.mean(ys) - b * np.mean(xs)), 0.0)
    return {"a": a, "b": b, "depthwise": depthwise}


def _resized(module: nn.Module, in_shape: list[int], fin: float, fout: float, depthwise: bool) -> tuple[nn.Module, torch.Tensor]:
    if isinstance(module, nn.Linear):
        i = max(1, round(module.in_features * fin))
        o = max(1, round(module.out_features * fout))
        layer = nn.Linear(i, o, bias=module.bias is not None)
        return layer.eval(), torch.randn(*in_shape[:-1], i)
    g = module.groups
    if depthwise:
        c = max(1, round(module.out_channels * fout))
        i, o, g = c, c, c
    else:
        i = max(g, round(module.in_channels * fin / g) * g)
        o = max(g, round(module.out_channels * fout / g) * g)
    layer = nn.Conv2d(i, o, module.kernel_size, module.stride, module.padding, module.dilation, g,
                      module.bias is not None, module.padding_mode)
    return layer.eval(), torch.randn(in_shape[0], i, *in_shape[2:])


def _cache_key(model: nn.Module, shapes: dict[str, dict[str, Any]], threads: int) -> str:
    desc = [type(model).__name__, torch.__version__, threads, sorted((n, s["in"]) for n, s in shapes.items()),
            [(n, tuple(p.shape)) for n, p in model.named_parameters()]]
    return hashlib.sha1(json.dumps(desc, default=str).encode()).hexdigest()[:16]


__all__ = ["LatencyTable"]
