"""Distillation losses: per-target feature losses and logit knowledge distillation."""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F


def mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(student, teacher)


def kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) over the last dim of ``/ temperature`` softmaxes, times ``temperature**2``
    (Hinton et al. 2015), averaged over all other positions."""
    s = F.log_softmax(student / temperature, dim=-1).reshape(-1, student.shape[-1])
    t = F.log_softmax(teacher / temperature, dim=-1).reshape(-1, teacher.shape[-1])
    return F.kl_div(s, t, reduction="batchmean", log_target=True) * temperature ** 2


def logits_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """Knowledge distillation on class logits: :func:`kl` at ``temperature``."""
    return kl(student_logits, teacher_logits, temperature)


def loss_fn(apply_method: str | Callable[..., Any], temperature: float = 1.0) -> Callable[[Any, Any], torch.Tensor]:
    """The function ``(student, teacher) -> loss`` named by a config's ``apply_method``."""
    if callable(apply_method):
        return apply_method
    if apply_method == "mse":
        return mse
    if apply_method == "kl":
        return lambda s, t: kl(s, t, temperature)
    raise ValueError(f"unknown apply_method {apply_method!r}")


__all__ = ["kl", "logits_kd", "loss_fn", "mse"]
