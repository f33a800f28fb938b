"""Experiments: search spaces, tuners, trials and their storage (NNI's vocabulary).

Importing this package is light (stdlib only) because trial code imports
``torchslim.experiment.trial`` through it; the rest loads on first use.
"""
from __future__ import annotations

from torchslim._lazy import lazy_getattr

_LAZY = {
    "Experiment": "torchslim.experiment.experiment",
    "ExperimentConfig": "torchslim.experiment.config",
    "load_config": "torchslim.experiment.config",
    "SearchSpace": "torchslim.experiment.searchspace",
    "load_search_space": "torchslim.experiment.searchspace",
    "create_tuner": "torchslim.experiment.tuners",
    "TrialRecord": "torchslim.experiment.store",
    "MedianStopAssessor": "torchslim.experiment.assessor",
    "CurvefittingAssessor": "torchslim.experiment.curvefitting",
    "pareto_front": "torchslim.experiment.pareto",
    "Tuner": "torchslim.experiment.custom",
    "Assessor": "torchslim.experiment.custom",
    "AssessResult": "torchslim.experiment.custom",
    "NoMoreTrialError": "torchslim.experiment.custom",
}

__all__ = list(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
