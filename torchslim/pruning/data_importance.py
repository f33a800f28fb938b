"""Data-driven importance: scorers that need statistics gathered while the model trains.

A data scorer is an ordinary registered scorer (see :mod:`torchslim.pruning.importance`)
that carries a ``collector`` factory: :class:`~torchslim.pruning.data_pruners.DataPruner`
starts that collector, runs the user's training loop through the evaluator, and hands the
gathered statistics to the scorer as ``ctx.data``. Register a new one with::

    @register_data_importance("my_metric", collector=GradientCollector)
    def my_metric(ctx):
        return ctx.units(ctx.data["grad_x_weight_sq"]).sum(-1)
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from torchslim.compression.granularity import channel_dim
from torchslim.pruning.importance import ScoreContext, Scorer, register_importance

Key = tuple[str, str]  # (module name, target name)


class Collector:
    """Gathers per-(module, target) statistics during training.

    ``start`` registers hooks (forward hooks on modules, optimizer-step hooks through the
    evaluator), ``data`` returns ``{(module, target): {stat_name: tensor}}``, ``reset``
    forgets what was gathered, ``stop`` removes the hooks.
    """

    # whether a pruner should forget the statistics once it has used them for a pruning step
    reset_on_read = True

    def __init__(self) -> None:
        self._handles: list[Any] = []

    def start(self, targets: dict[Key, nn.Module], evaluator: Any) -> None:
        raise NotImplementedError

    def data(self) -> dict[Key, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


class _StepAccumulator(Collector):
    """Accumulates a per-element statistic of each target before every optimizer step."""

    stat = ""

    def __init__(self) -> None:
        super().__init__()
        self._targets: dict[Key, nn.Module] = {}
        self._sums: dict[Key, torch.Tensor] = {}
        self._count = 0

    def start(self, targets: dict[Key, nn.Module], evaluator: Any) -> None:
        if evaluator is None:
            raise ValueError(f"{type(self).__name__} needs an evaluator to see training steps")
        self._targets = dict(targets)
        self._handles.append(evaluator.on_before_step(self._on_step))

    def statistic(self, tensor: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def _on_step(self) -> None:
        self._count += 1
        for key, module in self._targets.items():
            tensor = getattr(module, key[1])
            if tensor.grad is None:
                continue
            value = self.statistic(tensor.detach(), tensor.grad.detach()).float()
            if key in self._sums:
                self._sums[key] += value
            else:
                self._sums[key] = value.clone()

    def data(self) -> dict[Key, dict[str, torch.Tensor]]:
        return {key: {self.stat: total / max(self._count, 1)} for key, total in self._sums.items()}

    def reset(self) -> None:
        self._sums, self._count = {}, 0


class GradientCollector(_StepAccumulator):
    """First-order Taylor term per element, ``(w * dL/dw)^2``, averaged over steps."""

    stat = "grad_x_weight_sq"

    def statistic(self, tensor: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return (tensor * grad).pow(2)


class MovementCollector(_StepAccumulator):
    """Movement score per element: ``-sum_t w_t * dL/dw_t`` (weights moving away from zero gain).

    This is the score a learned movement-pruning score receives under the straight-through
    estimator, so accumulating it is learning the score. Never reset between mask updates.
    """

    stat = "movement"
    reset_on_read = False

    def statistic(self, tensor: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return -tensor * grad

    def data(self) -> dict[Key, dict[str, torch.Tensor]]:
        return {key: {self.stat: total} for key, total in self._sums.items()}


class ActivationCollector(Collector):
    """Per output channel of each module: share of zeros and mean of ``activation(output)``.

    The activation is applied here (like NNI's APoZ pruner), since in most models it is a
    functional call after the layer. Channels are dim 1 for conv outputs, the last dim for
    linear outputs.
    """

    def __init__(self, activation: Callable[[torch.Tensor], torch.Tensor] | str = "relu") -> None:
        super().__init__()
        self.activation = _activation(activation)
        self._zeros: dict[Key, torch.Tensor] = {}
        self._sums: dict[Key, torch.Tensor] = {}
        self._counts: dict[Key, int] = {}

    def start(self, targets: dict[Key, nn.Module], evaluator: Any) -> None:
        for key, module in targets.items():
            self._handles.append(module.register_forward_hook(self._hook_for(key, module)))

    def _hook_for(self, key: Key, module: nn.Module) -> Callable[..., None]:
        def hook(mod: nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor) and torch.is_grad_enabled() and mod.training:
                self._add(key, _channels_last(module, self.activation(output.detach())))

        return hook

    def _add(self, key: Key, act: torch.Tensor) -> None:
        flat = act.reshape(-1, act.shape[-1]).float()
        zeros, sums = (flat == 0).sum(0).float(), flat.sum(0)
        if key in self._sums:
            self._zeros[key] += zeros
            self._sums[key] += sums
            self._counts[key] += flat.shape[0]
        else:
            self._zeros[key], self._sums[key], self._counts[key] = zeros, sums, flat.shape[0]

    def data(self) -> dict[Key, dict[str, torch.Tensor]]:
        return {
            key: {"apoz": self._zeros[key] / self._counts[key], "mean_activation": self._sums[key] / self._counts[key]}
            for key in self._sums
        }

    def reset(self) -> None:
        self._zeros, self._sums, self._counts = {}, {}, {}


def _activation(activation: Callable[[torch.Tensor], torch.Tensor] | str) -> Callable[[torch.Tensor], torch.Tensor]:
    if callable(activation):
        return activation
    table = {"relu": F.relu, "relu6": F.relu6, "gelu": F.gelu, "identity": lambda t: t}
    if activation not in table:
        raise ValueError(f"unknown activation {activation!r}; allowed: {', '.join(table)} or a callable")
    return table[activation]


def _channels_last(module: nn.Module, output: torch.Tensor) -> torch.Tensor:
    """Move the output-channel dim of a layer's output last."""
    if isinstance(module, nn.Linear) or output.dim() < 2:
        return output
    return output.movedim(1, -1)


# --- registration ------------------------------------------------------------------------------
def register_data_importance(name: str, collector: Callable[[], Collector]) -> Callable[[Scorer], Scorer]:
    """Register a scorer by name together with the collector that feeds its ``ctx.data``."""

    def add(fn: Scorer) -> Scorer:
        fn.collector = collector  # type: ignore[attr-defined]
        return register_importance(name)(fn)

    return add


def collector_of(scorer: Scorer) -> Callable[[], Collector] | None:
    return getattr(scorer, "collector", None)


def _need(ctx: ScoreContext, stat: str) -> torch.Tensor:
    value = ctx.data.get(stat)
    if value is None:
        raise RuntimeError(
            f"no {stat!r} statistics for {ctx.module_name}.{ctx.target}: this importance needs training "
            "data (use a data-driven pruner with an evaluator, and check that the layer ran in training mode)"
        )
    return value


def channel_to_grid(ctx: ScoreContext, per_channel: torch.Tensor) -> torch.Tensor:
    """Spread a per-output-channel statistic over the target's block grid."""
    grid = ctx.units().shape[:-1]
    dim = channel_dim(ctx.module, ctx.target)
    n = grid[dim] if grid else 1
    values = per_channel.reshape(n, -1).mean(-1) if per_channel.numel() != n else per_channel.reshape(n)
    shape = [1] * len(grid)
    if shape:
        shape[dim] = n
    return values.reshape(shape).expand(*grid).clone() if shape else values


@register_data_importance("taylor", collector=GradientCollector)
def taylor_importance(ctx: ScoreContext) -> torch.Tensor:
    """First-order Taylor estimate of the loss change when a block is removed (Molchanov et al.)."""
    return ctx.units(_need(ctx, GradientCollector.stat)).sum(-1)


@register_data_importance("movement", collector=MovementCollector)
def movement_importance(ctx: ScoreContext) -> torch.Tensor:
    """Accumulated movement ``-sum w * grad`` per block (Sanh et al., 2020)."""
    return ctx.units(_need(ctx, MovementCollector.stat)).sum(-1)


@register_data_importance("apoz", collector=ActivationCollector)
def apoz_importance(ctx: ScoreContext) -> torch.Tensor:
    """1 - Average Percentage of Zeros of the channel's activation (Hu et al., 2016)."""
    return channel_to_grid(ctx, 1.0 - _need(ctx, "apoz"))


@register_data_importance("mean_activation", collector=ActivationCollector)
def mean_activation_importance(ctx: ScoreContext) -> torch.Tensor:
    """Mean activation of the channel (Molchanov et al., 2017)."""
    return channel_to_grid(ctx, _need(ctx, "mean_activation"))


@register_importance("slim")
def slim_importance(ctx: ScoreContext) -> torch.Tensor:
    """|scaling factor| of a normalisation layer's channel (Network Slimming, Liu et al.)."""
    return ctx.units().abs().sum(-1)


def targets_of(pruner: Any) -> dict[Key, nn.Module]:
    """(module, target) -> module for every tensor target a pruner's config selected."""
    modules = dict(pruner.model.named_modules())
    return {
        (name, target): modules[name]
        for name, targets in pruner.settings.items()
        for target in targets
        if not target.startswith("_")
    }
