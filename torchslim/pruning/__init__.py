"""Pruning: importance scorer × sparsity allocator × schedule.

Public names are loaded on first use so that ``import torchslim.pruning`` stays cheap and
capabilities that are still being built do not break the others.
"""
from __future__ import annotations

from torchslim._lazy import lazy_getattr

_LAZY = {
    "Pruner": "torchslim.pruning.base",
    "CompressResult": "torchslim.pruning.base",
    "LevelPruner": "torchslim.pruning.pruners",
    "L1NormPruner": "torchslim.pruning.pruners",
    "L2NormPruner": "torchslim.pruning.pruners",
    "FPGMPruner": "torchslim.pruning.pruners",
    "L1FilterPruner": "torchslim.pruning.pruners",
    "L2FilterPruner": "torchslim.pruning.pruners",
    "ScoreContext": "torchslim.pruning.importance",
    "register_importance": "torchslim.pruning.importance",
    "get_importance": "torchslim.pruning.importance",
    "available_importances": "torchslim.pruning.importance",
    "auto_set_dependency_group_ids": "torchslim.pruning.dependency",
    # data-driven pruners
    "SlimPruner": "torchslim.pruning.data_pruners",
    "TaylorPruner": "torchslim.pruning.data_pruners",
    "TaylorFOWeightPruner": "torchslim.pruning.data_pruners",
    "ActivationAPoZRankPruner": "torchslim.pruning.data_pruners",
    "ActivationMeanRankPruner": "torchslim.pruning.data_pruners",
    "MovementPruner": "torchslim.pruning.data_pruners",
    "DataPruner": "torchslim.pruning.data_pruners",
    "TaylorFOWeightFilterPruner": "torchslim.pruning.data_pruners",
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


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
