"""Schedules: prune a little, train, prune more — around any pruner.

A schedule wraps a *sub-pruner* (any importance: L1, Taylor, APoZ, a custom ``calc_mask``...)
and raises its sparsity over ``total_times`` pruning steps, one every ``interval_steps``
optimizer steps of the user's training loop (driven through the evaluator). After the last
step the masks are frozen and training goes on as fine-tuning until ``max_steps`` /
``max_epochs``.

* :class:`LinearPruner`: ratio grows linearly.
* :class:`AGPPruner`: Automated Gradual Pruning's cubic curve (Zhu & Gupta, 2017).
* :class:`LotteryTicketPruner`: each step prunes the same share of the remaining weights and
  rewinds the survivors (and optimizer state) to their initial values (Frankle & Carbin, 2019).

The form is NNI 3.0's::

    AGPPruner(TaylorPruner(model, cfg, evaluator, training_steps=100), interval_steps=100, total_times=30)

NNI's older forms (v0 ``AGP_Pruner(config_list)``, v1/v2 ``AGPPruner(model, cfg, optimizer, ...)``, v2.x
``LinearPruner(model, cfg, 'l1', total_iteration)``) are translated by :mod:`torchslim.pruning.nni`;
``epochs_per_iteration`` (set there) makes ``compress()`` alternate pruning and epochs of training, and
without an evaluator the user trains and calls :meth:`ScheduledPruner.update_epoch`.
"""
from __future__ import annotations

import copy
import warnings
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from torchslim.compression.base import Compressor
from torchslim.pruning.base import CompressResult, Masks, Pruner
from torchslim.pruning.data_pruners import DataPruner
from torchslim.pruning.progress import TargetRatios, cubic, is_due, linear, lottery_ratio, train_hooked
from torchslim.pruning.shrinking import out_widths, shrink_round, translated_ratio
from torchslim.utils.legacy import NNIBoundary

