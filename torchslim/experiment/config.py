"""Experiment configuration: one dataclass, read from NNI's v1 or v2 YAML or from Python.

Every key is checked: an unknown one raises :class:`ConfigError` naming it and the keys
allowed where it appeared. Relative paths in a YAML file resolve against the file's folder.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from torchslim.errors import ConfigError, require
from torchslim.experiment.searchspace import SearchSpace, load_search_space

TRAINING_SERVICES = ("local", "ray")
# NNI platforms we know of but do not run: say what to use instead
_OTHER_PLATFORMS = ("remote", "pai", "openpai", "kubeflow", "frameworkcontroller", "aml", "dlc",
                    "adl", "hybrid", "dlts", "paiyarn")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any, key: str) -> float | None:
    """'100h', '30m', '45s', '1d' or a number of seconds -> seconds (None stays None)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    match = _DURATION.match(str(value)) if isinstance(value, str) else None
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"{key} is {value!r}; allowed: a positive duration like '30s', '10m', "
                          f"'100h', '1d' or a number of seconds")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@dataclass
class ExperimentConfig:
    """Everything an experiment needs (snake_case of NNI's v2 keys)."""

    search_space: dict[str, Any]
    trial_command: str | None = None
    trial_function: Callable[..., Any] | None = None
    trial_code_directory: str = "."
    trial_concurrency: int = 1
    max_trial_number: int | None = None
    max_experiment_duration: float | None = None
    max_trial_duration: float | None = None
    trial_gpu_number: int = 0
    # local GPUs (NNI's trainingService keys): trials per GPU at once, whether GPUs other
    # processes compute on may be used, and which GPUs at all
    max_trial_number_per_gpu: int = 1
    use_active_gpu: bool = False
    gpu_indices: list[int] | None = None
    tuner: str = "TPE"
    tuner_args: dict[str, Any] = field(default_factory=dict)
    assessor: str | None = None
    assessor_args: dict[str, Any] = field(default_factory=dict)
    # a user's own tuner/assessor (NNI: codeDirectory + className "module.Class")
    tuner_code_directory: str | None = None
    tuner_class_name: str | None = None
    assessor_code_directory: str | None = None
    assessor_class_name: str | None = None
    # multi-objective: [{"name": "accuracy", "direction": "maximize"}, ...]; the first one is
    # the primary objective single-objective tuners and "best" use
    objectives: list[dict[str, str]] | None = None
    training_service: str = "local"
    ray_address: str | None = None
    experiment_name: str = "experiment"
    experiments_dir: str | None = None

    @property
    def optimize_mode(self) -> str:
        if self.objectives:
            return self.objectives[0]["direction"]
        return self.tuner_args.get("optimize_mode", "maximize")

    def validate(self, require_trial: bool = True) -> "ExperimentConfig":
        """Check and normalise every field in place; returns self.

        ``require_trial=False`` allows neither command nor function (a stored function
        experiment opened for viewing).
        """
        from torchslim.experiment.tuners import canonical_name

        if isinstance(self.search_space, SearchSpace):
            self.search_space = self.search_space.spec
        if self.tuner_class_name is None:
            from torchslim.experiment.tuners import tuner_space

            tuner_space(self.tuner, self.search_space)
        else:
            SearchSpace.parse(self.search_space)
        no_trial = self.trial_command is None and self.trial_function is None
        if (self.trial_command is not None and self.trial_function is not None) or (
                no_trial and require_trial):
            raise ConfigError("give exactly one of trial_command (trialCommand) and "
                              "trial_function (Python API)")
        if self.trial_command is not None and (not isinstance(self.trial_command, str)
                                               or not self.trial_command.strip()):
            raise ConfigError(f"trialCommand is {self.trial_command!r}; allowed: a non-empty "
                              f"shell command string")
        if self.trial_function is not None and not callable(self.trial_function):
            raise ConfigError(f"trial_function is {self.trial_function!r}; allowed: a callable")
        self.trial_concurrency = _positive_int(self.trial_concurrency, "trialConcurrency")
        if self.max_trial_number is not None:
            self.max_trial_number = _positive_int(self.max_trial_number, "maxTrialNumber")
        self.max_experiment_duration = parse_duration(self.max_experiment_duration,
                                                      "maxExperimentDuration")
        self.max_trial_duration = parse_duration(self.max_trial_duration, "maxTrialDuration")
        self.trial_gpu_number = _positive_int(self.trial_gpu_number, "trialGpuNumber", minimum=0)
        self.max_trial_number_per_gpu = _positive_int(self.max_trial_number_per_gpu,
                                                      "maxTrialNumberPerGpu")
        if not isinstance(self.use_active_gpu, bool):
            raise ConfigError(f"useActiveGpu is {self.use_active_gpu!r}; allowed: true or false")
        self.gpu_indices = _gpu_indices(self.gpu_indices)
        self.objectives = check_objectives(self.objectives)
        if self.objectives:
            # single-objective parts (tuners, assessors, "best") optimise the first objective
            mode = self.tuner_args.get("optimize_mode", self.objectives[0]["direction"])
            if mode != self.objectives[0]["direction"]:
                raise ConfigError(f"tuner.classArgs.optimize_mode is {mode!r} but the first "
                                  f"objective {self.objectives[0]['name']!r} is to "
                                  f"{self.objectives[0]['direction']}; drop one of them")
            if self.tuner_class_name is None:
                self.tuner_args = {**self.tuner_args, "optimize_mode": mode}
        if self.tuner_class_name is None:
            self.tuner = canonical_name(self.tuner)
        else:
            self.tuner = str(self.tuner_class_name)
            self.tuner_code_directory = str(Path(self.tuner_code_directory or ".").expanduser()
                                            .resolve())
        if self.assessor_class_name is not None:
            self.assessor = str(self.assessor_class_name)
            self.assessor_code_directory = str(Path(self.assessor_code_directory or ".")
                                               .expanduser().resolve())
        for key in ("tuner_args", "assessor_args"):
            if not isinstance(getattr(self, key), Mapping):
                raise ConfigError(f"{key} (classArgs) is {getattr(self, key)!r}; allowed: a mapping")
            setattr(self, key, dict(getattr(self, key)))
        self.training_service = check_platform(self.training_service)
        self.experiment_name = str(self.experiment_name)
        self.trial_code_directory = str(Path(self.trial_code_directory).expanduser().resolve())
        if not Path(self.trial_code_directory).is_dir():
            raise ConfigError(f"trialCodeDirectory {self.trial_code_directory!r} is not a folder")
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the trial function is kept by name only)."""
        data = dataclasses.asdict(dataclasses.replace(self, trial_function=None))
        fn = self.trial_function
        data["trial_function"] = None if fn is None else f"{fn.__module__}.{fn.__qualname__}"
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any],
                  trial_function: Callable[..., Any] | None = None) -> "ExperimentConfig":
        """Inverse of :meth:`to_dict` (a function trial needs its function back)."""
        values = {k: v for k, v in data.items() if k in {f.name for f in dataclasses.fields(cls)}}
        values["trial_function"] = trial_function
        return cls(**values)


def check_objectives(objectives: Any, key: str = "objectives") -> list[dict[str, str]] | None:
    """``[{'name': str, 'direction': 'maximize'|'minimize'}, ...]`` checked (None stays None)."""
    if objectives is None:
        return None
    if not isinstance(objectives, (list, tuple)) or not objectives:
        raise ConfigError(f"{key} is {objectives!r}; allowed: a non-empty list of "
                          f"{{name: ..., direction: maximize|minimize}}")
    out, seen = [], set()
    for i, item in enumerate(objectives):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, Mapping):
            raise ConfigError(f"{key}[{i}] is {item!r}; allowed: {{name: ..., direction: ...}}")
        _check_keys(item, ("name", "direction"), f"{key}[{i}]")
        name, direction = item.get("name"), item.get("direction", "maximize")
        if not isinstance(name, str) or not name or name in seen:
            raise ConfigError(f"{key}[{i}].name is {name!r}; allowed: a unique non-empty string")
        if direction not in ("maximize", "minimize"):
            raise ConfigError(f"{key}[{i}].direction is {direction!r}; allowed: maximize, minimize")
        seen.add(name)
        out.append({"name": name, "direction": direction})
    return out


def _gpu_indices(value: Any) -> list[int] | None:
    """NNI's gpuIndices: a list of ints or a comma-separated string ("0,1")."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    try:
        out = [int(str(i).strip()) for i in items]
    except (TypeError, ValueError):
        out = []
    if not out or any(i < 0 for i in out):
        raise ConfigError(f"gpuIndices is {value!r}; allowed: GPU indices like [0, 1] or '0,1'")
    return out


