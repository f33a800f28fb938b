"""The pruning family's NNI boundary: every legacy name, call form and config key, in one place.

The core pruners keep one typed constructor each::

    Pruner(model, config_list, evaluator=None, *, importance=None, mode='normal', dummy_input=None)
    DataPruner(model, config_list, evaluator=None, training_steps=None, *, ...)
    ScheduledPruner(pruner, interval_steps=100, total_times=10, evaluator=None)

Their metaclass sends every call here first (:func:`pruner_call`, :func:`schedule_call`);
what NNI v0 / v1 / v2 wrote is translated to those signatures, with one
``DeprecationWarning`` naming the modern form. Kept import-light: the package ``__init__``
reads :data:`ALIASES` from here.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from torchslim.utils.legacy import Built, deprecated, first_arg_unwrapped

# renamed public names: old -> (module, modern name)
ALIASES: dict[str, tuple[str, str]] = {
    "AGP_Pruner": ("torchslim.pruning.schedules", "AGPPruner"),
    "ActivationAPoZRankFilterPruner": ("torchslim.pruning.data_pruners", "ActivationAPoZRankPruner"),
    "ActivationMeanRankFilterPruner": ("torchslim.pruning.data_pruners", "ActivationMeanRankPruner"),
    "L1FilterPruner": ("torchslim.pruning.pruners", "L1NormPruner"),
    "L2FilterPruner": ("torchslim.pruning.pruners", "L2NormPruner"),
    "TaylorFOWeightPruner": ("torchslim.pruning.data_pruners", "TaylorPruner"),
    "TaylorFOWeightFilterPruner": ("torchslim.pruning.data_pruners", "TaylorPruner"),
    "auto_set_denpendency_group_ids": ("torchslim.pruning.dependency", "auto_set_dependency_group_ids"),
}

# renamed attributes of a pruner object: old -> modern
ATTRIBUTES = {"bound_model": "model"}

# NNI v0 AGP keys: they describe the schedule, not the layer; only final_sparsity stays in the entry
V0_SCHEDULE_KEYS = ("initial_sparsity", "start_epoch", "end_epoch", "frequency")

# v2 keyword spellings of the training pieces of a data pruner
_V2_TRAINING_KWARGS = ("optimizer", "trainer", "criterion", "traced_optimizer")
_V2_STEP_KWARGS = ("training_batches", "sparsifying_training_batches", "statistics_batch_num", "training_steps")


# v2's pruning_algorithm names -> pruner class path (module, class)
ALGORITHMS = {
    "level": ("torchslim.pruning.pruners", "LevelPruner"),
    "l1": ("torchslim.pruning.pruners", "L1NormPruner"),
    "l2": ("torchslim.pruning.pruners", "L2NormPruner"),
    "fpgm": ("torchslim.pruning.pruners", "FPGMPruner"),
    "slim": ("torchslim.pruning.data_pruners", "SlimPruner"),
    "taylor": ("torchslim.pruning.data_pruners", "TaylorPruner"),
    "taylorfo": ("torchslim.pruning.data_pruners", "TaylorPruner"),
    "apoz": ("torchslim.pruning.data_pruners", "ActivationAPoZRankPruner"),
    "mean_activation": ("torchslim.pruning.data_pruners", "ActivationMeanRankPruner"),
}


def make_pruner(algorithm: str, model: Any, config_list: Sequence[Mapping[str, Any]],
                evaluator: Any = None, **params: Any) -> Any:
    """A sub-pruner from a v2 ``pruning_algorithm`` name."""
    import importlib

    from torchslim.errors import ConfigError
    from torchslim.pruning.data_pruners import DataPruner

    if algorithm not in ALGORITHMS:
        raise ConfigError(f"unknown pruning_algorithm {algorithm!r}; allowed: {', '.join(sorted(ALGORITHMS))}")
    module, name = ALGORITHMS[algorithm]
    cls = getattr(importlib.import_module(module), name)
    if issubclass(cls, DataPruner):
        return cls(model, config_list, evaluator, **params)
    return cls(model, config_list, **params)


# --- config_list -------------------------------------------------------------------------------------
def translate_config_list(config_list: Any) -> tuple[Any, dict[str, Any]]:
    """``op_name`` and the v0 AGP keys → canonical entries; returns (config_list, v0 schedule keys).

    Anything that is not a list of dicts is returned unchanged for the core to refuse in its words.
    """
    if not isinstance(config_list, (list, tuple)) or not all(isinstance(e, Mapping) for e in config_list):
        return config_list, {}
    from torchslim.config.schema import InvalidValue, ratio

    schedule: dict[str, Any] = {}
    out = []
    for index, entry in enumerate(config_list):
        entry, where = dict(entry), f"config_list[{index}]"
        if "op_name" in entry:
            deprecated("config key 'op_name'", "'op_names': [name]")
            name = entry.pop("op_name")
            if not isinstance(name, str):
                raise InvalidValue(where, "op_name", name, "a module name (a string)", canonical="op_names")
            entry.setdefault("op_names", [name])
        if "final_sparsity" in entry:
            deprecated("the v0 AGP keys (initial_sparsity, final_sparsity, start_epoch, end_epoch, frequency)",
                       "'sparse_ratio' in config_list and AGPPruner(pruner, interval_steps, total_times)")
            try:
                entry.setdefault("sparsity", ratio("sparse_ratio", allow_one=True)(entry.pop("final_sparsity"), where))
            except InvalidValue as exc:
                raise exc.as_written("final_sparsity") from None
            for key in V0_SCHEDULE_KEYS:
                if key in entry:
                    schedule.setdefault(key, entry.pop(key))
        out.append(entry)
    return out, schedule


def _is_config_list(obj: Any) -> bool:
    return isinstance(obj, (list, tuple)) and bool(obj) and all(isinstance(e, Mapping) for e in obj)


def _is_module(obj: Any) -> bool:
    from torch import nn

    return isinstance(obj, nn.Module)


# --- pruners ---------------------------------------------------------------------------------------------
def pruner_call(cls: type, args: tuple, kwargs: dict[str, Any]) -> Any:
    """Translate a call of a :class:`~torchslim.pruning.base.Pruner` class to its typed signature."""
    if args and _is_config_list(args[0]) and not kwargs.get("model"):
        deprecated(f"{cls.__name__}(config_list); pruner(model)", f"{cls.__name__}(model, config_list).compress()")
        return Built(V0Pruner(cls, args[0], args[1:], kwargs))
    args, kwargs = first_arg_unwrapped(args, kwargs)
    if len(args) > 1:
        args[1], _ = translate_config_list(args[1])
    elif "config_list" in kwargs:
        kwargs["config_list"], _ = translate_config_list(kwargs["config_list"])
    from torchslim.pruning.data_pruners import DataPruner

    if issubclass(cls, DataPruner):
        args, kwargs = _data_pruner_form(cls, args, kwargs)
    from torchslim.pruning.data_pruners import SlimPruner

    if issubclass(cls, SlimPruner):
        args, kwargs = _slim_form(cls, args, kwargs)
    return tuple(args), kwargs


def _slim_form(cls: type, args: list, kwargs: dict[str, Any]) -> tuple[list, dict[str, Any]]:
    """v1/v2 SlimPruner keywords: ``scale``, ``sparsifying_training_epochs``, ``mode='global'``."""
    if "scale" in kwargs:
        deprecated(f"{cls.__name__}(..., scale=)", f"{cls.__name__}(..., regular_scale=)")
        kwargs.setdefault("regular_scale", kwargs.pop("scale"))
    if "sparsifying_training_epochs" in kwargs:
        deprecated(f"{cls.__name__}(..., sparsifying_training_epochs=)", f"{cls.__name__}(..., training_epochs=)")
        kwargs.setdefault("training_epochs", kwargs.pop("sparsifying_training_epochs"))
    if kwargs.get("mode") == "global":
        deprecated(f"{cls.__name__}(..., mode='global')", "one 'global_group_id' on the config_list entries")
        kwargs.pop("mode")
        index = 1 if len(args) > 1 else None
        config_list = args[1] if index else kwargs["config_list"]
        config_list = [dict(entry, global_group_id=entry.get("global_group_id", "slim"))
                       if not entry.get("exclude") else entry for entry in config_list]
        if index:
            args[1] = config_list
        else:
            kwargs["config_list"] = config_list
    return args, kwargs


def _data_pruner_form(cls: type, args: list, kwargs: dict[str, Any]) -> tuple[list, dict[str, Any]]:
    """v2.0–2.4 ``(model, cfg, optimizer, trainer, criterion, batches)``; v2.5+ ``(model, cfg, trainer,
    traced_optimizer, criterion, batches)``; and their keyword spellings → ``evaluator``, ``training_steps``."""
    import torch

    from torchslim.evaluator import Evaluator, as_evaluator

    head, rest = args[:2], args[2:]
    parts: dict[str, Any] = {k: kwargs.pop(k) for k in _V2_TRAINING_KWARGS if k in kwargs}
    if "traced_optimizer" in parts:
        parts["optimizer"] = parts.pop("traced_optimizer")
    steps = [kwargs.pop(k) for k in _V2_STEP_KWARGS if k in kwargs]
    first = rest[0] if rest else kwargs.get("evaluator")
    if isinstance(first, torch.optim.Optimizer):
        names = ("optimizer", "trainer", "criterion")
    elif callable(first) and not isinstance(first, Evaluator):
        names = ("trainer", "optimizer", "criterion")
    else:
        names = ()
    if names and rest:
        parts.update(zip(names, rest[:3]))
        steps = rest[3:4] + steps
        rest = []
    elif names:
        parts[names[0]] = kwargs.pop("evaluator")
    if not parts:
        if steps:
            kwargs["training_steps"] = steps[0]
        return head + rest, kwargs
    deprecated(f"{cls.__name__}(model, config_list, optimizer, trainer, criterion, ...)",
               f"{cls.__name__}(model, config_list, TorchEvaluator(training_func, optimizer, training_step), "
               "training_steps)")
    kwargs["evaluator"] = as_evaluator(None, optimizer=parts.get("optimizer"), trainer=parts.get("trainer"),
                                       criterion=parts.get("criterion"), dummy_input=kwargs.get("dummy_input"))
    if steps:
        kwargs["training_steps"] = steps[0]
    return head, kwargs


class V0Pruner:
    """NNI v0: ``pruner = LevelPruner(config_list)``; ``pruner(model)`` prunes and returns the model.

    After the call every attribute (``update_epoch``, ``export_model``...) is the real pruner's.
    """

    def __init__(self, cls: type, config_list: Sequence[Mapping[str, Any]], args: tuple, kwargs: dict[str, Any]):
        translate_config_list(config_list)  # its key warnings now, at the user's line; translated again later
        self._cls, self._config_list, self._args, self._kwargs = cls, config_list, args, kwargs
        self.pruner: Any = None

    def __call__(self, model: Any) -> Any:
        import warnings

        with warnings.catch_warnings():  # this form's one warning was given at construction
            warnings.simplefilter("ignore", DeprecationWarning)
            self.pruner = self._cls(model, self._config_list, *self._args, **self._kwargs)
        self.pruner.compress()
        return model

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or self.__dict__.get("pruner") is None:
            raise AttributeError(f"{name!r}: call the v0 pruner on a model first (pruner(model))")
        return getattr(self.pruner, name)


# --- schedules ------------------------------------------------------------------------------------------
def schedule_call(cls: type, args: tuple, kwargs: dict[str, Any]) -> Any:
    """Translate a call of a schedule class (AGP, linear, lottery ticket)."""
    args, kwargs = first_arg_unwrapped(args, kwargs)
    if "reset_weight" in kwargs:
        deprecated("reset_weight=", "reset_weights=")
        kwargs.setdefault("reset_weights", kwargs.pop("reset_weight"))
    if args and _is_config_list(args[0]):
        deprecated(f"{cls.__name__}(config_list); pruner(model)",
                   f"{cls.__name__}(pruner, interval_steps, total_times, evaluator).compress()")
        return Built(V0Pruner(cls, args[0], tuple(args[1:]), kwargs))
    model = args[0] if args else kwargs.get("model")
    if not _is_module(model):
        return tuple(args), kwargs
    return Built(_schedule_from_model(cls, args, kwargs))


def _schedule_from_model(cls: type, args: list, kwargs: dict[str, Any]) -> Any:
    """v1/v2 schedules built from ``(model, config_list, ...)``."""
    from torchslim.pruning.schedules import LotteryTicketPruner

    kwargs.pop("model", None)
    model = args.pop(0)
    config_list = args.pop(0) if args else kwargs.pop("config_list", None)
    if not _is_config_list(config_list):
        raise TypeError(f"{cls.__name__}(model, config_list, ...) needs a config_list (a list of dicts), "
                        f"got {config_list!r}")
    config_list, v0 = translate_config_list(config_list)
    if (args and isinstance(args[0], str)) or "total_iteration" in kwargs:
        return _v2_iterative(cls, model, config_list, args, kwargs)
    if issubclass(cls, LotteryTicketPruner):
        config_list = [dict(e) for e in config_list]
        for entry in config_list:
            if "prune_iterations" in entry:
                kwargs.setdefault("num_iterations", int(entry.pop("prune_iterations")))
    if v0:
        start, end, freq = v0.get("start_epoch", 0), v0.get("end_epoch", 10), max(int(v0.get("frequency", 1)), 1)
        kwargs.setdefault("num_iterations", max((int(end) - int(start)) // freq, 1))
        kwargs.setdefault("epochs_per_iteration", freq)
    return _v1_v2_schedule(cls, model, config_list, args, kwargs)


def _v1_v2_schedule(cls: type, model: Any, config_list: list, args: list, kwargs: dict[str, Any]) -> Any:
    """v1 ``(model, cfg, optimizer, pruning_algorithm=, num_iterations=)`` (the user trains, calling
    ``update_epoch``); v2.0 ``(model, cfg, optimizer, trainer, criterion, num_iterations, epochs_per_iteration,
    pruning_algorithm)`` (``compress()`` trains)."""
    from torchslim.evaluator import as_evaluator
    from torchslim.pruning.schedules import LotteryTicketPruner

    names = ("optimizer", "trainer", "criterion", "num_iterations", "epochs_per_iteration", "pruning_algorithm")
    given = dict(zip(names, args))
    for key in names:
        if key in kwargs:
            given[key] = kwargs.pop(key)
    lr_scheduler = kwargs.pop("lr_scheduler", None)
    reset = kwargs.pop("reset_weights", None)
    params = dict(kwargs.pop("pruning_params", None) or {})
    dummy_input = kwargs.pop("dummy_input", None)
    speedup = bool(kwargs.pop("speedup", False))
    optimizer, trainer = given.get("optimizer"), given.get("trainer")
    deprecated(f"{cls.__name__}(model, config_list, optimizer, ...)",
               f"{cls.__name__}(L1NormPruner(model, config_list), interval_steps, total_times, "
               "TorchEvaluator(...)).compress(max_steps)")
    evaluator = as_evaluator(None, optimizer=optimizer, trainer=trainer, criterion=given.get("criterion"),
                             dummy_input=dummy_input)
    sub = make_pruner(given.get("pruning_algorithm", "level"), model, config_list, evaluator,
                      **params, **({"dummy_input": dummy_input} if dummy_input is not None else {}), **kwargs)
    total = int(given.get("num_iterations", 10))
    extra: dict[str, Any] = {}
    if issubclass(cls, LotteryTicketPruner):
        if reset is not None:
            extra["reset_weights"] = reset
        if evaluator is None:
            extra["training_state"] = [obj for obj in (optimizer, lr_scheduler) if obj is not None]
    from torchslim.utils.legacy import NNICallForms

    schedule = NNICallForms.__call__(cls, sub, 1, total, evaluator, speedup=speedup, dummy_input=dummy_input, **extra)
    schedule.epochs_per_iteration = int(given.get("epochs_per_iteration", 1))
    return schedule


def _v2_iterative(cls: type, model: Any, config_list: list, args: list, kwargs: dict[str, Any]) -> "V2IterativePruner":
    """v2.x ``LinearPruner(model, config_list, 'l1', total_iteration, log_dir, keep_intermediate_result,
    finetuner, speedup, dummy_input, evaluator, pruning_params)``."""
    from torchslim.pruning.schedules import LotteryTicketPruner

    names = ("pruning_algorithm", "total_iteration", "log_dir", "keep_intermediate_result", "finetuner",
             "speedup", "dummy_input", "evaluator")
    if issubclass(cls, LotteryTicketPruner):
        names += ("reset_weights", "pruning_params")
    else:
        names += ("pruning_params",)
    given = dict(zip(names, args))
    for key in (*names, "reset_weights"):
        if key in kwargs:
            given[key] = kwargs.pop(key)
    if kwargs:
        raise TypeError(f"{cls.__name__} (v2 form) got unexpected arguments: {', '.join(kwargs)}")
    algorithm = given["pruning_algorithm"]
    deprecated(f"{cls.__name__}(model, config_list, {algorithm!r}, total_iteration, ...)",
               f"{cls.__name__}(<pruner for {algorithm!r}>(model, config_list), interval_steps, total_times, "
               "evaluator).compress(max_steps)")
    sub = make_pruner(algorithm, model, config_list, None, **dict(given.get("pruning_params") or {}))
    extra = {"reset_weights": given["reset_weights"]} if "reset_weights" in given else {}
    from torchslim.utils.legacy import NNICallForms

    schedule = NNICallForms.__call__(cls, sub, 1, int(given.get("total_iteration", 10)), None,
                                     speedup=bool(given.get("speedup", False)), dummy_input=given.get("dummy_input"),
                                     **extra)
    return V2IterativePruner(schedule, given.get("finetuner"), given.get("evaluator"))


class V2IterativePruner:
    """NNI v2.x iterative pruners: ``compress()`` runs ``total_iteration`` rounds of
    (prune a step further, ``finetuner(model)``, ``evaluator(model)``); ``get_best_result()`` then gives
    ``(task_id, model, masks, score, config_list)`` of the best-scoring round (the last without evaluator)."""

    def __init__(self, schedule: Any, finetuner: Any = None, evaluator: Any = None) -> None:
        self.schedule, self.finetuner, self.evaluator = schedule, finetuner, evaluator
        self.results: list[tuple[int, Any, Any, Any, Any]] = []

    def compress(self) -> Any:
        import copy

        from torchslim.pruning.base import CompressResult

        schedule = self.schedule
        for time in range(schedule.times_done + 1, schedule.total_times + 1):
            schedule.update_epoch(time - 1)
            if self.finetuner is not None:
                self.finetuner(schedule.model)
            score = self.evaluator(schedule.model) if self.evaluator is not None else None
            config_list = [{"op_names": [r["module"]], "sparse_ratio": r["achieved"]}
                           for r in schedule.sparsity_report()]
            self.results.append((time - 1, copy.deepcopy(schedule.model), schedule.get_masks(), score, config_list))
        return CompressResult(schedule.model, schedule.get_masks())

    def get_best_result(self) -> tuple[int, Any, Any, Any, Any]:
        if not self.results:
            raise RuntimeError("call compress() first")
        scored = [r for r in self.results if r[3] is not None]
        return max(scored, key=lambda r: r[3]) if scored else self.results[-1]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.__dict__["schedule"], name)


__all__ = ["ALIASES", "ATTRIBUTES", "V0Pruner", "V2IterativePruner", "make_pruner", "pruner_call", "schedule_call",
           "translate_config_list"]
