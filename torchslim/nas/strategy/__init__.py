"""NAS strategies (NNI's ``nni.nas.strategy``): multi-trial and one-shot."""
from torchslim._lazy import lazy_getattr

_LAZY = {
    "Strategy": "torchslim.nas.strategy.base",
    "Random": "torchslim.nas.strategy.base",
    "GridSearch": "torchslim.nas.strategy.base",
    "RegularizedEvolution": "torchslim.nas.strategy.base",
    "TPE": "torchslim.nas.strategy.base",
    "PolicyBasedRL": "torchslim.nas.strategy.base",
    "Filter": "torchslim.nas.strategy.base",
    "Chain": "torchslim.nas.strategy.base",
    "DARTS": "torchslim.nas.strategy.oneshot",
    "RandomOneShot": "torchslim.nas.strategy.oneshot",
    "ENAS": "torchslim.nas.strategy.oneshot",
}
__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