def _positive_int(value: Any, key: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key} is {value!r}; allowed: an integer >= {minimum}")
    return value


def check_platform(platform: Any, key: str = "trainingService.platform") -> str:
    name = str(platform).lower()
    if name in TRAINING_SERVICES:
        return name
    if name in _OTHER_PLATFORMS:
        raise ConfigError(f"{key} {platform!r} is not supported, use ray (a Ray cluster by "
                          f"address) or local")
    raise ConfigError(f"{key} is {platform!r}; allowed: {', '.join(TRAINING_SERVICES)}")


# ---- YAML ---------------------------------------------------------------------------

_V1_MARKERS = ("authorName", "maxExecDuration", "maxTrialNum", "searchSpacePath",
               "trainingServicePlatform", "trial")


def _check_keys(section: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {section!r}")
    unknown = [k for k in section if k not in allowed]
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {where}; allowed keys: "
                          f"{', '.join(allowed)}")


def _pick(section: Mapping[str, Any], fields: Mapping[str, str]) -> dict[str, Any]:
    """ExperimentConfig fields from the YAML keys present (absent/null keep the defaults)."""
    return {field: section[key] for key, field in fields.items() if section.get(key) is not None}


def _section(raw: Mapping[str, Any], key: str, allowed: tuple[str, ...],
             where: str) -> Mapping[str, Any]:
    """The sub-mapping ``raw[key]`` ({} when absent), its keys checked."""
    section = raw.get(key) or {}
    _check_keys(section, allowed, f"{where} {key!r}")
    return section


