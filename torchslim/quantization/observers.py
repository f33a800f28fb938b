"""Range observers and the (scale, zero point) they imply.

Observers see tensors as *units*: a view ``[*grid, n]`` where each grid cell is one
quantization block (the whole tensor, one channel, or a block of a block-wise
granularity) and ``n`` its elements. So per-tensor, per-channel and block-wise ranges are
one code path.
"""
from __future__ import annotations

from typing import Callable

import torch

from torchslim.quantization.config import QuantDtype

_EPS = 1e-8
# samples kept per unit by observers that need the distribution (percentile, MSE)
_SAMPLE_PER_BATCH = 4096
_SAMPLE_MAX = 65536


@torch.no_grad()
def qparams(lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype, scheme: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point covering ``[lo, hi]`` on ``dtype``'s grid.

    affine: the range is widened to hold 0, ``scale = (hi - lo) / (qmax - qmin)`` and
    ``zero_point = qmin - round(lo / scale)``, so 0.0 is exactly representable.
    symmetric: ``scale = max(|lo|, |hi|) / (qmax - zero_point)`` with zero point 0 for signed
    types and the grid's midpoint for unsigned ones.
    """
    lo = torch.minimum(lo.float(), torch.zeros_like(lo, dtype=torch.float))
    hi = torch.maximum(hi.float(), torch.zeros_like(hi, dtype=torch.float))
    qmin, qmax = dtype.qmin, dtype.qmax
    if scheme == "symmetric":
        zp_value = 0 if dtype.signed else (qmin + qmax + 1) // 2
        amax = torch.maximum(-lo, hi)
        scale = (amax / max(qmax - zp_value, 1)).clamp_min(_EPS)
        return scale, torch.full_like(scale, float(zp_value))
    scale = ((hi - lo) / (qmax - qmin)).clamp_min(_EPS)
    zero_point = (qmin - torch.round(lo / scale)).clamp(qmin, qmax)
    return scale, zero_point


class Observer:
    """Tracks the running min/max of every unit (the min/max observer)."""

    def __init__(self) -> None:
        self.min: torch.Tensor | None = None
        self.max: torch.Tensor | None = None
        self.batches = 0

    @torch.no_grad()
    def update(self, units: torch.Tensor) -> None:
        lo, hi = units.detach().amin(-1).float(), units.detach().amax(-1).float()
        self._combine(lo, hi)
        self.batches += 1

    def _combine(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        if self.min is None or self.min.shape != lo.shape:
            self.min, self.max = lo, hi
        else:
            self.min, self.max = torch.minimum(self.min, lo), torch.maximum(self.max, hi)

    @property
    def ready(self) -> bool:
        return self.min is not None

    def range(self, dtype: QuantDtype, scheme: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``(lo, hi)`` to quantize with (may clip outliers, unlike :attr:`min`/:attr:`max`)."""
        if self.min is None:
            raise RuntimeError("observer has seen no data yet")
        return self.min, self.max

    def load(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        """Set the tracked range (from a calibration config)."""
        self.min, self.max = lo.detach().float().clone(), hi.detach().float().clone()
        self.batches = max(self.batches, 1)


class EMAObserver(Observer):
    """Exponential moving average of each batch's min/max (QAT, as in Jacob et al. 2018)."""

    def __init__(self, decay: float = 0.99) -> None:
        super().__init__()
        self.decay = decay

    def _combine(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        if self.min is None or self.min.shape != lo.shape:
            self.min, self.max = lo, hi
        else:
            d = self.decay
            self.min, self.max = d * self.min + (1 - d) * lo, d * self.max + (1 - d) * hi


class _SamplingObserver(Observer):
    """Also keeps a bounded random sample of each unit's values."""

    def __init__(self) -> None:
        super().__init__()
        self.sample: torch.Tensor | None = None

    @torch.no_grad()
    def update(self, units: torch.Tensor) -> None:
        super().update(units)
        units = units.detach().float()
        n = units.shape[-1]
        if n > _SAMPLE_PER_BATCH:
            idx = torch.randint(0, n, (_SAMPLE_PER_BATCH,), device=units.device)
            units = units.index_select(-1, idx)
        if self.sample is None or self.sample.shape[:-1] != units.shape[:-1]:
            self.sample = units
        else:
            self.sample = torch.cat([self.sample, units], -1)[..., -_SAMPLE_MAX:]


class PercentileObserver(_SamplingObserver):
    """Clips at the given percentiles of the observed values (outliers saturate)."""

    def __init__(self, percentile: float = 99.99) -> None:
        super().__init__()
        if not 50.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {percentile}")
        self.percentile = percentile

    def range(self, dtype: QuantDtype, scheme: str) -> tuple[torch.Tensor, torch.Tensor]:
        if self.sample is None:
            return super().range(dtype, scheme)
        q = self.percentile / 100.0
        return torch.quantile(self.sample, 1.0 - q, dim=-1), torch.quantile(self.sample, q, dim=-1)


class MSEObserver(_SamplingObserver):
    """Chooses, per unit, the clipping of the min/max range that minimises quantization MSE."""

    def __init__(self, ratios: int = 20, lowest: float = 0.3) -> None:
        super().__init__()
        self.ratios = torch.linspace(lowest, 1.0, ratios)

    @torch.no_grad()
    def range(self, dtype: QuantDtype, scheme: str) -> tuple[torch.Tensor, torch.Tensor]:
        if self.sample is None:
            return super().range(dtype, scheme)
        x = self.sample
        best_err = best_lo = best_hi = None
        for r in self.ratios.tolist():
            lo, hi = self.min * r, self.max * r
            scale, zp = qparams(lo, hi, dtype, scheme)
            s, z = scale.unsqueeze(-1), zp.unsqueeze(-1)
            xq = (torch.clamp(torch.round(x / s) + z, dtype.qmin, dtype.qmax) - z) * s
            err = (xq - x).pow(2).mean(-1)
            if best_err is None:
                best_err, best_lo, best_hi = err, lo, hi
            else:
                better = err < best_err
                best_err = torch.where(better, err, best_err)
                best_lo, best_hi = torch.where(better, lo, best_lo), torch.where(better, hi, best_hi)
        return best_lo, best_hi


OBSERVERS: dict[str, Callable[[], Observer]] = {
    "minmax": Observer,
    "ema": EMAObserver,
    "percentile": PercentileObserver,
    "mse": MSEObserver,
}


def make_observer(kind: str | Callable[[], Observer]) -> Observer:
    if callable(kind) and not isinstance(kind, str):
        return kind()
    try:
        return OBSERVERS[kind]()
    except KeyError:
        from torchslim.errors import ConfigError

        raise ConfigError(f"unknown observer {kind!r}; allowed: {', '.join(map(repr, OBSERVERS))}") from None


__all__ = ["EMAObserver", "MSEObserver", "OBSERVERS", "Observer", "PercentileObserver", "make_observer", "qparams"]
