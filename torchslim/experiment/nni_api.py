"""NNI's Python experiment API, translated at this one boundary.

::

    experiment = Experiment('local')
    experiment.config.trial_command = 'python trial.py'
    experiment.config.trial_code_directory = '.'
    experiment.config.search_space = search_space
    experiment.config.tuner.name = 'TPE'
    experiment.config.tuner.class_args['optimize_mode'] = 'maximize'
    experiment.config.max_trial_number = 10
    experiment.config.trial_concurrency = 2
    experiment.run(8080)          # serves the web UI while it runs; True when DONE

The attribute config (:class:`NNIConfig`, NNI's snake_case names; a misspelt name is an
error, not a silent new attribute) becomes NNI's v2 camelCase mapping and goes through the
same validation as a YAML file. The experiment runs in this process (a manager thread
holding the experiment's lock) and is stored like any other: ``torchslim experiment
status/view/resume ID`` work on it.
"""
from __future__ import annotations

import difflib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchslim.errors import ConfigError
from torchslim.experiment import store as st

# NNI's ExperimentConfig / AlgorithmConfig / TrainingServiceConfig fields we take
_TOP = ("experiment_name", "search_space_file", "search_space", "trial_command",
        "trial_code_directory", "trial_concurrency", "trial_gpu_number", "max_experiment_duration",
        "max_trial_number", "max_trial_duration", "nni_manager_ip", "use_annotation", "debug",
        "log_level", "experiment_working_directory", "tuner_gpu_indices", "description",
        "objectives", "tuner", "assessor", "advisor", "training_service", "trial_function")
_IGNORED = ("nni_manager_ip", "debug", "log_level", "tuner_gpu_indices")  # no meaning here
_ALGORITHM = ("name", "class_args", "class_name", "code_directory")
_SERVICE = ("platform", "use_active_gpu", "max_trial_number_per_gpu", "gpu_indices", "address")
WEBUI_FILE = "webui.json"  # port and pid of the UI an API run serves (for connect(port))
# NNI's experiment states for ours
_NNI_STATUS = {"CREATED": "INITIALIZED", "RUNNING": "RUNNING", "DONE": "DONE",
               "STOPPED": "STOPPED", "INTERRUPTED": "STOPPED", "ERROR": "ERROR"}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class _Section:
    """An attribute bag with a fixed set of names (NNI's config classes)."""

    _fields: tuple[str, ...] = ()
    _where = "config"

    def __init__(self, **values: Any) -> None:
        for name in self._fields:
            object.__setattr__(self, name, None)
        for name, value in values.items():
            setattr(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._fields:
            hint = difflib.get_close_matches(name, self._fields, n=1)
            raise ConfigError(f"experiment.{self._where} has no field {name!r}"
                              + (f"; did you mean {hint[0]!r}?" if hint else "")
                              + f" Allowed: {', '.join(self._fields)}")
        object.__setattr__(self, name, value)

    def to_mapping(self) -> dict[str, Any]:
        """The set fields as NNI's camelCase YAML keys."""
        out = {}
        for name in self._fields:
            value = getattr(self, name)
            if isinstance(value, _Section):
                value = value.to_mapping() or None
            if value is not None and not (name == "class_args" and value == {}):
                out[_camel(name)] = str(value) if isinstance(value, Path) else value
        return out

    def __repr__(self) -> str:
        set_fields = {n: getattr(self, n) for n in self._fields if getattr(self, n) is not None}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in set_fields.items())})"


class AlgorithmConfig(_Section):
    """``tuner`` / ``assessor``: ``name`` (built-in) or ``class_name`` + ``code_directory``."""

    _fields = _ALGORITHM

    def __init__(self, where: str = "config.tuner", **values: Any) -> None:
        object.__setattr__(self, "_where", where)
        super().__init__(**values)
        if self.class_args is None:
            object.__setattr__(self, "class_args", {})


class TrainingServiceConfig(_Section):
    """``training_service``: ``platform`` ('local' or 'ray') and its GPU options."""

    _fields = _SERVICE
    _where = "config.training_service"


