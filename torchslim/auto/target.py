"""What the user asks for: a budget on latency, parameters and/or MACs."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Mapping

from torchslim.errors import ConfigError

METRICS = {"latency_ms": "latency", "params": "params", "macs": "macs"}
_ALIASES = {"latency": "latency_ms", "flops": "macs", "parameters": "params", "param": "params"}


@dataclass(frozen=True)
class Bound:
    """One budget: ``metric`` must end at or below ``value`` (absolute, in the metric's unit)."""

    key: str  # as the user wrote it
    metric: str  # 'latency', 'params' or 'macs'
    value: float | None  # absolute budget, once resolved against the dense model
    ratio: float | None  # budget as a share of dense, when the user gave one

    def resolve(self, dense: float) -> "Bound":
        value = self.value if self.ratio is None else self.ratio * dense
        return Bound(self.key, self.metric, value, self.ratio)

    def describe(self) -> str:
        if self.ratio is not None:
            return f"{self.key} ≤ {self.ratio:.0%} of dense"
        return f"{self.key} ≤ {self.value:,.4g}"


class Target:
    """Budgets, all of which the compressed model must meet.

    ``{'params': 2421}``, ``{'macs': '25%'}``, ``{'latency_ms': 12.5}``, ``{'latency_ms': '0.5x'}``:
    a number is absolute (ms, parameter count, MACs); a string ending in ``%`` or ``x`` is a
    share of the dense model's value.
    """

    def __init__(self, spec: Mapping[str, Any]) -> None:
        if not isinstance(spec, Mapping) or not spec:
            raise ConfigError(f"target must be a non-empty dict like {{'params': 2421}} or "
                              f"{{'latency_ms': '0.5x'}}; got {spec!r}")
        self.bounds: list[Bound] = []
        for key, raw in spec.items():
            name = _ALIASES.get(str(key), str(key))
            if name not in METRICS:
                close = difflib.get_close_matches(str(key), [*METRICS, *_ALIASES], n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"target key {key!r} is not a budget{hint}; allowed: {', '.join(METRICS)}")
            value, ratio = _parse_amount(key, raw)
            self.bounds.append(Bound(str(key), METRICS[name], value, ratio))

    @property
    def metrics(self) -> list[str]:
        return [b.metric for b in self.bounds]

    def resolve(self, dense: Mapping[str, float]) -> "Target":
        out = Target.__new__(Target)
        out.bounds = [b.resolve(dense[b.metric]) for b in self.bounds]
        return out

    def describe(self) -> str:
        return ", ".join(b.describe() for b in self.bounds)


def _parse_amount(key: Any, raw: Any) -> tuple[float | None, float | None]:
    if isinstance(raw, bool):
        raise ConfigError(f"target {key!r} is {raw!r}; give a number or a share like '50%' / '0.5x'")
    if isinstance(raw, (int, float)):
        if raw <= 0:
            raise ConfigError(f"target {key!r} is {raw!r}; it must be > 0")
        return float(raw), None
    if isinstance(raw, str):
        text = raw.strip().lower()
        try:
            if text.endswith("%"):
                ratio = float(text[:-1]) / 100.0
            elif text.endswith("x"):
                ratio = float(text[:-1])
            else:
                return _parse_amount(key, float(text))
        except ValueError:
            raise ConfigError(f"target {key!r} is {raw!r}; give a number or a share like '50%' / '0.5x'") from None
        if not 0.0 < ratio < 1.0:
            raise ConfigError(f"target {key!r} is {raw!r}; a share of the dense model must be between 0 and 1")
        return None, ratio
    raise ConfigError(f"target {key!r} is {raw!r}; give a number or a share like '50%' / '0.5x'")


__all__ = ["Bound", "Target", "METRICS"]
