"""NNI v2's auto-compression names as thin entry points over :func:`torchslim.auto.compress`.

NNI 3.0 dropped these; its v2 users call ``pruner.compress()`` then ``get_best_result()``.
A config_list's ``total_sparsity`` (or ``sparsity`` / ``sparse_ratio``) becomes a parameter
budget of ``1 - total_sparsity`` of the dense model; ``op_types`` / ``op_names`` with
``exclude: True`` (or ``exclude_op_names``) choose what may be pruned.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from torch import nn

from torchslim.auto.sensitivity import SPARSITIES
from torchslim.auto.units import DEFAULT_OP_TYPES
from torchslim.errors import ConfigError

_RATIO_KEYS = ("total_sparsity", "sparsity", "sparse_ratio", "sparsity_per_layer")
_KNOWN = {*_RATIO_KEYS, "op_types", "op_names", "exclude", "exclude_op_names", "max_sparsity_per_layer",
          "max_sparse_ratio"}


def _translate(config_list: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    ratio, op_types, exclude, cap = None, list(DEFAULT_OP_TYPES), [], 0.9
    for index, entry in enumerate(config_list):
        unknown = sorted(set(entry) - _KNOWN)
        if unknown:
            raise ConfigError(f"config_list[{index}] has key(s) {unknown} an auto-compression pruner does not "
                              f"use; allowed: {', '.join(sorted(_KNOWN))}")
        if entry.get("exclude"):
            exclude += list(entry.get("op_names", []))
            continue
        exclude += list(entry.get("exclude_op_names", []))
        for key in _RATIO_KEYS:
            if key in entry:
                value = entry[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                    raise ConfigError(f"config_list[{index}][{key!r}] is {value!r}; it must be a number in (0, 1)")
                ratio = float(value)
        if "op_types" in entry:
            op_types = ["Conv2d" if t == "default" else t for t in entry["op_types"]]
        for key in ("max_sparsity_per_layer", "max_sparse_ratio"):
            if key in entry:
                cap = float(entry[key])
    if ratio is None:
        raise ConfigError(f"config_list needs a sparsity (one of {', '.join(_RATIO_KEYS)})")
    return {"target": {"params": f"{(1 - ratio) * 100:.6g}%"}, "op_types": op_types, "exclude": exclude,
            "max_sparsity": cap}


class _SearchPruner:
    """Shared shape of the v2 search pruners: ``compress()`` → ``(model, masks)``;
    ``get_best_result()`` → ``(task_id, model, masks, score, config_list)``."""

    algorithm = "netadapt"

    def __init__(self, model: nn.Module, config_list: Sequence[Mapping[str, Any]], evaluator: Callable | None = None,
                 dummy_input: Any = None, finetuner: Callable | None = None, pruning_algorithm: str = "l1",
                 **options: Any) -> None:
        if dummy_input is None:
            raise ConfigError(f"{type(self).__name__} needs dummy_input (torchslim always speeds up the result)")
        self.model, self.dummy_input, self.evaluator, self.finetuner = model, dummy_input, evaluator, finetuner
        self.settings = _translate(config_list)
        self.pruner = {"level": "l1", "l1": "l1", "l2": "l2", "fpgm": "fpgm"}.get(pruning_algorithm)
        if self.pruner is None:
            raise ConfigError(f"pruning_algorithm {pruning_algorithm!r} is not supported here; allowed: l1, l2, fpgm")
        self.options = options
        self.result = None

    def compress(self) -> tuple[nn.Module, dict]:
        from torchslim.auto.pipeline import compress

        self.result = compress(self.model, self.dummy_input, self.evaluator, self.settings["target"], self.finetuner,
                               algorithm=self.algorithm, algorithm_options=self.options, pruner=self.pruner,
                               op_types=self.settings["op_types"], exclude=self.settings["exclude"],
                               max_sparsity=self.settings["max_sparsity"])
        return self.result.model, {}

    def get_best_result(self) -> tuple[int, nn.Module, dict, float | None, list[dict[str, Any]]]:
        if self.result is None:
            self.compress()
        return 0, self.result.model, {}, self.result.compressed.get("score"), self.result.config_list


class NetAdaptPruner(_SearchPruner):
    """NNI v2 ``NetAdaptPruner``: greedy per-layer search (``total_iteration`` steps)."""

    algorithm = "netadapt"

    def __init__(self, model: nn.Module, config_list: Sequence[Mapping[str, Any]], evaluator: Callable | None = None,
                 total_iteration: int = 8, **kwargs: Any) -> None:
        super().__init__(model, config_list, evaluator, iterations=total_iteration, **kwargs)


class SimulatedAnnealingPruner(_SearchPruner):
    """NNI v2 ``SimulatedAnnealingPruner`` (temperatures in score units)."""

    algorithm = "anneal"

    def __init__(self, model: nn.Module, config_list: Sequence[Mapping[str, Any]], evaluator: Callable | None = None,
                 start_temperature: float = 1.0, stop_temperature: float = 0.05, cool_down_rate: float = 0.85,
                 perturbation_magnitude: float = 0.35, **kwargs: Any) -> None:
        super().__init__(model, config_list, evaluator, start_temperature=start_temperature,
                         stop_temperature=stop_temperature, cool_down_rate=cool_down_rate,
                         perturbation_magnitude=perturbation_magnitude, **kwargs)


class AMCPruner(_SearchPruner):
    """NNI v2 ``AMCPruner(total_episode, model, config_list, dummy_input, evaluator)``: the
    experiment engine's TPE tuner stands in for AMC's DDPG agent (``total_episode`` trials)."""

    algorithm = "tuner"

    def __init__(self, total_episode: int, model: nn.Module, config_list: Sequence[Mapping[str, Any]],
                 dummy_input: Any = None, evaluator: Callable | None = None, **kwargs: Any) -> None:
        super().__init__(model, config_list, evaluator, dummy_input=dummy_input, trials=total_episode, **kwargs)


class AutoCompressPruner(_SearchPruner):
    """NNI v2 ``AutoCompressPruner``: simulated annealing over the allocation, then fine-tuning
    (ADMM is not used: masks are applied by speedup, and ``finetuner`` recovers accuracy)."""

    algorithm = "anneal"

    def __init__(self, model: nn.Module, config_list: Sequence[Mapping[str, Any]], total_iteration: int = 1,
                 admm_params: Mapping[str, Any] | None = None, sa_params: Mapping[str, Any] | None = None,
                 log_dir: str = ".", keep_intermediate_result: bool = False, evaluator: Callable | None = None,
                 **kwargs: Any) -> None:
        sa = dict(sa_params or {})
        sa.pop("evaluator", None)
        algo = sa.pop("pruning_algorithm", kwargs.pop("pruning_algorithm", "l1"))
        super().__init__(model, config_list, evaluator, pruning_algorithm=algo, **sa, **kwargs)


class SensitivityAnalysis:
    """NNI's ``SensitivityAnalysis(model, val_func, sparsities, prune_type)``:
    ``analysis()`` → ``{layer: {sparsity: score}}`` (a coupled group is named by its first layer)."""

    def __init__(self, model: nn.Module, val_func: Callable[..., float], sparsities: Sequence[float] | None = None,
                 prune_type: str = "l1", early_stop_mode: str | None = None, early_stop_value: float | None = None,
                 dummy_input: Any = None) -> None:
        self.model, self.val_func = model, val_func
        self.sparsities = list(sparsities or SPARSITIES)
        self.prune_type = prune_type
        self.dummy_input = dummy_input
        self.sensitivities: dict[str, dict[float, float]] = {}

    def analysis(self, val_args: Sequence[Any] = (), val_kwargs: Mapping[str, Any] | None = None,
                 specified_layers: Sequence[str] | None = None) -> dict[str, dict[float, float]]:
        from torchslim.auto.pipeline import masked_scorer
        from torchslim.auto.sensitivity import sensitivity_analysis
        from torchslim.auto.units import CostModel

        example = self.dummy_input if self.dummy_input is not None else _guess_input(self.model)
        cost = CostModel(self.model, example)
        evaluate = lambda m: float(self.val_func(m, *val_args, **(val_kwargs or {})))  # noqa: E731
        score = masked_scorer(self.model, cost, self.prune_type, evaluate)
        table = sensitivity_analysis(len(cost.units), score, sparsities=self.sparsities)
        for i, unit in enumerate(cost.units):
            if specified_layers and not set(unit.members) & set(specified_layers):
                continue
            self.sensitivities[unit.members[0]] = dict(zip(self.sparsities, table[f"unit{i}"]))
        return self.sensitivities


def _guess_input(model: nn.Module) -> Any:
    import torch

    first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
    if isinstance(first, nn.Conv2d):
        return torch.randn(1, first.in_channels, 28 if first.in_channels == 1 else 224, 28 if first.in_channels == 1 else 224)
    if isinstance(first, nn.Linear):
        return torch.randn(1, first.in_features)
    raise ConfigError("SensitivityAnalysis needs dummy_input for this model")


__all__ = ["AMCPruner", "AutoCompressPruner", "NetAdaptPruner", "SensitivityAnalysis", "SimulatedAnnealingPruner"]
