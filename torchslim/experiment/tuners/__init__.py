"""Built-in tuners, by NNI name (``tuner.name`` / ``builtinTunerName``)."""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Mapping

from torchslim.errors import ConfigError
from torchslim.experiment.searchspace import SearchSpace
from torchslim.experiment.tuners.base import NoMoreTrials, Tuner, check_optimize_mode

__all__ = ["TUNERS", "NoMoreTrials", "Tuner", "create_tuner", "tuner_class"]

# NNI name -> "module:class" (imported on use: TPE pulls in Optuna)
TUNERS = {
    "TPE": "torchslim.experiment.tuners.tpe:TPETuner",
    "Random": "torchslim.experiment.tuners.random:RandomTuner",
    "Anneal": "torchslim.experiment.tuners.anneal:AnnealTuner",
    "Evolution": "torchslim.experiment.tuners.evolution:EvolutionTuner",
    "GridSearch": "torchslim.experiment.tuners.grid:GridSearchTuner",
    "GP": "torchslim.experiment.tuners.samplers:GPTuner",
    "CMAES": "torchslim.experiment.tuners.samplers:CMAESTuner",
    "Metis": "torchslim.experiment.tuners.samplers:MetisTuner",
    "NSGA2": "torchslim.experiment.tuners.samplers:NSGA2Tuner",
    "MOTPE": "torchslim.experiment.tuners.samplers:MOTPETuner",
    "Hyperband": "torchslim.experiment.tuners.hyperband:HyperbandTuner",
    "BOHB": "torchslim.experiment.tuners.hyperband:BOHBTuner",
    "SMAC": "torchslim.experiment.tuners.smac:SMACTuner",
    "PBT": "torchslim.experiment.tuners.pbt:PBTTuner",
    "Batch": "torchslim.experiment.tuners.batch:BatchTuner",
}
# NNI tuners we do not provide: named in the error so users know it is not a typo
_NOT_PROVIDED = ("DNGO", "PPOTuner", "PPO")
_ALIASES = {name.lower(): name for name in TUNERS} | {
    "grid": "GridSearch", "randomsearch": "Random", "gptuner": "GP", "metistuner": "Metis",
    "pbttuner": "PBT", "batchtuner": "Batch", "cmaes": "CMAES", "cma-es": "CMAES",
    "nsgaii": "NSGA2", "nsga-ii": "NSGA2", "naiveevolution": "Evolution"}


def canonical_name(name: str, key: str = "tuner.name") -> str:
    """The NNI spelling of a tuner name (case-insensitive)."""
    found = _ALIASES.get(str(name).lower())
    if str(name).lower() in {n.lower() for n in _NOT_PROVIDED}:
        raise ConfigError(f"{key} {name!r} is an NNI tuner torchslim does not provide; "
                          f"allowed: {', '.join(TUNERS)}")
    if found is None:
        raise ConfigError(f"{key} is {name!r}; allowed: {', '.join(TUNERS)}")
    return found


def tuner_class(name: str) -> type[Tuner]:
    module, cls = TUNERS[canonical_name(name)].split(":")
    return getattr(importlib.import_module(module), cls)


def check_class_args(cls: type, args: Mapping[str, Any], key: str, skip: tuple[str, ...]) -> None:
    """Raise ConfigError for class args ``cls`` does not take (naming the allowed ones)."""
    params = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", *skip)]
    unknown = sorted(set(args) - set(params))
    if unknown:
        raise ConfigError(f"{key} has unknown argument(s) {unknown} for {cls.__name__}; "
                          f"allowed: {', '.join(params)}")
    if "optimize_mode" in args:
        check_optimize_mode(args["optimize_mode"], f"{key}.optimize_mode")


def tuner_space(name: str, spec: Mapping[str, Any]) -> SearchSpace:
    """The search space a tuner walks (Batch's list of configurations becomes an index)."""
    if canonical_name(name) == "Batch":
        values = ((spec or {}).get("combine_params") or {}).get("_value") or []
        return SearchSpace.parse({"combine_params": {"_type": "choice",
                                                     "_value": list(range(len(values)))}})
    return SearchSpace.parse(spec)


def create_tuner(name: str, search_space: SearchSpace | Mapping[str, Any],
                 class_args: Mapping[str, Any] | None = None, *,
                 objectives: list[dict[str, str]] | None = None,
                 workdir: Any = None, code_directory: str | None = None) -> Tuner:
    """Build tuner ``name`` (NNI name) with its classArgs, validating them.

    ``objectives``: the experiment's objectives (multi-objective tuners need them);
    ``workdir``: the experiment folder (PBT keeps checkpoints there);
    ``code_directory``: ``name`` is then a user's ``module.Class`` in that folder.
    """
    if code_directory is not None:
        from torchslim.experiment.custom import create_user_tuner

        return create_user_tuner(code_directory, name, search_space, class_args)
    cls = tuner_class(name)
    args = dict(class_args or {})
    check_class_args(cls, args, "tuner.classArgs", skip=("search_space", "workdir"))
    accepted = inspect.signature(cls.__init__).parameters
    if "objectives" in accepted and "objectives" not in args:
        args["objectives"] = objectives
    if "workdir" in accepted and workdir is not None:
        args["workdir"] = workdir
    try:
        return cls(search_space, **args)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"tuner.classArgs {args} are invalid for {canonical_name(name)}: {exc}") from exc
