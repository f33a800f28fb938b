"""Distillation: a teacher's tensors become extra loss terms of the student's training (NNI 3.0 API).

* :class:`DynamicLayerwiseDistiller`: each student target matches the closest of its linked teacher targets.
* :class:`Adaptive1dLayerwiseDistiller`: a trainable linear adapts the student's last dim to the teacher's.
* :class:`LogitsDistiller`: knowledge distillation on the output logits (temperature, KL).

All chain with pruners and quantizers (``X.from_compressor(other, ...)``); see ``docs/fusion.md``.
"""
from torchslim.distillation.distillers import (
    Adaptive1dLayerwiseDistiller, Distiller, DynamicLayerwiseDistiller, LogitsDistiller,
)
from torchslim.distillation.losses import kl, logits_kd, mse

__all__ = ["Adaptive1dLayerwiseDistiller", "Distiller", "DynamicLayerwiseDistiller", "LogitsDistiller", "kl",
           "logits_kd", "mse"]
