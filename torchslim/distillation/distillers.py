"""Distillers: a teacher's tensors become extra loss terms of the student's training.

The user's training loop is unchanged: the distiller patches the loss returned by the
evaluator's ``training_step`` into ``origin_loss_lambda * loss + sum(lambda_i * loss_i)``,
running ``teacher_predict(batch, teacher_model)`` (no grad, teacher in eval mode) on the same
batch. Both NNI 3.0 forms work::

    DynamicLayerwiseDistiller(model, config_list, evaluator, teacher_model, teacher_predict, 0.1)
    DynamicLayerwiseDistiller.from_compressor(quantizer, config_list, teacher_model, teacher_predict, 0.1)

Hooks are added when training starts (after every other compressor's, so the student
tensors read are the masked, fake-quantized ones) and removed when it ends.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from torchslim.compression.base import CompressResult, Compressor
from torchslim.config.selection import DEFAULT_PRUNING_TYPES
from torchslim.distillation.config import DistillTarget, resolve_targets
from torchslim.distillation.losses import logits_kd, loss_fn
from torchslim.distillation.recorder import Recorder
from torchslim.errors import ConfigError
from torchslim.evaluator import Handle, as_evaluator

TeacherPredict = Callable[[Any, nn.Module], Any]


class Distiller(Compressor):
    """Base of the distillers (see the module docstring).

    Parameters
    ----------
    model: the student (hooks only; nothing in it changes).
    config_list: which student tensors to distill and how (see :mod:`torchslim.distillation.config`).
    evaluator: a :class:`torchslim.TorchEvaluator` whose ``training_step`` sees ``(batch, model)``.
    teacher_model: the teacher (frozen: no gradients, eval mode while predicting).
    teacher_predict: ``teacher_predict(batch, teacher_model)``; runs the teacher on the batch
        (its return value is the teacher's output, used by logit distillation).
    origin_loss_lambda: weight of the user's own loss.
    """

    def __init__(self, model: nn.Module, config_list: Sequence[Mapping[str, Any]] | None, evaluator: Any,
                 teacher_model: nn.Module, teacher_predict: TeacherPredict, origin_loss_lambda: float = 1.0) -> None:
        if not isinstance(teacher_model, nn.Module):
            raise TypeError(f"teacher_model must be a torch.nn.Module, got {type(teacher_model).__name__}")
        if not callable(teacher_predict):
            raise TypeError("teacher_predict must be a function (batch, teacher_model) -> output")
        if isinstance(origin_loss_lambda, bool) or not isinstance(origin_loss_lambda, (int, float)) \
                or origin_loss_lambda < 0:
            raise ConfigError(f"invalid value {origin_loss_lambda!r} for 'origin_loss_lambda'; allowed: a number >= 0")
        self.model = model
        self.evaluator = as_evaluator(evaluator)
        self.teacher_model = teacher_model
        self.teacher_predict = teacher_predict
        self.origin_loss_lambda = float(origin_loss_lambda)
        self.targets: list[DistillTarget] = self.resolve(config_list)
        self.check_targets()
        self.student = Recorder(model, [(t.module, t.target) for t in self.targets])
        self.teacher = Recorder(teacher_model, [(link, t.target) for t in self.targets for link in t.links])
        self.last_losses: dict[tuple[str, str], float] = {}
        self.teacher_output: Any = None
        self._patch: Handle | None = None

    # --- what a distiller is ------------------------------------------------------------------
    def resolve(self, config_list: Sequence[Mapping[str, Any]] | None) -> list[DistillTarget]:
        if config_list is None:
            raise ConfigError(f"{type(self).__name__} needs a config_list naming the student modules to distill")
        return resolve_targets(self.model, self.teacher_model, config_list, DEFAULT_PRUNING_TYPES)

    def check_targets(self) -> None:
        """Refuse what this algorithm cannot do (before anything is hooked)."""

    def target_loss(self, target: DistillTarget, student: torch.Tensor, teachers: list[torch.Tensor]) -> torch.Tensor:
        """The loss of one student tensor against the teacher tensors it links to."""
        raise NotImplementedError

    # --- public API ----------------------------------------------------------------------------
    def compress(self, max_steps: int | None = None, max_epochs: int | None = None) -> CompressResult:
        """Train through the evaluator with the distillation loss (and every compressor chained before,
        in the same run); returns ``(model, None)``."""
        if self.evaluator is None:
            raise ValueError(f"{type(self).__name__}.compress needs an evaluator (torchslim.TorchEvaluator)")
        if max_steps is None and max_epochs is None:
            raise ValueError(f"{type(self).__name__}.compress(max_steps, max_epochs) needs one of them")
        self.train_chain(max_steps, max_epochs, start=self.start, finish=self.finish)
        return CompressResult(self.model, None)

    def start(self) -> None:
        """Hook into the evaluator's training: record targets and patch the loss (no training)."""
        if self._patch is not None:
            return
        self.student.start()
        self.teacher.start()
        self._patch = self.evaluator.patch_loss(self.patch_loss)

    def finish(self) -> None:
        """Unhook from training (the model keeps nothing of the distiller)."""
        if self._patch is not None:
            self._patch.remove()
            self._patch = None
        self.student.stop()
        self.teacher.stop()

    def patch_loss(self, loss: torch.Tensor, batch: Any) -> torch.Tensor:
        """``origin_loss_lambda * loss + distillation loss`` for the batch the student just saw."""
        if batch is None:
            raise RuntimeError(f"{type(self).__name__} needs the training batch to run the teacher: use "
                               "torchslim.TorchEvaluator (its training_step receives the batch)")
        return self.origin_loss_lambda * loss + self.distill_loss(batch)

    def run_teacher(self, batch: Any) -> Any:
        """``teacher_predict(batch, teacher_model)`` without gradients, the teacher in eval mode."""
        was_training = self.teacher_model.training
        self.teacher_model.eval()
        try:
            with torch.no_grad():
                self.teacher_output = self.teacher_predict(batch, self.teacher_model)
        finally:
            self.teacher_model.train(was_training)
        return self.teacher_output

    def distill_loss(self, batch: Any) -> torch.Tensor:
        """Run the teacher on ``batch`` and sum ``lambda * loss`` over the student's recorded targets."""
        self.run_teacher(batch)
        total: Any = 0.0
        self.last_losses = {}
        for target in self.targets:
            student = self.student[(target.module, target.target)]
            teachers = [self.teacher[(link, target.target)] for link in target.links]
            loss = self.target_loss(target, student, teachers)
            self.last_losses[(target.module, target.target)] = float(loss.detach())
            total = total + target.lambda_ * loss
        return total

    def unwrap_model(self) -> nn.Module:
        """Remove the distiller's hooks, then unwrap every compressor chained before it."""
        self.finish()
        self.unwrap_previous()
        return self.model

    def unwrap_teacher_model(self) -> nn.Module:
        """Remove the hooks on the teacher; it is a plain model again."""
        self.teacher.stop()
        return self.teacher_model


class DynamicLayerwiseDistiller(Distiller):
    """Each student target is linked to a list of teacher targets (``link``); its loss is the
    smallest of the losses against them (NNI's dynamic layerwise distillation)."""

    def target_loss(self, target: DistillTarget, student: torch.Tensor, teachers: list[torch.Tensor]) -> torch.Tensor:
        fn = loss_fn(target.apply_method, target.temperature)
        losses = [fn(student, teacher) for teacher in teachers]
        return losses[0] if len(losses) == 1 else torch.stack(losses).min()


class Adaptive1dLayerwiseDistiller(Distiller):
    """A trainable ``nn.Linear`` maps the student target's last dim onto its (single) teacher
    target's when they differ; the linears train with the student (added to the evaluator's
    optimizer as they are created, on the first training batch)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.adapters = nn.ModuleDict()

    def check_targets(self) -> None:
        many = [t.module for t in self.targets if len(t.links) != 1]
        if many:
            raise ConfigError(f"{type(self).__name__} links each student target to one teacher target; "
                              f"{many} have several 'link' names (use DynamicLayerwiseDistiller for that)")

    def adapter(self, target: DistillTarget, student: torch.Tensor, teacher: torch.Tensor) -> nn.Module:
        key = f"{target.module}|{target.target}".replace(".", "/")
        if key not in self.adapters:
            if student.shape[-1] == teacher.shape[-1]:
                self.adapters[key] = nn.Identity()
            else:
                linear = nn.Linear(student.shape[-1], teacher.shape[-1]).to(student.device)
                self.adapters[key] = linear
                if self.evaluator is not None:
                    self.evaluator.optimizers[0].add_param_group({"params": list(linear.parameters())})
        return self.adapters[key]

    def target_loss(self, target: DistillTarget, student: torch.Tensor, teachers: list[torch.Tensor]) -> torch.Tensor:
        teacher = teachers[0]
        return loss_fn(target.apply_method, target.temperature)(self.adapter(target, student, teacher)(student), teacher)


class LogitsDistiller(Distiller):
    """Knowledge distillation on the model's output (Hinton et al. 2015): KL between the
    ``temperature``-softened student and teacher outputs, times ``temperature**2`` and ``kd_lambda``.

    ``LogitsDistiller(model, evaluator, teacher_model, teacher_predict, origin_loss_lambda,
    temperature=4.0, kd_lambda=1.0)``; the teacher's logits are what ``teacher_predict`` returns.
    """

    def __init__(self, model: nn.Module, evaluator: Any, teacher_model: nn.Module, teacher_predict: TeacherPredict,
                 origin_loss_lambda: float = 1.0, *, temperature: float = 4.0, kd_lambda: float = 1.0) -> None:
        if not temperature > 0 or kd_lambda < 0:
            raise ConfigError(f"need temperature > 0 and kd_lambda >= 0, got {temperature!r}, {kd_lambda!r}")
        self.temperature, self.kd_lambda = float(temperature), float(kd_lambda)
        super().__init__(model, None, evaluator, teacher_model, teacher_predict, origin_loss_lambda)

    @classmethod
    def from_compressor(cls, compressor: Any, *args: Any, evaluator: Any = None, **kwargs: Any) -> "LogitsDistiller":
        """``LogitsDistiller.from_compressor(other, teacher_model, teacher_predict, origin_loss_lambda, ...)``."""
        evaluator = evaluator if evaluator is not None else getattr(compressor, "evaluator", None)
        new = cls(compressor.model, evaluator, *args, **kwargs)
        new.previous = compressor
        return new

    def resolve(self, config_list: Any) -> list[DistillTarget]:
        return [DistillTarget("", "_output_0", (), self.kd_lambda, "kl", self.temperature)]

    def distill_loss(self, batch: Any) -> torch.Tensor:
        loss = logits_kd(self.student[("", "_output_0")], self.run_teacher(batch), self.temperature)
        self.last_losses = {("", "_output_0"): float(loss.detach())}
        return self.kd_lambda * loss


__all__ = ["Adaptive1dLayerwiseDistiller", "Distiller", "DynamicLayerwiseDistiller", "LogitsDistiller"]
