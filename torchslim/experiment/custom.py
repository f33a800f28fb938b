"""Your own tuner or assessor, with NNI's class shapes, named in the YAML as NNI does::

    tuner:
      codeDirectory: ./my_tuners       # NNI v1: codeDir + classFileName
      className: my_tuner.MyTuner      # module.Class inside codeDirectory
      classArgs: {optimize_mode: maximize}

A tuner implements ``generate_parameters(parameter_id, **kwargs) -> dict``,
``receive_trial_result(parameter_id, parameters, value, **kwargs)`` and
``update_search_space(search_space)`` (and may raise :class:`NoMoreTrialError`); an assessor
implements ``assess_trial(trial_job_id, trial_history) -> AssessResult`` (or a bool: True =
keep going) and optionally ``trial_end(trial_job_id, success)``. Subclass :class:`Tuner` /
:class:`Assessor` below, or write plain classes: only the method names matter.
"""
from __future__ import annotations

import enum
import importlib.util
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from torchslim.errors import ConfigError
from torchslim.experiment.tuners.base import NoMoreTrials
from torchslim.experiment.tuners.base import Tuner as CoreTuner


class NoMoreTrialError(Exception):
    """Raise from ``generate_parameters`` when the tuner has nothing left (NNI's name)."""


class AssessResult(enum.Enum):
    """NNI's assessor verdicts."""

    Good = True
    Bad = False


class Tuner:
    """Base class with NNI's tuner methods (override the first two)."""

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        raise NotImplementedError

    def receive_trial_result(self, parameter_id: int, parameters: dict[str, Any], value: Any,
                             **kwargs: Any) -> None:
        raise NotImplementedError

    def update_search_space(self, search_space: dict[str, Any]) -> None:
        """Called once with the experiment's search space before the first trial."""

    def trial_end(self, parameter_id: int, success: bool, **kwargs: Any) -> None:
        """Called for every finished trial (failed ones get no result)."""


class Assessor:
    """Base class with NNI's assessor methods."""

    def assess_trial(self, trial_job_id: str, trial_history: list[float]) -> AssessResult:
        raise NotImplementedError

    def trial_end(self, trial_job_id: str, success: bool) -> None:
        """Called when a trial ends."""


def load_class(code_directory: str, class_name: str, key: str) -> type:
    """``module.Class`` from a file in ``code_directory`` (imported under a private name)."""
    module_name, _, cls_name = class_name.rpartition(".")
    if not module_name or not cls_name:
        raise ConfigError(f"{key}.className is {class_name!r}; allowed: 'module.Class' with "
                          f"module.py in codeDirectory {code_directory!r}")
    path = Path(code_directory) / (module_name.replace(".", "/") + ".py")
    if not path.is_file():
        raise ConfigError(f"{key}.className {class_name!r}: no file {str(path)!r}")
    unique = f"torchslim_user_{key.split('.')[0]}_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(unique, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(code_directory))  # the user's module may import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(f"{key}.className {class_name!r}: importing {str(path)!r} failed: "
                          f"{type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(str(code_directory))
    cls = getattr(module, cls_name, None)
    if not isinstance(cls, type):
        raise ConfigError(f"{key}.className {class_name!r}: {str(path)!r} has no class {cls_name!r}")
    return cls


def _instantiate(cls: type, args: Mapping[str, Any], key: str) -> Any:
    try:
        return cls(**dict(args))
    except TypeError as exc:
        raise ConfigError(f"{key}.classArgs {dict(args)} do not fit {cls.__name__}: {exc}") from exc


class UserTuner(CoreTuner):
    """Drives a user's NNI-shaped tuner object."""

    dedup = False  # every proposal runs as scheduled

    def __init__(self, search_space: Any, user: Any) -> None:
        super().__init__(search_space)
        for method in ("generate_parameters", "receive_trial_result"):
            if not callable(getattr(user, method, None)):
                raise ConfigError(f"tuner class {type(user).__name__} has no {method}() method")
        self.user = user
        self.name = type(user).__name__
        self.params: dict[int, dict[str, Any]] = {}
        if callable(getattr(user, "update_search_space", None)):
            user.update_search_space(self.space.spec)

    def _propose(self, sequence: int) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            params = self.user.generate_parameters(sequence)
        except (NoMoreTrialError, NoMoreTrials, StopIteration) as exc:
            raise NoMoreTrials(str(exc) or "the tuner has no more trials") from None
        except Exception as exc:
            if type(exc).__name__ == "NoMoreTrialError":  # e.g. nni.common's own
                raise NoMoreTrials(str(exc) or "the tuner has no more trials") from None
            raise
        if not isinstance(params, Mapping):
            raise ConfigError(f"{self.name}.generate_parameters returned {params!r}; "
                              f"allowed: a dict of parameters")
        self.params[sequence] = dict(params)
        return dict(params), {"__parameters__": dict(params)}

    def observe(self, sequence: int, raw: Mapping[str, Any]) -> dict[str, Any]:
        params = dict(raw.get("__parameters__", raw))
        self.params[sequence] = params
        self.pending[sequence] = dict(raw)
        return params

    def receive(self, sequence: int, value: Any) -> None:
        self.pending.pop(sequence, None)
        params = self.params.pop(sequence, None)
        if params is None:
            return
        if value is not None:
            self.user.receive_trial_result(sequence, params, value)
        if callable(getattr(self.user, "trial_end", None)):
            self.user.trial_end(sequence, value is not None)


class UserAssessor:
    """Drives a user's NNI-shaped assessor object through the runner's assessor calls."""

    def __init__(self, user: Any) -> None:
        if not callable(getattr(user, "assess_trial", None)):
            raise ConfigError(f"assessor class {type(user).__name__} has no assess_trial() method")
        self.user = user
        self.name = type(user).__name__

    def should_stop(self, history: Sequence[float], trial_id: str | None = None) -> bool:
        verdict = self.user.assess_trial(trial_id, list(history))
        if isinstance(verdict, enum.Enum):
            verdict = verdict.value if isinstance(verdict.value, bool) else verdict.name == "Good"
        return not bool(verdict)

    def trial_end(self, history: Sequence[float], succeeded: bool,
                  trial_id: str | None = None) -> None:
        if callable(getattr(self.user, "trial_end", None)):
            self.user.trial_end(trial_id, succeeded)


def create_user_tuner(code_directory: str, class_name: str, search_space: Any,
                      class_args: Mapping[str, Any] | None) -> UserTuner:
    cls = load_class(code_directory, class_name, "tuner")
    return UserTuner(search_space, _instantiate(cls, class_args or {}, "tuner"))


def create_user_assessor(code_directory: str, class_name: str,
                         class_args: Mapping[str, Any] | None) -> UserAssessor:
    cls = load_class(code_directory, class_name, "assessor")
    return UserAssessor(_instantiate(cls, class_args or {}, "assessor"))
