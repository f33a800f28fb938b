"""torchslim: make PyTorch models smaller and faster, and search for the best way to do it.

The top-level import is deliberately light (no torch): trial scripts of an experiment
import ``torchslim`` for ``get_next_parameter`` / ``report_final_result`` and must start
fast. Everything else is loaded on first attribute access.
"""
from __future__ import annotations

from torchslim._lazy import lazy_getattr
from torchslim.errors import ConfigError, MissingDependencyError, SpeedupError, TorchSlimError

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily)
_LAZY = {
    # trial API (stdlib only)
    "get_next_parameter": "torchslim.experiment.trial",
    "get_parameters": "torchslim.experiment.trial",
    "report_intermediate_result": "torchslim.experiment.trial",
    "report_final_result": "torchslim.experiment.trial",
    "get_trial_id": "torchslim.experiment.trial",
    "get_experiment_id": "torchslim.experiment.trial",
    # search-space helpers
    "choice": "torchslim.experiment.searchspace",
    "randint": "torchslim.experiment.searchspace",
    "uniform": "torchslim.experiment.searchspace",
    "quniform": "torchslim.experiment.searchspace",
    "loguniform": "torchslim.experiment.searchspace",
    "qloguniform": "torchslim.experiment.searchspace",
    "normal": "torchslim.experiment.searchspace",
    "qnormal": "torchslim.experiment.searchspace",
    "lognormal": "torchslim.experiment.searchspace",
    "qlognormal": "torchslim.experiment.searchspace",
    # training-loop protocol
    "TorchEvaluator": "torchslim.evaluator",
    # NNI's nni.trace (returns its argument; see torchslim.nni)
    "trace": "torchslim.nni",
}

__all__ = ["ConfigError", "MissingDependencyError", "SpeedupError", "TorchSlimError", *_LAZY]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