class NNIConfig(_Section):
    """NNI's ``ExperimentConfig`` with attribute access (``experiment.config.*``)."""

    _fields = _TOP

    def __init__(self, training_service: str | TrainingServiceConfig = "local", **values: Any) -> None:
        super().__init__()
        object.__setattr__(self, "tuner", AlgorithmConfig("config.tuner"))
        object.__setattr__(self, "assessor", AlgorithmConfig("config.assessor"))
        if isinstance(training_service, str):
            training_service = TrainingServiceConfig(platform=training_service)
        object.__setattr__(self, "training_service", training_service)
        object.__setattr__(self, "trial_code_directory", ".")
        for name, value in values.items():
            setattr(self, name, value)

    def build(self) -> Any:
        """The validated :class:`~torchslim.experiment.config.ExperimentConfig`."""
        from torchslim.experiment.config import config_from_mapping

        if self.advisor is not None:
            raise ConfigError("experiment.config.advisor is not supported; set "
                              "experiment.config.tuner (Hyperband and BOHB are tuners here)")
        raw = {k: v for k, v in self.to_mapping().items()
               if k not in {_camel(n) for n in _IGNORED} and k != "trialFunction"}
        for key in ("tuner", "assessor"):
            if key in raw and not raw[key].get("name") and not raw[key].get("className"):
                del raw[key]  # an untouched placeholder
        return config_from_mapping(raw, Path.cwd(), where="experiment.config",
                                   trial_function=self.trial_function)


@dataclass
class TrialResult:
    """NNI's ``TrialResult``: one trial's parameters and final result."""

    parameter: dict[str, Any]
    value: Any
    trialJobId: str  # noqa: N815 (NNI's name)


