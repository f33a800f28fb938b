"""Sparsity that grows over time: the target ratios of a pruner, scaled by a schedule."""
from __future__ import annotations

from typing import Any, Callable

Key = tuple[str, str]


def cubic(fraction: float) -> float:
    """AGP's curve (Zhu & Gupta, 2017): fast early, flat towards the end; 0 → 0, 1 → 1."""
    fraction = min(max(fraction, 0.0), 1.0)
    return 1.0 - (1.0 - fraction) ** 3


def linear(fraction: float) -> float:
    return min(max(fraction, 0.0), 1.0)


class TargetRatios:
    """The final ``sparse_ratio`` of each target of a pruner, and a way to ask for less.

    ``set(ratio_of)`` writes ``ratio_of(final)`` into the pruner's settings; ``finish()``
    restores the final ratios. Targets given a ``sparse_threshold`` are left alone.
    """

    def __init__(self, pruner: Any) -> None:
        self.pruner = pruner
        self.final: dict[Key, float] = {
            (name, target): settings["sparse_ratio"]
            for name, targets in pruner.settings.items()
            for target, settings in targets.items()
            if "sparse_ratio" in settings
        }

    def set(self, ratio_of: Callable[[float], float]) -> None:
        for (name, target), final in self.final.items():
            self.pruner.settings[name][target]["sparse_ratio"] = min(final, max(0.0, ratio_of(final)))

    def scale(self, fraction: float) -> None:
        self.set(lambda final: final * fraction)

    def finish(self) -> None:
        self.set(lambda final: final)


def lottery_ratio(final: float, step: int, total: int) -> float:
    """Prune the same share of the *remaining* weights at each of ``total`` steps."""
    if step >= total:
        return final
    return 1.0 - (1.0 - final) ** (step / total) if final < 1.0 else step / total


def is_due(step: int, interval: int) -> bool:
    return interval > 0 and step > 0 and step % interval == 0


def train_hooked(compressor: Any, max_steps: int | None, max_epochs: int | None) -> None:
    """``start()`` a step-driven compressor, train through its evaluator, then ``finish()``.

    If training raises, the compressor is unhooked (without pruning to the final sparsity).
    """
    compressor.start()
    try:
        compressor.evaluator.train(max_steps=max_steps, max_epochs=max_epochs)
    except BaseException:
        compressor._unhook()
        raise
    compressor.finish()