def _no_annotation(raw: Mapping[str, Any]) -> None:
    if raw.get("useAnnotation"):
        raise ConfigError("useAnnotation: true is not supported; put the search space in "
                          "searchSpaceFile / searchSpace and call torchslim.get_next_parameter()")


def _resolve(base: Path, value: Any) -> str | None:
    return None if value is None else str((base / str(value)).expanduser().resolve())


def _space_from(raw: Mapping[str, Any], file_key: str, inline_key: str | None,
                base: Path, where: str) -> dict[str, Any]:
    if raw.get(file_key) is not None:
        return load_search_space(_resolve(base, raw[file_key])).spec
    if inline_key and raw.get(inline_key) is not None:
        return raw[inline_key]
    wanted = f"{file_key} or {inline_key}" if inline_key else file_key
    raise ConfigError(f"{where} has no search space; give {wanted}")


_V2_TOP = ("experimentName", "searchSpaceFile", "searchSpace", "trialCommand",
           "trialCodeDirectory", "trialConcurrency", "maxTrialNumber", "maxExperimentDuration",
           "maxTrialDuration", "trialGpuNumber", "tuner", "assessor", "trainingService",
           "experimentWorkingDirectory", "useAnnotation", "description", "objectives")
_V2_FIELDS = {"experimentName": "experiment_name", "trialCommand": "trial_command",
              "trialConcurrency": "trial_concurrency", "maxTrialNumber": "max_trial_number",
              "maxExperimentDuration": "max_experiment_duration",
              "maxTrialDuration": "max_trial_duration", "trialGpuNumber": "trial_gpu_number"}
_V2_TUNER = ("name", "classArgs", "codeDirectory", "className")
_V2_SERVICE = ("platform", "address", "useActiveGpu", "gpuIndices", "maxTrialNumberPerGpu")
_GPU_FIELDS = {"useActiveGpu": "use_active_gpu", "gpuIndices": "gpu_indices",
               "maxTrialNumberPerGpu": "max_trial_number_per_gpu",
               "maxTrialNumPerGpu": "max_trial_number_per_gpu"}  # the last: NNI v1's spelling


def _from_v2(raw: Mapping[str, Any], base: Path, where: str) -> ExperimentConfig:
    _check_keys(raw, _V2_TOP, where)
    _no_annotation(raw)
    tuner = _section(raw, "tuner", _V2_TUNER, where)
    assessor = _section(raw, "assessor", _V2_TUNER, where)
    if isinstance(raw.get("trainingService"), list):
        raise ConfigError(f"trainingService in {where} is a list (hybrid); it is not supported, "
                          f"use ray")
    service = _section(raw, "trainingService", _V2_SERVICE, where)
    return ExperimentConfig(
        search_space=_space_from(raw, "searchSpaceFile", "searchSpace", base, where),
        trial_code_directory=_resolve(base, raw.get("trialCodeDirectory", ".")),
        experiments_dir=_resolve(base, raw.get("experimentWorkingDirectory")),
        training_service=check_platform(service.get("platform", "local")),
        ray_address=service.get("address"),
        **_pick(service, _GPU_FIELDS),
        **_pick(raw, _V2_FIELDS), **_pick(tuner, {"name": "tuner", "classArgs": "tuner_args"}),
        **_pick(assessor, {"name": "assessor", "classArgs": "assessor_args"}),
        **_custom(tuner, "tuner", base, "codeDirectory"),
        **_custom(assessor, "assessor", base, "codeDirectory"),
        objectives=raw.get("objectives"),
    )


