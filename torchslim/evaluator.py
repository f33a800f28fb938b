"""The training-loop protocol: compressors drive the user's own training loop through hooks.

The user keeps writing their loop; torchslim only

* wraps the ``training_step`` it hands to that loop, so compressors can *patch the loss*
  (sparsity regularisation, distillation terms);
* hooks the user's optimizer instance (``register_step_pre_hook`` / ``register_step_post_hook``),
  so compressors run code *before* and *after every optimizer step* (read gradients, update
  masks or scores, count steps) — no special tracing call needed to build the optimizer;
* calls the loop for *N steps or epochs* (``train(max_steps, max_epochs)``), enforcing
  ``max_steps`` even when the loop ignores it;
* calls the user's ``evaluating_func`` to *evaluate*.

Hooks are active only inside :meth:`Evaluator.train`, so the optimizer behaves normally
when the user trains on their own afterwards.

Two front ends share this machinery: :class:`TorchEvaluator` (NNI 3.0's
``TorchEvaluator(training_func, optimizers, training_step, ...)``) and
:class:`TrainerEvaluator` (NNI v2's ``trainer(model, optimizer, criterion, epoch)`` +
``criterion``).
"""
from __future__ import annotations

import copy
import inspect
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

StepHook = Callable[[], None]
LossPatch = Callable[[torch.Tensor, Any], torch.Tensor]


class StopTraining(Exception):
    """Raised from an optimizer hook to end the user's loop once ``max_steps`` are done."""


class Handle:
    """Removes a hook or patch; also a context manager."""

    def __init__(self, hooks: list, item: Any) -> None:
        self._hooks, self._item = hooks, item

    def remove(self) -> None:
        if self._item in self._hooks:
            self._hooks.remove(self._item)

    def __enter__(self) -> "Handle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _single(items: list) -> Any:
    return items[0] if len(items) == 1 else (items or None)


