"""Pruners that rank blocks by data: gradients, activations, scaling factors, weight movement.

Each is a :class:`DataPruner`: it starts its scorer's collector, runs the user's training
loop through the evaluator for ``training_steps`` optimizer steps, then scores and allocates
like any pruner. Inside a schedule (AGP, linear, lottery ticket) the collector stays on
while the schedule trains, and each pruning step uses what was gathered since the last.

The form is NNI 3.0's ``TaylorPruner(model, config_list, evaluator, training_steps=100)``;
v2's ``(model, config_list, optimizer, trainer, criterion, batches)`` is translated by
:mod:`torchslim.pruning.nni`.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from torchslim.errors import ConfigError
from torchslim.evaluator import Evaluator, Handle, as_evaluator
from torchslim.pruning.base import CompressResult, Masks, Pruner
from torchslim.pruning.data_importance import ActivationCollector, Collector, collector_of, targets_of
from torchslim.pruning.progress import TargetRatios, cubic, train_hooked

_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)


class DataPruner(Pruner):
    """A pruner whose importance needs training statistics (any data scorer, by name).

    Parameters
    ----------
    model, config_list: as for every pruner.
    evaluator: a :class:`torchslim.TorchEvaluator`.
    training_steps: optimizer steps of the user's loop run to gather statistics.
    importance: a registered data scorer ('taylor', 'apoz', 'mean_activation', ...).
    """

    default_importance = "taylor"
    default_training_steps = 20

    def __init__(
        self,
        model: nn.Module,
        config_list: Sequence[Mapping[str, Any]],
        evaluator: Any = None,
        training_steps: int | None = None,
        *,
        dummy_input: Any = None,
        **kwargs: Any,
    ) -> None:
        evaluator = as_evaluator(evaluator)
        super().__init__(model, config_list, evaluator, dummy_input=dummy_input, **kwargs)
        self.training_steps = int(training_steps or self.default_training_steps)
        if self.evaluator is not None:
            self.evaluator.bind_model(model)
        self._collector: Collector | None = None
        self._patches: list[Handle] = []

    # --- data collection (also driven by schedules) -------------------------------------------------
    def make_collector(self) -> Collector | None:
        factory = collector_of(self.scorer)
        return factory() if factory is not None else None

    def training_patches(self) -> list[Handle]:
        """Loss patches to hold while training (e.g. a sparsity regulariser); none by default."""
        return []

    @property
    def collecting(self) -> bool:
        return self._collector is not None or bool(self._patches)

    def start_collecting(self) -> None:
        """Start gathering statistics (and any loss patch) during the evaluator's training."""
        if self.collecting:
            return
        self._require_evaluator()
        self._collector = self.make_collector()
        if self._collector is not None:
            self._collector.start(targets_of(self), self.evaluator)
        self._patches = self.training_patches()

    def stop_collecting(self) -> None:
        if self._collector is not None:
            self._collector.stop()
        for handle in self._patches:
            handle.remove()
        self._collector, self._patches = None, []

    def collect_data(self) -> dict[tuple[str, str], Any]:
        if self.collecting:  # a schedule is training: use what was gathered since the last step
            return self._read_collector()
        self.start_collecting()
        try:
            self.evaluator.train(max_steps=self.training_steps)
            return self._read_collector()
        finally:
            self.stop_collecting()

    def _read_collector(self) -> dict[tuple[str, str], Any]:
        if self._collector is None:
            return {}
        data = self._collector.data()
        if getattr(self._collector, "reset_on_read", True):
            self._collector.reset()
        return data

    def _require_evaluator(self) -> None:
        if self.evaluator is None:
            raise ValueError(
                f"{type(self).__name__} needs training data: pass an evaluator "
                "(torchslim.TorchEvaluator(train_func, optimizer, training_step)) or v2's optimizer, trainer, criterion"
            )


class TaylorPruner(DataPruner):
    """Structured: channels whose removal changes the loss least, by a first-order Taylor
    expansion ``(w * dL/dw)^2`` averaged over ``training_steps`` (Molchanov et al., 2019)."""

    default_importance = "taylor"


class _ActivationPruner(DataPruner):
    def __init__(self, *args: Any, activation: Callable[[torch.Tensor], torch.Tensor] | str = "relu",
                 **kwargs: Any) -> None:
        self.activation = activation
        super().__init__(*args, **kwargs)

    def make_collector(self) -> Collector:
        return ActivationCollector(self.activation)


class ActivationAPoZRankPruner(_ActivationPruner):
    """Structured: channels whose activation is most often zero (APoZ, Hu et al., 2016)."""

    default_importance = "apoz"


class ActivationMeanRankPruner(_ActivationPruner):
    """Structured: channels with the smallest mean activation (Molchanov et al., 2017)."""

    default_importance = "mean_activation"


