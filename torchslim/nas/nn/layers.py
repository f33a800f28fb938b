"""``Mutable*`` layers: torch layers whose sizes/rates may be ``torchslim.choice(...)``.

Unfrozen they hold the largest weights and run the active sizes as slices (weight sharing,
as in single-path one-shot NAS); frozen they are plain torch layers, freshly initialised.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchslim.errors import ConfigError
from torchslim.experiment.searchspace import Categorical
from torchslim.nas.nn.base import Mutable

__all__ = ["MutableLinear", "MutableConv2d", "MutableDropout", "MutableBatchNorm2d",
           "MutableLayerNorm"]


def _largest(value: Any, what: str) -> Any:
    if isinstance(value, Categorical):
        if not all(isinstance(v, (int, float)) for v in value.options):
            raise ConfigError(f"{what} choice {value.label!r} needs numbers, got {value.options}")
        return max(value.options)
    return value


def _pick(value: Any, sample: Mapping[str, Any]) -> Any:
    return sample[value.label] if isinstance(value, Categorical) else value


class _MutableLayer(Mutable):
    """Keeps the constructor arguments (some of them choices) of one torch layer."""

    layer: type[nn.Module]

    def __init__(self, **args: Any) -> None:
        super().__init__()
        self.args = args

    def decisions(self) -> list[Categorical]:
        seen: dict[str, Categorical] = {}
        for v in self.args.values():
            if isinstance(v, Categorical):
                seen.setdefault(v.label, v)
        return list(seen.values())

    def concrete(self, sample: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The layer's arguments for ``sample`` (the active one when None)."""
        if sample is None:
            return {k: self.value(v) for k, v in self.args.items()}
        return {k: _pick(v, sample) for k, v in self.args.items()}

    def freeze(self, sample: Mapping[str, Any]) -> nn.Module:
        return self.layer(**self.concrete(sample))

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.args.items())


class MutableLinear(_MutableLayer):
    """``nn.Linear`` whose ``in_features`` / ``out_features`` may be choices."""

    layer = nn.Linear

    def __init__(self, in_features: Any, out_features: Any, bias: bool = True) -> None:
        super().__init__(in_features=in_features, out_features=out_features, bias=bias)
        full = nn.Linear(_largest(in_features, "in_features"),
                         _largest(out_features, "out_features"), bias)
        self.weight, self.bias = full.weight, full.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.concrete()
        o, i = a["out_features"], a["in_features"]
        return F.linear(x, self.weight[:o, :i], None if self.bias is None else self.bias[:o])


class MutableConv2d(_MutableLayer):
    """``nn.Conv2d`` whose channels, kernel size, stride, padding may be choices.

    A smaller kernel runs as the centre of the largest (weight sharing); ``groups`` is fixed.
    """

    layer = nn.Conv2d

    def __init__(self, in_channels: Any, out_channels: Any, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: int = 1, groups: int = 1, bias: bool = True) -> None:
        super().__init__(in_channels=in_channels, out_channels=out_channels,
                         kernel_size=kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias)
        if not isinstance(groups, int) or (groups != 1 and (
                isinstance(in_channels, Categorical) or isinstance(out_channels, Categorical))):
            raise ConfigError("MutableConv2d: groups must be a fixed int, and 1 when the "
                              "channel counts are choices")
        full = nn.Conv2d(_largest(in_channels, "in_channels"),
                         _largest(out_channels, "out_channels"),
                         _largest(kernel_size, "kernel_size"), groups=groups, bias=bias)
        self.weight, self.bias = full.weight, full.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.concrete()
        k, big = a["kernel_size"], self.weight.shape[-1]
        start = (big - k) // 2
        w = self.weight[:a["out_channels"], :a["in_channels"] // a["groups"],
                        start:start + k, start:start + k]
        b = None if self.bias is None else self.bias[:a["out_channels"]]
        return F.conv2d(x, w, b, a["stride"], a["padding"], a["dilation"], a["groups"])


class MutableDropout(_MutableLayer):
    """``nn.Dropout`` whose ``p`` may be a choice."""

    layer = nn.Dropout

    def __init__(self, p: Any = 0.5, inplace: bool = False) -> None:
        super().__init__(p=p, inplace=inplace)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.concrete()["p"], self.training, self.args["inplace"])


class MutableBatchNorm2d(_MutableLayer):
    """``nn.BatchNorm2d`` whose ``num_features`` may be a choice (statistics are sliced)."""

    layer = nn.BatchNorm2d

    def __init__(self, num_features: Any, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__(num_features=num_features, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track_running_stats)
        self.full = nn.BatchNorm2d(_largest(num_features, "num_features"), eps, momentum,
                                   affine, track_running_stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, bn = self.concrete()["num_features"], self.full

        def cut(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[:n]

        use_batch = self.training or bn.running_mean is None
        return F.batch_norm(x, cut(bn.running_mean), cut(bn.running_var), cut(bn.weight),
                            cut(bn.bias), use_batch, bn.momentum, bn.eps)


class MutableLayerNorm(_MutableLayer):
    """``nn.LayerNorm`` over the last dimension, whose size may be a choice."""

    layer = nn.LayerNorm

    def __init__(self, normalized_shape: Any, eps: float = 1e-5,
                 elementwise_affine: bool = True) -> None:
        super().__init__(normalized_shape=normalized_shape, eps=eps,
                         elementwise_affine=elementwise_affine)
        self.full = nn.LayerNorm(_largest(normalized_shape, "normalized_shape"), eps,
                                 elementwise_affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, ln = self.concrete()["normalized_shape"], self.full
        w = None if ln.weight is None else ln.weight[:n]
        b = None if ln.bias is None else ln.bias[:n]
        return F.layer_norm(x, (n,), w, b, ln.eps)
