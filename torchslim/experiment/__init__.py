"""Experiments: search spaces, tuners, trials and their storage (NNI's vocabulary).

Importing this package is light (stdlib only) because trial code imports
``torchslim.experiment.trial`` through it; the rest loads on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Experiment": "torchslim.experiment.experiment",
    "ExperimentConfig": "torchslim.experiment.config",
    "load_config": "torchslim.experiment.config",
    "SearchSpace": "torchslim.experiment.searchspace",
    "load_search_space": "torchslim.experiment.searchspace",
    "create_tuner": "torchslim.experiment.tuners",
    "TrialRecord": "torchslim.experiment.store",
    "MedianStopAssessor": "torchslim.experiment.assessor",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'torchslim.experiment' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