class SlimPruner(DataPruner):
    """Network Slimming (Liu et al., 2017): train with an L1 penalty on normalisation scaling
    factors, then drop the channels with the smallest ``|gamma|``.

    Select normalisation layers (``op_types: ['BatchNorm2d']``); their weight and bias are
    masked (a shared ``global_group_id`` ranks the layers together). The penalty trains for
    ``training_steps`` optimizer steps, or ``training_epochs`` epochs when given.
    """

    default_importance = "slim"

    def __init__(self, model: nn.Module, config_list: Sequence[Mapping[str, Any]], evaluator: Any = None,
                 training_steps: int | None = None, *, regular_scale: float = 1e-4,
                 training_epochs: int | None = None, **kwargs: Any) -> None:
        self.regular_scale = regular_scale
        self.training_epochs = training_epochs
        super().__init__(model, config_list, evaluator, training_steps, **kwargs)
        for name in self.settings:
            if not isinstance(self._modules[name], _NORM_TYPES):
                raise ConfigError(
                    f"SlimPruner prunes the scaling factors of normalisation layers, but {name!r} is a "
                    f"{type(self._modules[name]).__name__}; select e.g. op_types: ['BatchNorm2d']"
                )

    def training_patches(self) -> list[Handle]:
        self._require_evaluator()
        weights = [self._modules[name].weight for name in self.settings]
        scale = self.regular_scale

        def l1_penalty(loss: torch.Tensor, batch: Any) -> torch.Tensor:
            return loss + scale * sum(w.abs().sum() for w in weights)

        return [self.evaluator.patch_loss(l1_penalty)]

    def collect_data(self) -> dict[tuple[str, str], Any]:
        if self.training_epochs and not self.collecting:
            self.start_collecting()
            try:
                self.evaluator.train(max_epochs=self.training_epochs)
            finally:
                self.stop_collecting()
            return {}
        return super().collect_data()

    def generate_masks(self, candidates: list[Any]) -> Masks:
        masks = super().generate_masks(candidates)
        for name, targets in masks.items():
            bias = getattr(self._modules[name], "bias", None)
            if "weight" in targets and isinstance(bias, torch.Tensor) and bias.shape == targets["weight"].shape:
                targets["bias"] = targets["weight"].clone()
        return masks


class MovementPruner(DataPruner):
    """Fine-grained movement pruning (Sanh et al., 2020) during fine-tuning.

    Scores ``-sum w * grad`` are learned over all of ``compress(max_steps, max_epochs)``'s
    training. Before ``warmup_step`` nothing is pruned; between ``warmup_step`` and
    ``cooldown_begin_step`` the sparsity follows AGP's cubic curve up to the configured ratio,
    re-ranking every ``update_interval`` steps; from ``cooldown_begin_step`` masks are frozen.
    """

    default_importance = "movement"
    default_granularity = "fine"

    def __init__(self, model: nn.Module, config_list: Sequence[Mapping[str, Any]], evaluator: Any = None,
                 warmup_step: int = 0, cooldown_begin_step: int = 100, *, update_interval: int = 10,
                 **kwargs: Any) -> None:
        if not 0 <= warmup_step < cooldown_begin_step:
            raise ValueError(f"need 0 <= warmup_step < cooldown_begin_step, got {warmup_step}, {cooldown_begin_step}")
        super().__init__(model, config_list, evaluator, **kwargs)
        self.warmup_step, self.cooldown_begin_step = warmup_step, cooldown_begin_step
        self.update_interval = max(1, update_interval)
        self._ratios = TargetRatios(self)
        self._step = 0
        self.frozen = False
        self._handle: Handle | None = None

    def compress(self, max_steps: int | None = None, max_epochs: int | None = None) -> CompressResult:
        """Fine-tune through the evaluator, pruning as scores are learned."""
        if max_steps is None and max_epochs is None:
            max_steps = self.cooldown_begin_step
        train_hooked(self, max_steps, max_epochs)
        return CompressResult(self.model, self.get_masks())

    def start(self) -> None:
        """Hook into the evaluator's training without training (for a shared loop); then :meth:`finish`."""
        self._require_evaluator()
        self._step, self.frozen = 0, False
        self.start_collecting()
        self._handle = self.evaluator.on_after_step(self._after_step)

    def finish(self) -> None:
        """Unhook; if training stopped before ``cooldown_begin_step``, prune to the final sparsity."""
        if not self.frozen:
            warnings.warn(
                f"MovementPruner: training ended at step {self._step}, before cooldown_begin_step="
                f"{self.cooldown_begin_step}; applying the final sparsity now", stacklevel=3,
            )
            self._prune_at(self.cooldown_begin_step)
        self._unhook()

    def abort(self) -> None:
        """Unhook after a failed training run, without pruning to the final sparsity."""
        self._unhook()

    def _unhook(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.stop_collecting()

    def _after_step(self) -> None:
        self._step += 1
        if self.frozen or self._step < self.warmup_step:
            return
        done = self._step >= self.cooldown_begin_step
        if done or (self._step - self.warmup_step) % self.update_interval == 0:
            self._prune_at(self._step)

    def _prune_at(self, step: int) -> None:
        span = self.cooldown_begin_step - self.warmup_step
        self._ratios.scale(cubic((step - self.warmup_step) / span))
        if self._has_scores():
            self.update_masks()
        self.frozen = step >= self.cooldown_begin_step

    def _has_scores(self) -> bool:
        return self._collector is not None and bool(self._collector.data())


__all__ = [
    "ActivationAPoZRankPruner", "ActivationMeanRankPruner", "DataPruner", "MovementPruner", "SlimPruner",
    "TaylorPruner",
]
