"""Sensitivity analysis: the score of the model with one unit pruned at a time, per sparsity.

Cached on disk by a hash of the weights, the units and the sparsities, because it is the
expensive part of a search and the same dense model is usually searched more than once.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

SPARSITIES = (0.25, 0.5, 0.75, 0.9)


def sensitivity_analysis(n_units: int, score: Callable[[np.ndarray], float], *,
                         sparsities: Sequence[float] = SPARSITIES, cache: str | Path | None = None,
                         progress: Callable[[int, int, str], None] | None = None) -> dict[str, list[float]]:
    """``{'sparsities': [...], 'base': score, 'unit<i>': [score at each sparsity]}``."""
    path = Path(cache) if cache is not None else None
    if path is not None and path.exists():
        data = json.loads(path.read_text())
        if data.get("sparsities") == [float(s) for s in sparsities] and data.get("units") == n_units:
            return data
    out: dict = {"sparsities": [float(s) for s in sparsities], "units": n_units, "base": score(np.zeros(n_units))}
    total = n_units * len(sparsities)
    for u in range(n_units):
        row = []
        for j, s in enumerate(sparsities):
            if progress is not None:
                progress(u * len(sparsities) + j, total, f"unit {u} at {s:.0%}")
            point = np.zeros(n_units)
            point[u] = s
            row.append(float(score(point)))
        out[f"unit{u}"] = row
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out))
    return out


def estimate(table: dict, s: np.ndarray) -> float:
    """Score estimated from single-unit drops (added up): a cheap proxy for a search."""
    xs = [0.0, *table["sparsities"]]
    base = table["base"]
    drop = 0.0
    for u, v in enumerate(s):
        ys = [base, *table[f"unit{u}"]]
        drop += base - float(np.interp(v, xs, ys))
    return base - drop


def weights_hash(model: nn.Module, *extra: object) -> str:
    h = hashlib.sha1()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes() if tensor.dtype != torch.bfloat16
                 else tensor.float().numpy().tobytes())
    h.update(json.dumps(extra, default=str).encode())
    return h.hexdigest()[:16]


__all__ = ["SPARSITIES", "estimate", "sensitivity_analysis", "weights_hash"]
