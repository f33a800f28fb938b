"""Neural architecture search (NNI's ``nni.nas``, module paths one to one).

``torchslim.nas.nn`` (spaces and mutables), ``.strategy``, ``.evaluator``, ``.experiment``,
``.profiler`` (hardware-aware costs) and ``.benchmark`` (a tabular MNIST benchmark).
"""
from torchslim._lazy import lazy_getattr

_LAZY = {
    **{name: "torchslim.nas.nn" for name in (
        "ModelSpace", "Mutable", "LayerChoice", "InputChoice", "Repeat", "Cell", "MutableLinear",
        "MutableConv2d", "MutableDropout", "MutableBatchNorm2d", "MutableLayerNorm")},
    "NasExperiment": "torchslim.nas.experiment",
    "NasExperimentConfig": "torchslim.nas.experiment",
    "FunctionalEvaluator": "torchslim.nas.evaluator",
    "Classification": "torchslim.nas.evaluator",
    "NumParamsProfiler": "torchslim.nas.profiler",
    "FlopsProfiler": "torchslim.nas.profiler",
    "LatencyProfiler": "torchslim.nas.profiler",
    "pareto_front": "torchslim.nas.pareto",
    "Categorical": "torchslim.experiment.searchspace",
    "choice": "torchslim.experiment.searchspace",
}
__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
