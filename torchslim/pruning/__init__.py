"""Pruning: importance scorer × sparsity allocator × schedule.

Public names are loaded on first use so that ``import torchslim.pruning`` stays cheap and
capabilities that are still being built do not break the others.
"""
from __future__ import annotations

from torchslim._lazy import lazy_getattr
from torchslim.pruning.nni import ALIASES
from torchslim.utils.legacy import deprecated_aliases

_LAZY = {
    "Pruner": "torchslim.pruning.base",
    "CompressResult": "torchslim.pruning.base",
    "LevelPruner": "torchslim.pruning.pruners",
    "L1NormPruner": "torchslim.pruning.pruners",
    "L2NormPruner": "torchslim.pruning.pruners",
    "FPGMPruner": "torchslim.pruning.pruners",
    "ScoreContext": "torchslim.pruning.importance",
    "register_importance": "torchslim.pruning.importance",
    "get_importance": "torchslim.pruning.importance",
    "available_importances": "torchslim.pruning.importance",
    "auto_set_dependency_group_ids": "torchslim.pruning.dependency",
    # data-driven pruners
    "SlimPruner": "torchslim.pruning.data_pruners",
    "TaylorPruner": "torchslim.pruning.data_pruners",
    "ActivationAPoZRankPruner": "torchslim.pruning.data_pruners",
    "ActivationMeanRankPruner": "torchslim.pruning.data_pruners",
    "MovementPruner": "torchslim.pruning.data_pruners",
    "DataPruner": "torchslim.pruning.data_pruners",
    "register_data_importance": "torchslim.pruning.data_importance",
    "Collector": "torchslim.pruning.data_importance",
    "GradientCollector": "torchslim.pruning.data_importance",
    "ActivationCollector": "torchslim.pruning.data_importance",
    "MovementCollector": "torchslim.pruning.data_importance",
    # schedules
    "LinearPruner": "torchslim.pruning.schedules",
    "AGPPruner": "torchslim.pruning.schedules",
    "LotteryTicketPruner": "torchslim.pruning.schedules",
    "ScheduledPruner": "torchslim.pruning.schedules",
}

__all__ = sorted(_LAZY)


_modern = lazy_getattr(__name__, _LAZY, globals())
_legacy = deprecated_aliases(ALIASES, __name__)  # NNI's old names: they warn on every access


def __getattr__(name: str):
    return _legacy(name) if name in ALIASES else _modern(name)