class ScheduledPruner(Compressor, NNIBoundary):
    """Base of the schedules; subclasses define :meth:`ratio_at`.

    Parameters
    ----------
    pruner: the sub-pruner (its config_list gives the *final* sparsity).
    interval_steps: optimizer steps between two pruning steps.
    total_times: number of pruning steps.
    evaluator: drives training; defaults to the sub-pruner's evaluator.
    """

    nni_adapter = "torchslim.pruning.nni:schedule_call"  # NNI's call forms are translated there first

    def __init__(self, pruner: Pruner, interval_steps: int = 100, total_times: int = 10,
                 evaluator: Any = None, *, speedup: bool = False, dummy_input: Any = None) -> None:
        self.epochs_per_iteration: int | None = None  # set by the v1/v2 forms
        # speedup=True: remove pruned channels after every round (NNI v2's keyword)
        self.speedup = bool(speedup)
        self._speedup_input = dummy_input
        if not isinstance(pruner, Pruner):
            raise TypeError(f"{type(self).__name__} wraps a torchslim Pruner, got {type(pruner).__name__}")
        if int(total_times) < 1 or int(interval_steps) < 1:
            raise ValueError(f"interval_steps and total_times must be >= 1, got {interval_steps}, {total_times}")
        self.pruner = pruner
        self.interval_steps, self.total_times = int(interval_steps), int(total_times)
        self.evaluator = evaluator if evaluator is not None else pruner.evaluator
        if self.evaluator is not None:
            self.evaluator.bind_model(pruner.model)
        self.ratios = TargetRatios(pruner)
        self._widths = out_widths(pruner.model, self.ratios.final) if self.speedup else {}
        self.times_done = 0
        self._step = 0
        self._handle: Any = None

    # --- what a schedule is ----------------------------------------------------------------------
    def ratio_at(self, final: float, time: int) -> float:
        """Sparsity of a target whose final ratio is ``final`` after pruning step ``time``."""
        raise NotImplementedError

    def after_pruning(self) -> None:
        """Hook run after each pruning step (the lottery ticket rewinds weights here)."""

    # --- public API --------------------------------------------------------------------------------
    @property
    def model(self) -> nn.Module:
        return self.pruner.model

    @property
    def frozen(self) -> bool:
        """True once the final sparsity is reached: masks no longer change."""
        return self.times_done >= self.total_times

    def compress(self, max_steps: int | None = None, max_epochs: int | None = None) -> CompressResult:
        """Train through the evaluator, pruning every ``interval_steps``; returns ``(model, masks)``.

        Without limits, trains exactly ``interval_steps * total_times`` steps. In the v2 form
        (built with a trainer) runs ``num_iterations`` × (prune, ``epochs_per_iteration`` epochs).
        """
        if self.epochs_per_iteration is not None and self.evaluator is not None:
            return self._compress_v2()
        if self.evaluator is None:
            if max_steps is None and max_epochs is None:  # v1: the user trains and calls update_epoch
                self.update_epoch(0)
                return CompressResult(self.model, self.get_masks())
            raise ValueError(f"{type(self).__name__}.compress(max_steps, max_epochs) needs an evaluator")
        if max_steps is None and max_epochs is None:
            max_steps = self.interval_steps * self.total_times
        train_hooked(self, max_steps, max_epochs)
        return CompressResult(self.model, self.get_masks())

    def start(self) -> None:
        """Hook the schedule into the evaluator's training without training: another compressor
        (a quantizer, a distiller) can then run one shared training loop; call :meth:`finish` after."""
        if self.evaluator is None:
            raise ValueError(f"{type(self).__name__} needs an evaluator to follow training steps")
        self._step = 0
        self._handle = self.evaluator.on_after_step(self._after_step)
        self._start_data()

    def finish(self) -> None:
        """Unhook; if training stopped early, prune to the final sparsity now (with a warning)."""
        self._unhook()
        if not self.frozen:
            warnings.warn(
                f"{type(self).__name__}: training ended after {self._step} steps, before the last of "
                f"{self.total_times} pruning steps (every {self.interval_steps}); pruning to the final "
                "sparsity now, without fine-tuning", stacklevel=3,
            )
            self._prune(self.total_times)

    def abort(self) -> None:
        """Unhook after a failed training run, without pruning to the final sparsity."""
        self._unhook()

    def _unhook(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._stop_data()

    def update_epoch(self, epoch: int) -> None:
        """v1: call at the start of each epoch; prunes to the epoch's scheduled sparsity."""
        time = min(epoch // (self.epochs_per_iteration or 1) + 1, self.total_times)
        if time > self.times_done:
            self._prune(time)

    def step(self) -> None:
        """v1: called after each mini-batch; schedules here act per epoch or via compress()."""

    def get_masks(self) -> Masks:
        return self.pruner.get_masks()

    def unwrap_model(self) -> nn.Module:
        """Fold the masks in and remove every hook (:meth:`get_masks` still returns the masks)."""
        self.pruner.unwrap_model()
        self.unwrap_previous()
        return self.model

    def export_model(self, *args: Any, **kwargs: Any) -> None:
        self.pruner.export_model(*args, **kwargs)

    def sparsity_report(self) -> list[dict[str, Any]]:
        return self.pruner.sparsity_report()

    # --- internals ---------------------------------------------------------------------------------
    def _after_step(self) -> None:
        self._step += 1
        if not self.frozen and is_due(self._step, self.interval_steps):
            self._prune(self.times_done + 1)
            if self.frozen:
                self._stop_data()  # statistics are no longer needed: fine-tuning is plain training

    def _prune(self, time: int) -> None:
        self.ratios.set(lambda final: self.ratio_at(final, time))
        if self.speedup:  # the model is already narrower: ask for what is still missing
            now = out_widths(self.model, self._widths)
            for (name, target), width in self._widths.items():
                settings = self.pruner.settings[name][target]
                settings["sparse_ratio"] = translated_ratio(settings["sparse_ratio"], width, now.get((name, target), width))
        self.pruner.update_masks()
        self.times_done = time
        self.after_pruning()
        if self.speedup:
            self._shrink()

    def _shrink(self) -> None:
        dummy = next((d for d in (self._speedup_input, getattr(self.evaluator, "dummy_input", None),
                                  self.pruner.dummy_input) if d is not None), None)
        if dummy is None:
            raise ValueError(f"{type(self).__name__}(speedup=True) needs a dummy_input (given to the "
                             "schedule, the evaluator or the pruner) to trace the model")
        collecting = isinstance(self.pruner, DataPruner) and self._handle is not None and not self.frozen
        if collecting:
            self.pruner.stop_collecting()  # statistics have the old widths
        self.carry(shrink_round(self.pruner, dummy, getattr(self.evaluator, "optimizers", ()), self.carried()))
        if collecting:
            self.pruner.start_collecting()

    def carried(self) -> dict[str, torch.Tensor] | None:
        """Per-parameter tensors to slice along with the model when shrinking (none here)."""
        return None

    def carry(self, sliced: dict[str, torch.Tensor] | None) -> None:
        """Receive :meth:`carried`'s tensors cut to the shrunk model."""

    def _start_data(self) -> None:
        if isinstance(self.pruner, DataPruner) and not self.frozen:
            self.pruner.start_collecting()

    def _stop_data(self) -> None:
        if isinstance(self.pruner, DataPruner):
            self.pruner.stop_collecting()

    def _compress_v2(self) -> CompressResult:
        for time in range(self.times_done + 1, self.total_times + 1):
            self._prune(time)
            self.evaluator.train(max_epochs=self.epochs_per_iteration)
        return CompressResult(self.model, self.get_masks())


class LinearPruner(ScheduledPruner):
    """Sparsity grows linearly: ``final * time / total_times``."""

    def ratio_at(self, final: float, time: int) -> float:
        return final * linear(time / self.total_times)


class AGPPruner(ScheduledPruner):
    """Automated Gradual Pruning: ``final * (1 - (1 - time / total_times) ** 3)``."""

    def ratio_at(self, final: float, time: int) -> float:
        return final * cubic(time / self.total_times)


class LotteryTicketPruner(ScheduledPruner):
    """Iterative magnitude pruning with rewinding (the lottery ticket hypothesis).

    Each pruning step removes the same share of the remaining weights; with ``reset_weights``
    the surviving weights, buffers and optimizer / lr-scheduler state go back to what they
    were when this pruner was created, and training continues from there.

    Without an evaluator (the user trains: ``for _ in pruner.get_prune_iterations():
    pruner.prune_iteration_start(); train(...)``, iteration 0 trains the dense model), the objects
    in ``training_state`` (optimizer, lr scheduler: anything with ``state_dict``) are rewound.
    """

    def __init__(self, pruner: Pruner, interval_steps: int = 100, total_times: int = 10,
                 evaluator: Any = None, *, reset_weights: bool = True, training_state: Sequence[Any] = (),
                 speedup: bool = False, dummy_input: Any = None) -> None:
        super().__init__(pruner, interval_steps, total_times, evaluator, speedup=speedup, dummy_input=dummy_input)
        self.reset_weights = reset_weights
        self._initial_weights = copy.deepcopy(self.model.state_dict())
        self._restore_training = _restorer(self.evaluator) if self.evaluator is not None else _restorer(*training_state)
        self._v1_iteration = 0

    def ratio_at(self, final: float, time: int) -> float:
        return lottery_ratio(final, time, self.total_times)

    @torch.no_grad()
    def after_pruning(self) -> None:
        if not self.reset_weights:
            return
        self.model.load_state_dict(self._initial_weights)
        self.pruner.apply_masks(self.pruner.get_masks())  # the rewound weights get their zeros back
        self._restore_training()

    def carried(self) -> dict[str, torch.Tensor] | None:
        return self._initial_weights  # the rewind point shrinks with the model

    def carry(self, sliced: dict[str, torch.Tensor] | None) -> None:
        if sliced is not None:
            self._initial_weights = sliced

    def get_prune_iterations(self) -> range:
        """v1: one dense iteration, then one per pruning step."""
        return range(self.total_times + 1)

    def prune_iteration_start(self) -> None:
        """v1: call at the start of each iteration; prunes and rewinds from the second one on."""
        if self._v1_iteration > 0:
            self._prune(min(self._v1_iteration, self.total_times))
        self._v1_iteration += 1


def _restorer(*stateful: Any) -> Any:
    """A function putting objects with ``state_dict`` (optimizers, schedulers, evaluators) back
    to their current state."""
    saved = [(obj, copy.deepcopy(obj.state_dict())) for obj in stateful if hasattr(obj, "state_dict")]

    def restore() -> None:
        for obj, state in saved:
            obj.load_state_dict(copy.deepcopy(state))

    return restore


__all__ = ["AGPPruner", "LinearPruner", "LotteryTicketPruner", "ScheduledPruner"]
