"""NNI's ``Curvefitting`` assessor: predict where a learning curve ends; stop hopeless trials.

From ``start_step`` results on (then every ``gap`` steps) the curve so far is fitted with a
few learning-curve families (pow3 ``c - a·x^-α``, log-linear ``a + b·log x``, exponential
``c - a·e^(-βx)``, each with its nonlinear rate on a grid and the rest by least squares); the
prediction at ``epoch_num`` is the mean of the families that fit best. A trial stops when the
prediction is worse than ``threshold`` times the best final result so far (NNI's rule; for
minimisation, better than ``(2 - threshold)`` times). Pure numpy, unlike NNI's MCMC ensemble
of 11 families, so it decides in milliseconds.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from torchslim.errors import ConfigError
from torchslim.experiment.tuners.base import check_optimize_mode

_RATES = np.geomspace(0.05, 3.0, 24)


def _fit(x: np.ndarray, y: np.ndarray, basis: np.ndarray, at: np.ndarray) -> tuple[float, float]:
    """Least squares of y on [1, basis]; returns (sse, prediction at ``at``'s basis)."""
    a = np.stack([np.ones_like(basis), basis], 1)
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    sse = float(((a @ coef - y) ** 2).sum())
    return sse, float(coef[0] + coef[1] * at)


def predict_final(history: Sequence[float], epoch_num: int) -> float:
    """The curve's predicted value at step ``epoch_num`` (1-based)."""
    y = np.asarray(history, dtype=float)
    x = np.arange(1, len(y) + 1, dtype=float)
    fits = [_fit(x, y, np.log(x), np.log(epoch_num))]
    for rate in _RATES:
        fits.append(_fit(x, y, x ** -rate, np.array(epoch_num, float) ** -rate))
        fits.append(_fit(x, y, np.exp(-rate * x), math.exp(-rate * epoch_num)))
    fits.sort(key=lambda f: f[0])
    best = [p for _, p in fits[:3] if math.isfinite(p)]
    return float(np.mean(best)) if best else float(y[-1])


class CurvefittingAssessor:
    """See the module docstring; classArgs as NNI's (``epoch_num``, ``start_step``,
    ``threshold``, ``gap``, ``optimize_mode``)."""

    name = "Curvefitting"

    def __init__(self, epoch_num: int = 20, start_step: int = 6, threshold: float = 0.95,
                 gap: int = 1, optimize_mode: str = "maximize") -> None:
        self.optimize_mode = check_optimize_mode(optimize_mode, "assessor.classArgs.optimize_mode")
        for key, value, low in (("epoch_num", epoch_num, 1), ("start_step", start_step, 1),
                                ("gap", gap, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"assessor.classArgs.{key} is {value!r}; allowed: an int >= {low}")
        if not 0 < float(threshold) <= 1:
            raise ConfigError(f"assessor.classArgs.threshold is {threshold!r}; allowed: (0, 1]")
        if start_step >= epoch_num:
            raise ConfigError(f"assessor.classArgs.start_step ({start_step}) must be below "
                              f"epoch_num ({epoch_num})")
        self.epoch_num, self.start_step, self.gap = epoch_num, start_step, gap
        self.threshold = float(threshold)
        self.best: float | None = None

    def should_stop(self, history: Sequence[float], trial_id: str | None = None) -> bool:
        step = len(history)
        if self.best is None or step < self.start_step or (step - self.start_step) % self.gap:
            return False
        if step >= self.epoch_num:
            return False
        predicted = predict_final(history, self.epoch_num)
        if self.optimize_mode == "maximize":
            return predicted < self.threshold * self.best if self.best > 0 else \
                predicted < self.best - (1 - self.threshold) * abs(self.best)
        return predicted > (2 - self.threshold) * self.best if self.best > 0 else \
            predicted > self.best + (1 - self.threshold) * abs(self.best)

    def trial_end(self, history: Sequence[float], succeeded: bool,
                  trial_id: str | None = None) -> None:
        if not succeeded or not history:
            return
        final = history[-1]
        if self.best is None or (final > self.best if self.optimize_mode == "maximize"
                                 else final < self.best):
            self.best = final