class Evaluator:
    """Hook machinery shared by the evaluator front ends (see the module docstring).

    Compressors use: :meth:`bind_model`, :meth:`on_before_step`, :meth:`on_after_step`,
    :meth:`patch_loss`, :meth:`train`, :meth:`evaluate`, :attr:`global_step`,
    :meth:`state_dict` / :meth:`load_state_dict` (optimizer and scheduler state, e.g. to
    rewind a lottery ticket). Step hooks follow the first optimizer only, so a step is one
    update of the model however many optimizers there are.
    """

    def __init__(self, optimizers: Any, lr_schedulers: Any = None, dummy_input: Any = None,
                 evaluating_func: Callable[[nn.Module], Any] | None = None) -> None:
        self.optimizers: list[torch.optim.Optimizer] = _as_list(optimizers)
        if not self.optimizers or not all(isinstance(o, torch.optim.Optimizer) for o in self.optimizers):
            raise TypeError(f"optimizers must be a torch.optim.Optimizer or a list of them, got {optimizers!r}")
        self.lr_schedulers = _as_list(lr_schedulers)
        self.dummy_input = dummy_input
        self.evaluating_func = evaluating_func
        self.model: nn.Module | None = None
        self.global_step = 0  # optimizer steps taken inside train(), over all calls
        self._before: list[StepHook] = []
        self._after: list[StepHook] = []
        self._loss_patches: list[LossPatch] = []
        self._active = False
        self._max_steps: int | None = None
        self._run_steps = 0
        first = self.optimizers[0]
        self._handles = [first.register_step_pre_hook(self._pre_step), first.register_step_post_hook(self._post_step)]

    # --- protocol used by compressors ---------------------------------------------------------
    def bind_model(self, model: nn.Module) -> None:
        """The model the training function receives (set by the compressor)."""
        if self.model is not None and self.model is not model:
            raise ValueError("this evaluator is already bound to another model; create one per model")
        self.model = model

    def on_before_step(self, fn: StepHook) -> Handle:
        """Run ``fn()`` before every optimizer step (gradients are available)."""
        self._before.append(fn)
        return Handle(self._before, fn)

    def on_after_step(self, fn: StepHook) -> Handle:
        """Run ``fn()`` after every optimizer step."""
        self._after.append(fn)
        return Handle(self._after, fn)

    def patch_loss(self, fn: LossPatch) -> Handle:
        """Replace the loss by ``fn(loss, batch)`` (batch is None where the loop hides it)."""
        self._loss_patches.append(fn)
        return Handle(self._loss_patches, fn)

    def train(self, max_steps: int | None = None, max_epochs: int | None = None) -> None:
        """Run the user's loop for ``max_steps`` optimizer steps or ``max_epochs`` epochs."""
        if self.model is None:
            raise RuntimeError("bind_model(model) must be called before train()")
        if max_steps is None and max_epochs is None:
            raise ValueError("train() needs max_steps or max_epochs")
        if self._active:
            raise RuntimeError("train() is already running (nested call)")
        self._active, self._max_steps, self._run_steps = True, max_steps, 0
        try:
            self._run(max_steps, max_epochs)
        except StopTraining:
            pass
        finally:
            self._active, self._max_steps = False, None

    def evaluate(self) -> Any:
        """The user's ``evaluating_func(model)`` result (a metric, or ``(metric, extras)``)."""
        if self.evaluating_func is None:
            raise RuntimeError("this evaluator has no evaluating_func")
        if self.model is None:
            raise RuntimeError("bind_model(model) must be called before evaluate()")
        return self.evaluating_func(self.model)

    def get_dummy_input(self) -> Any:
        return self.dummy_input

    def state_dict(self) -> dict[str, Any]:
        """Optimizer and lr-scheduler states (deep copies)."""
        return {
            "optimizers": [copy.deepcopy(o.state_dict()) for o in self.optimizers],
            "lr_schedulers": [copy.deepcopy(s.state_dict()) for s in self.lr_schedulers if hasattr(s, "state_dict")],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for opt, sd in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(copy.deepcopy(sd))
        schedulers = [s for s in self.lr_schedulers if hasattr(s, "state_dict")]
        for sched, sd in zip(schedulers, state["lr_schedulers"]):
            sched.load_state_dict(copy.deepcopy(sd))

    def close(self) -> None:
        """Remove the optimizer hooks for good."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # --- internals ------------------------------------------------------------------------------
    def _run(self, max_steps: int | None, max_epochs: int | None) -> None:
        raise NotImplementedError

    def _pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if not self._active:
            return
        if self._max_steps is not None and self._run_steps >= self._max_steps:
            raise StopTraining  # before the update, so no extra step is taken
        for fn in list(self._before):
            fn()

    def _post_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if not self._active:
            return
        self._run_steps += 1
        self.global_step += 1
        for fn in list(self._after):
            fn()

    def _patched(self, loss: torch.Tensor, batch: Any) -> torch.Tensor:
        if self._active:
            for fn in list(self._loss_patches):
                loss = fn(loss, batch)
        return loss


class TorchEvaluator(Evaluator):
    """NNI 3.0's evaluator: the user's loop, optimizer(s) and ``training_step``.

    Parameters
    ----------
    training_func: ``training_func(model, optimizers, training_step, lr_schedulers, max_steps,
        max_epochs)`` — the user's loop; it must call ``training_step(batch, model)`` for the
        loss and ``optimizer.step()`` as usual.
    optimizers: a plain optimizer instance (or a list) over the model's parameters.
    training_step: ``training_step(batch, model, ...) -> loss`` (or a tuple / dict whose first
        item / ``'loss'`` is the loss).
    lr_schedulers: passed through to ``training_func``.
    dummy_input: an example input (used for tracing, e.g. dependency-aware pruning).
    evaluating_func: ``evaluating_func(model) -> metric``.
    """

    def __init__(self, training_func: Callable[..., Any], optimizers: Any, training_step: Callable[..., Any],
                 lr_schedulers: Any = None, dummy_input: Any = None,
                 evaluating_func: Callable[[nn.Module], Any] | None = None) -> None:
        super().__init__(optimizers, lr_schedulers, dummy_input, evaluating_func)
        self.training_func = training_func
        self.training_step = training_step

    @classmethod
    def from_dataloader(cls, loader: Iterable[Any], optimizers: Any,
                        training_step: Callable[..., Any] = None, lr_schedulers: Any = None, *,
                        lr_step: str = "epoch", **kwargs: Any) -> "TorchEvaluator":
        """An evaluator whose loop is a plain pass over ``loader`` (cross-entropy by default)."""
        return cls(dataloader_training_func(loader, lr_step), optimizers, training_step or classification_step,
                   lr_schedulers, **kwargs)

    def _patched_training_step(self, batch: Any, model: nn.Module, *args: Any, **kwargs: Any) -> Any:
        out = self.training_step(batch, model, *args, **kwargs)
        if isinstance(out, torch.Tensor):
            return self._patched(out, batch)
        if isinstance(out, dict) and "loss" in out:
            return {**out, "loss": self._patched(out["loss"], batch)}
        if isinstance(out, (tuple, list)) and out:
            return type(out)([self._patched(out[0], batch), *out[1:]])
        raise TypeError(f"training_step must return a loss tensor (or a tuple/dict holding it), got {type(out)}")

    def _run(self, max_steps: int | None, max_epochs: int | None) -> None:
        self.training_func(
            self.model, _single(self.optimizers), self._patched_training_step,
            _single(self.lr_schedulers), max_steps, max_epochs,
        )


class TrainerEvaluator(Evaluator):
    """NNI v2's ``trainer(model, optimizer, criterion, epoch)`` + ``criterion`` (one epoch per call;
    v2.5's ``trainer(model, optimizer, criterion)`` works too).

    The loss patch wraps ``criterion`` (its ``batch`` argument is None). ``max_steps`` is
    enforced through the optimizer hooks.
    """

    def __init__(self, trainer: Callable[..., Any], optimizer: torch.optim.Optimizer,
                 criterion: Callable[..., torch.Tensor] | None, dummy_input: Any = None,
                 evaluating_func: Callable[[nn.Module], Any] | None = None) -> None:
        super().__init__(optimizer, None, dummy_input, evaluating_func)
        self.trainer = trainer
        self.criterion = criterion
        self.epoch = 0
        self._trainer_arity = _positional_arity(trainer, default=4)

    def _patched_criterion(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.criterion is None:
            raise RuntimeError("this TrainerEvaluator was built without a criterion")
        return self._patched(self.criterion(*args, **kwargs), None)

    def _run(self, max_steps: int | None, max_epochs: int | None) -> None:
        done = 0
        while max_epochs is None or done < max_epochs:
            before = self._run_steps
            args = [self.model, self.optimizers[0], self._patched_criterion, self.epoch]
            self.trainer(*args[: self._trainer_arity])
            self.epoch += 1
            done += 1
            if self._run_steps == before:  # the trainer took no step: more epochs cannot reach max_steps
                break


def _positional_arity(fn: Callable[..., Any], default: int) -> int:
    """How many positional arguments ``fn`` takes (v2.5+ trainers drop the epoch argument)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return default
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return default
    return min(default, sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params))