def _custom(section: Mapping[str, Any], kind: str, base: Path, dir_key: str) -> dict[str, Any]:
    """A user's own tuner/assessor class (``className`` "module.Class" in ``codeDirectory``)."""
    if section.get("className") is None:
        return {}
    name = str(section["className"])
    if section.get("classFileName"):  # NNI v1: classFileName my_tuner.py + className MyTuner
        name = f"{Path(str(section['classFileName'])).stem}.{name}"
    return {f"{kind}_class_name": name,
            f"{kind}_code_directory": _resolve(base, section.get(dir_key, "."))}


_V1_TOP = ("authorName", "experimentName", "trialConcurrency", "maxExecDuration", "maxTrialNum",
           "searchSpacePath", "useAnnotation", "tuner", "assessor", "trial",
           "trainingServicePlatform", "logDir", "rayConfig", "description", "localConfig")
_V1_FIELDS = {"experimentName": "experiment_name", "trialConcurrency": "trial_concurrency",
              "maxTrialNum": "max_trial_number", "maxExecDuration": "max_experiment_duration"}
_V1_TUNER = ("builtinTunerName", "classArgs", "codeDir", "classFileName", "className")
_V1_ASSESSOR = ("builtinAssessorName", "classArgs", "codeDir", "classFileName", "className")
_V1_TRIAL = ("command", "codeDir", "gpuNum")
_V1_RAY = ("address",)


def _from_v1(raw: Mapping[str, Any], base: Path, where: str) -> ExperimentConfig:
    _check_keys(raw, _V1_TOP, f"{where} (NNI v1 form)")
    _no_annotation(raw)
    tuner = _section(raw, "tuner", _V1_TUNER, where)
    assessor = _section(raw, "assessor", _V1_ASSESSOR, where)
    trial = _section(raw, "trial", _V1_TRIAL, where)
    ray = _section(raw, "rayConfig", _V1_RAY, where)
    local = _section(raw, "localConfig", ("gpuIndices", "maxTrialNumPerGpu", "useActiveGpu"), where)
    return ExperimentConfig(
        search_space=_space_from(raw, "searchSpacePath", None, base, where),
        trial_code_directory=_resolve(base, trial.get("codeDir", ".")),
        experiments_dir=_resolve(base, raw.get("logDir")),
        training_service=check_platform(raw.get("trainingServicePlatform", "local"),
                                        "trainingServicePlatform"),
        ray_address=ray.get("address"),
        **_pick(local, _GPU_FIELDS),
        **_pick(raw, _V1_FIELDS),
        **_pick(trial, {"command": "trial_command", "gpuNum": "trial_gpu_number"}),
        **_pick(tuner, {"builtinTunerName": "tuner", "classArgs": "tuner_args"}),
        **_pick(assessor, {"builtinAssessorName": "assessor", "classArgs": "assessor_args"}),
        **_custom(tuner, "tuner", base, "codeDir"),
        **_custom(assessor, "assessor", base, "codeDir"),
    )


def config_from_mapping(raw: Mapping[str, Any], base_dir: str | Path = ".",
                        where: str = "experiment config",
                        trial_function: Callable[..., Any] | None = None) -> ExperimentConfig:
    """Build a validated config from a parsed v1 or v2 mapping (``trial_function``: the
    Python API's alternative to a trial command)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a YAML mapping of keys, got {type(raw).__name__}")
    base = Path(base_dir).expanduser().resolve()
    is_v1 = any(k in raw for k in _V1_MARKERS)
    config = (_from_v1 if is_v1 else _from_v2)(raw, base, where)
    config.trial_function = trial_function
    return config.validate()


def load_config(path: str | Path) -> ExperimentConfig:
    """Read an NNI-style experiment YAML (v1 or v2 form)."""
    yaml = require("yaml", "experiment", "Reading experiment YAML")
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read experiment config {str(p)!r}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"experiment config {str(p)!r} is not valid YAML: {exc}") from exc
    return config_from_mapping(raw, p.parent, where=f"experiment config {str(p)!r}")
