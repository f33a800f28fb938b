"""One-shot pruners: each is a scorer and a default granularity, nothing more."""
from __future__ import annotations

from torchslim.pruning.base import Pruner


class LevelPruner(Pruner):
    """Fine-grained magnitude pruning: the smallest ``|w|`` of each layer become zero."""

    default_importance = "level"
    default_granularity = "fine"


class L1NormPruner(Pruner):
    """Structured: whole output channels / neurons with the smallest L1 norm."""

    default_importance = "l1"


class L2NormPruner(Pruner):
    """Structured: whole output channels / neurons with the smallest L2 norm."""

    default_importance = "l2"


class FPGMPruner(Pruner):
    """Structured: channels nearest the geometric median of their layer (He et al., 2019)."""

    default_importance = "fpgm"