def dataloader_training_func(loader: Iterable[Any], lr_step: str = "epoch") -> Callable[..., None]:
    """A ready-made ``training_func`` looping over ``loader`` (batches ``(inputs, targets)`` or any
    object the training step understands); lr schedulers step per ``'epoch'`` or per ``'step'``."""
    if lr_step not in ("epoch", "step"):
        raise ValueError(f"lr_step must be 'epoch' or 'step', got {lr_step!r}")

    def training_func(model: nn.Module, optimizers: Any, training_step: Callable[..., Any], lr_schedulers: Any,
                      max_steps: int | None, max_epochs: int | None) -> None:
        optimizers, schedulers = _as_list(optimizers), _as_list(lr_schedulers)
        steps, epoch = 0, 0
        model.train()
        while (max_epochs is None or epoch < max_epochs) and (max_steps is None or steps < max_steps):
            for batch in loader:
                for opt in optimizers:
                    opt.zero_grad()
                out = training_step(batch, model)
                loss = out["loss"] if isinstance(out, dict) else out[0] if isinstance(out, (tuple, list)) else out
                loss.backward()
                for opt in optimizers:
                    opt.step()
                steps += 1
                if lr_step == "step":
                    for sched in schedulers:
                        sched.step()
                if max_steps is not None and steps >= max_steps:
                    return
            epoch += 1
            if lr_step == "epoch":
                for sched in schedulers:
                    sched.step()

    return training_func


def classification_step(batch: Any, model: nn.Module) -> torch.Tensor:
    """``training_step`` for ``(inputs, labels)`` batches and cross-entropy."""
    inputs, labels = batch
    return F.cross_entropy(model(inputs), labels)


def as_evaluator(evaluator: Any = None, *, optimizer: Any = None, trainer: Any = None, criterion: Any = None,
                 dummy_input: Any = None) -> Evaluator | None:
    """An evaluator from either form: an :class:`Evaluator`, or v2's (optimizer, trainer, criterion)."""
    if isinstance(evaluator, Evaluator):
        return evaluator
    if evaluator is not None:
        raise TypeError(f"evaluator must be a torchslim Evaluator (e.g. TorchEvaluator), got {type(evaluator).__name__}")
    if trainer is None:
        return None
    if optimizer is None:
        raise ValueError("the v2 form needs an optimizer together with the trainer")
    return TrainerEvaluator(trainer, optimizer, criterion, dummy_input=dummy_input)


__all__ = [
    "Evaluator", "Handle", "StopTraining", "TorchEvaluator", "TrainerEvaluator", "as_evaluator",
    "classification_step", "dataloader_training_func",
]