class NNIExperiment:
    """NNI's ``Experiment``: ``Experiment('local')`` or ``Experiment(config)``."""

    def __init__(self, config_or_platform: Any = "local", *, experiments_dir: str | Path | None = None) -> None:
        if isinstance(config_or_platform, NNIConfig):
            self.config = config_or_platform
        elif isinstance(config_or_platform, str):
            from torchslim.experiment.config import check_platform

            self.config = NNIConfig(check_platform(config_or_platform, "Experiment(platform)"))
        elif isinstance(config_or_platform, (list, tuple)):
            raise ConfigError("Experiment([...]) (hybrid training services) is not supported; "
                              "use Experiment('local') or Experiment('ray')")
        else:
            raise ConfigError(f"Experiment({config_or_platform!r}): give a training service name "
                              f"('local', 'ray') or an experiment config")
        self.experiments_dir = experiments_dir
        self.id: str | None = None
        self.port: int | None = None
        self._exp: Any = None  # torchslim.experiment.Experiment once created
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._error: BaseException | None = None

    # ---- running ---------------------------------------------------------------------------
    def start(self, port: int = 8080, debug: bool = False, run_mode: Any = None) -> None:
        """Create the experiment, start its manager (a thread) and its web UI on ``port``."""
        from torchslim.experiment.experiment import Experiment

        if self._thread is not None:
            raise ConfigError(f"experiment {self.id} was started already")
        config = self.config.build()
        if self.experiments_dir is not None and config.experiments_dir is None:
            config.experiments_dir = str(self.experiments_dir)
        self._exp = Experiment(config=config)
        self._serve(port, st.default_experiments_dir(config.experiments_dir))  # port taken: no experiment
        self.id = self._exp.create()
        if self._server is not None:
            self._server.default_id = self.id
            self._announce()
        self._thread = threading.Thread(target=self._manage, name=f"experiment-{self.id}",
                                        daemon=True)
        self._thread.start()
        # return once the manager holds the experiment (or failed to)
        deadline = time.monotonic() + 30
        while self._thread.is_alive() and self.get_status() == "INITIALIZED":
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)

    def _manage(self) -> None:
        try:
            self._exp.run()
        except BaseException as exc:  # reported by run() / get_status(); the thread just ends
            self._error = exc

    def _serve(self, port: int | None, root: Path) -> None:
        if port is None:
            return
        from torchslim.experiment.webui.server import make_server

        root.mkdir(parents=True, exist_ok=True)
        self._server = make_server("127.0.0.1", port, root)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                         name="webui", daemon=True).start()

    def _announce(self) -> None:
        (self._exp.folder / WEBUI_FILE).write_text(json.dumps({"port": self.port,
                                                               "pid": os.getpid()}))
        page = f"{self._server.url}/experiments/{self.id}"
        print(f"torchslim: experiment {self.id} web UI at {page}", flush=True)
        # the UI is read-only without the experiment's token (docs/experiments_platform.md)
        print(f"torchslim: control (kill, update) with {page}?token="
              f"{self._server.tokens.token(self.id)}", flush=True)

    def run(self, port: int = 8080, wait_completion: bool = True, debug: bool = False) -> bool | None:
        """Start, serve the web UI on ``port`` while it runs, and block until it ends.

        Returns True when the experiment is DONE (False when it stopped or failed); with
        ``wait_completion=False`` it returns None right after starting. Ctrl-C stops it.
        """
        self.start(port, debug)
        if not wait_completion:
            return None
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            print("torchslim: stopping the experiment, please wait...", flush=True)
        finally:
            self.stop()
        if self._error is not None and not isinstance(self._error, KeyboardInterrupt):
            raise self._error
        return self.get_status() == "DONE"

    def stop(self) -> None:
        """Stop the experiment (results so far are kept) and its web UI."""
        if self._exp is not None:
            self._exp.stop()
        if self._thread is not None:
            self._thread.join()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            if self._exp is not None:
                (self._exp.folder / WEBUI_FILE).unlink(missing_ok=True)

    # ---- live changes (through the experiment's control channel) ---------------------------
    def _update(self, **changes: Any) -> None:
        from torchslim.experiment import control

        control.send(self._folder(), "update", changes)

    def update_trial_concurrency(self, value: int) -> None:
        self._update(trial_concurrency=value)

    def update_max_trial_number(self, value: int) -> None:
        self._update(max_trial_number=value)

    def update_max_experiment_duration(self, value: str | float) -> None:
        self._update(max_experiment_duration=value)

    # ---- results ---------------------------------------------------------------------------
    def _folder(self) -> Path:
        if self.id is None:
            raise ConfigError("this experiment has not started yet: call run() or start() first")
        return st.experiment_path(self.id, self._root())

    def _root(self) -> Any:
        if self._exp is not None and self._exp.folder is not None:
            return self._exp.folder.parent
        return self.experiments_dir

    def _store(self) -> st.ExperimentStore:
        return st.ExperimentStore(self._folder() / st.DB_NAME, readonly=True)

    def get_status(self) -> str:
        """NNI's status words: INITIALIZED, RUNNING, DONE, STOPPED, ERROR."""
        with self._store() as store:
            status = st.effective_status(store.experiment(), store.folder)
        return _NNI_STATUS.get(status, status)

    def export_data(self) -> list[TrialResult]:
        """Every trial with a final result, as NNI's TrialResult(parameter, value, trialJobId)."""
        with self._store() as store:
            records = store.trials((st.SUCCEEDED,))
        return [TrialResult(r.parameters, r.metric, r.trial_id) for r in records
                if r.metric is not None]

    def list_trial_jobs(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every trial as NNI's REST API shows it (optionally one status only)."""
        with self._store() as store:
            records = store.trials(None if status is None else (status,))
        return [r.to_dict() for r in records]

    def get_trial_job(self, trial_job_id: str) -> dict[str, Any]:
        for job in self.list_trial_jobs():
            if job["trialJobId"] == trial_job_id:
                return job
        raise ConfigError(f"no trial {trial_job_id!r} in experiment {self.id}")

    def get_job_statistics(self) -> list[dict[str, Any]]:
        with self._store() as store:
            counts = store.status_counts()
        return [{"trialJobStatus": s, "trialJobNumber": n} for s, n in sorted(counts.items())]

    def get_experiment_profile(self) -> dict[str, Any]:
        with self._store() as store:
            info = store.experiment()
            count = store.count()
        return {"id": info["id"], "params": info["config"], "startTime": info["started"],
                "endTime": info["ended"], "execDuration": info["elapsed"],
                "maxSequenceId": count - 1, "status": self.get_status()}

    # ---- existing experiments --------------------------------------------------------------
    @classmethod
    def connect(cls, experiment: str | int, experiments_dir: str | Path | None = None) -> "NNIExperiment":
        """A handle on a stored experiment: by id, or (NNI's form) by the port its UI runs on."""
        if isinstance(experiment, int) and not isinstance(experiment, bool):
            experiment = _id_serving(experiment, experiments_dir)
        st.experiment_path(experiment, experiments_dir)  # unknown id: error naming known ones
        handle = cls("local", experiments_dir=experiments_dir)
        handle.id = experiment
        return handle

    @classmethod
    def view(cls, experiment_id: str, port: int = 8080, non_blocking: bool = False,
             experiments_dir: str | Path | None = None) -> "NNIExperiment | None":
        """Serve the web UI of a stored experiment (read-only). Blocks until Ctrl-C unless
        ``non_blocking``; then the returned handle's :meth:`stop` ends the UI."""
        from torchslim.experiment.webui.server import make_server, serve

        if not non_blocking:
            serve(experiment_id, experiments_dir, port=port)
            return None
        handle = cls.connect(experiment_id, experiments_dir)
        handle._server = make_server("127.0.0.1", port, experiments_dir, experiment_id)
        handle.port = handle._server.server_address[1]
        threading.Thread(target=handle._server.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True).start()
        return handle


def _id_serving(port: int, experiments_dir: str | Path | None) -> str:
    for folder, _, _ in st.iter_experiments(experiments_dir):
        try:
            info = json.loads((folder / WEBUI_FILE).read_text())
        except (OSError, ValueError):
            continue
        if info.get("port") == port and st.pid_alive(info.get("pid")):
            return folder.name
    raise ConfigError(f"no experiment's web UI runs on port {port}; connect by experiment id "
                      f"(torchslim experiment list)")

