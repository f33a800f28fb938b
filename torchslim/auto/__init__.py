"""Auto-compression to a budget: per-layer sparsities searched to meet a latency, params or
MACs target, then prune → speedup → fine-tune → (int8) → a verified, smaller model."""
from __future__ import annotations

from torchslim._lazy import lazy_getattr

_LAZY = {
    "compress": "torchslim.auto.pipeline",
    "AutoCompressResult": "torchslim.auto.pipeline",
    "Target": "torchslim.auto.target",
    "CostModel": "torchslim.auto.units",
    "LatencyTable": "torchslim.auto.latency",
    "sensitivity_analysis": "torchslim.auto.sensitivity",
    "SensitivityAnalysis": "torchslim.auto.nni",
    "AutoCompressPruner": "torchslim.auto.nni",
    "AMCPruner": "torchslim.auto.nni",
    "SimulatedAnnealingPruner": "torchslim.auto.nni",
    "NetAdaptPruner": "torchslim.auto.nni",
    "SEARCHES": "torchslim.auto.search",
    "CompressExperiment": "torchslim.auto.experiment",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
