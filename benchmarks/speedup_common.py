"""Shared by the speedup benchmarks: the torchslim pipeline they time."""
from __future__ import annotations

import time
from typing import Any


def prune_and_speedup(model: Any, x: Any, ratio: float, exclude: str, narrow_normalized: bool = False,
                      op_types: tuple[str, ...] = ("Conv2d", "Linear")) -> tuple[dict[str, float], Any]:
    """Dependency-aware L1 pruning of every Conv2d/Linear but ``exclude``, then ModelSpeedup
    (``narrow_normalized``: LayerNorm'd streams narrowed too, on both sides).

    Returns the seconds spent per step and the ModelSpeedup (its ``report`` holds the check).
    """
    from torchslim.pruning import L1NormPruner, auto_set_dependency_group_ids
    from torchslim.speedup import ModelSpeedup

    config = [{"op_types": list(op_types), "sparse_ratio": ratio}, {"op_names": [exclude], "exclude": True}]
    t0 = time.perf_counter()
    config = auto_set_dependency_group_ids(model, config, x, narrow_normalized=narrow_normalized)
    t1 = time.perf_counter()
    _, masks = L1NormPruner(model, config, dummy_input=x).compress()
    t2 = time.perf_counter()
    speedup = ModelSpeedup(model, x, masks, narrow_normalized=narrow_normalized)
    speedup.speedup_model()
    t3 = time.perf_counter()
    return {"groups_s": t1 - t0, "prune_s": t2 - t1, "speedup_s": t3 - t2}, speedup
