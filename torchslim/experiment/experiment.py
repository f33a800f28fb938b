"""The Python API: ``Experiment(search_space, trial_command=..., tuner='TPE', ...).run()``."""
from __future__ import annotations

import secrets
import string
from pathlib import Path
from typing import Any, Callable, Mapping

from torchslim.errors import ConfigError
from torchslim.experiment import store as st
from torchslim.experiment.config import ExperimentConfig, load_config

_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_experiment_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def make_service(config: ExperimentConfig) -> Any:
    """The training service the config names."""
    if config.training_service == "ray":
        from torchslim.experiment.services.ray import RayService

        return RayService(config.ray_address)
    from torchslim.experiment.services.local import LocalService

    return LocalService(config.trial_gpu_number, config.max_trial_number_per_gpu,
                        config.use_active_gpu, config.gpu_indices)


def check_resources(config: ExperimentConfig) -> None:
    """Refuse (ConfigError) a GPU request this machine cannot meet; warn when the GPUs
    cannot hold ``trial_concurrency`` trials at once (Ray clusters check their own)."""
    if config.training_service == "local":
        from torchslim.experiment.gpus import check_gpu_request

        check_gpu_request(config.trial_gpu_number, config.trial_concurrency,
                          config.max_trial_number_per_gpu, config.gpu_indices)


def _is_nni_form(first: Any) -> bool:
    from torchslim.experiment.nni_api import NNIConfig

    if isinstance(first, str):  # a platform name, not a search space given as JSON text
        return not first.lstrip().startswith("{")
    return isinstance(first, (NNIConfig, list, tuple))


class Experiment:
    """A hyper-parameter / compression search: a search space, a tuner and trials.

    Give either ``trial_command`` (a shell command run in ``trial_code_directory``; it reads
    ``torchslim.get_next_parameter()`` and calls ``torchslim.report_final_result``) or
    ``trial_function`` (called in this process, in a thread, with the parameters if it
    takes an argument; returning a number reports it). Keyword names follow NNI's v2 config
    keys in snake_case. Everything is stored in ``<experiments_dir>/<id>/experiment.db``.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # NNI's form: Experiment('local') / Experiment(config) with experiment.config.* set later
        if cls is Experiment and args and _is_nni_form(args[0]):
            from torchslim.experiment.nni_api import NNIExperiment

            return NNIExperiment(*args, **kwargs)
        return super().__new__(cls)

    @staticmethod
    def connect(experiment: str | int, experiments_dir: str | Path | None = None) -> Any:
        """NNI's ``Experiment.connect``: a handle (NNI API) on a stored experiment, by id or
        by the port its web UI is served on."""
        from torchslim.experiment.nni_api import NNIExperiment

        return NNIExperiment.connect(experiment, experiments_dir)

    @staticmethod
    def view(experiment_id: str, port: int = 8080, non_blocking: bool = False,
             experiments_dir: str | Path | None = None) -> Any:
        """NNI's ``Experiment.view``: serve a stored experiment's web UI."""
        from torchslim.experiment.nni_api import NNIExperiment

        return NNIExperiment.view(experiment_id, port, non_blocking, experiments_dir)

    def __init__(self, search_space: Mapping[str, Any] | None = None,
                 trial_command: str | None = None, *,
                 trial_function: Callable[..., Any] | None = None,
                 tuner: str = "TPE", tuner_args: Mapping[str, Any] | None = None,
                 optimize_mode: str | None = None, seed: int | None = None,
                 assessor: str | None = None, assessor_args: Mapping[str, Any] | None = None,
                 max_trial_number: int | None = None, trial_concurrency: int = 1,
                 max_experiment_duration: float | str | None = None,
                 max_trial_duration: float | str | None = None,
                 trial_code_directory: str | Path = ".", trial_gpu_number: int = 0,
                 training_service: str = "local", ray_address: str | None = None,
                 experiment_name: str = "experiment", experiments_dir: str | Path | None = None,
                 objectives: list[Any] | None = None,
                 config: ExperimentConfig | None = None) -> None:
        if config is None:
            if search_space is None:
                raise ConfigError("Experiment needs a search_space (or a config)")
            args = dict(tuner_args or {})
            if optimize_mode is not None:
                args["optimize_mode"] = optimize_mode
            if seed is not None:
                args["seed"] = seed
            config = ExperimentConfig(
                search_space=dict(search_space), trial_command=trial_command,
                trial_function=trial_function, tuner=tuner, tuner_args=args,
                assessor=assessor, assessor_args=dict(assessor_args or {}),
                max_trial_number=max_trial_number, trial_concurrency=trial_concurrency,
                max_experiment_duration=max_experiment_duration,
                max_trial_duration=max_trial_duration,
                trial_code_directory=str(trial_code_directory),
                trial_gpu_number=trial_gpu_number, training_service=training_service,
                ray_address=ray_address, experiment_name=experiment_name,
                experiments_dir=None if experiments_dir is None else str(experiments_dir),
                objectives=objectives,
            )
        self.config = config.validate()
        self.function_name: str | None = None
        self.id: str | None = None
        self.folder: Path | None = None
        self.runner: Any = None

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_config_file(cls, path: str | Path) -> "Experiment":
        """An experiment from an NNI-style YAML file (v1 or v2 form)."""
        return cls(config=load_config(path))

    @classmethod
    def open(cls, experiment_id: str, experiments_dir: str | Path | None = None,
             trial_function: Callable[..., Any] | None = None) -> "Experiment":
        """A stored experiment (to inspect, or to :meth:`run` further)."""
        folder = st.experiment_path(experiment_id, experiments_dir)
        with st.ExperimentStore(folder / st.DB_NAME, readonly=True) as store:
            data = store.experiment()["config"]
        data["experiments_dir"] = str(folder.parent)
        exp = cls.__new__(cls)
        exp.config = ExperimentConfig.from_dict(data, trial_function)
        # a function trial is stored by name: without the function it is view-only
        exp.config.validate(require_trial=trial_function is not None or not data["trial_function"])
        exp.id, exp.folder, exp.runner = experiment_id, folder, None
        exp.function_name = data["trial_function"]
        return exp

    @classmethod
    def resume(cls, experiment_id: str, experiments_dir: str | Path | None = None,
               trial_function: Callable[..., Any] | None = None,
               progress: bool | str = False) -> "Experiment":
        """Continue a stopped or crashed experiment to its trial budget; returns it."""
        exp = cls.open(experiment_id, experiments_dir, trial_function)
        if exp.config.trial_command is None and exp.config.trial_function is None:
            raise ConfigError(f"experiment {experiment_id!r} runs the Python function "
                              f"{exp.function_name}; pass trial_function= to resume it")
        exp.run(progress=progress)
        return exp

    def create(self) -> str:
        """Create the experiment's folder and database (done by :meth:`run` if needed)."""
        if self.id is not None:
            return self.id
        check_resources(self.config)  # before anything exists: a request we cannot meet
        root = st.default_experiments_dir(self.config.experiments_dir)
        root.mkdir(parents=True, exist_ok=True)
        while True:
            exp_id = new_experiment_id()
            try:
                (root / exp_id).mkdir()
                break
            except FileExistsError:
                continue
        with st.ExperimentStore(root / exp_id / st.DB_NAME) as store:
            store.create_experiment(exp_id, self.config.experiment_name, self.config.to_dict())
        self.id, self.folder = exp_id, root / exp_id
        return exp_id

    # ---- running ------------------------------------------------------------------------
    def run(self, progress: bool | str = False) -> "Experiment":
        """Run until the trial budget / duration is spent or :meth:`stop` is called.

        ``progress``: False (quiet), True/'auto' (live table on a terminal, plain lines
        otherwise), 'plain' or 'rich'.
        """
        from torchslim.experiment.runner import Runner

        self.create()
        if self.status == "RUNNING":
            raise ConfigError(f"experiment {self.id!r} is running in another process; "
                              f"stop it first")
        listener = None
        if progress:
            from torchslim.experiment.progress import make_progress

            listener = make_progress("auto" if progress is True else progress)
        with st.ExperimentStore(self.folder / st.DB_NAME) as store:
            self.runner = Runner(store, self.id, self.config, make_service(self.config), listener)
            tuner = self.make_tuner()
            if tuner is not None:  # a subclass (NAS) brings its own tuner
                self.runner.tuner = tuner
            try:
                self.runner.run()
            finally:
                self.runner = None
        return self

    def make_tuner(self) -> Any:
        """The tuner to run with; None builds the one the config names (a hook for NAS)."""
        return None

    def stop(self) -> None:
        """Stop a :meth:`run` going on in another thread (results so far are kept)."""
        if self.runner is not None:
            self.runner.request_stop()

    # ---- results ------------------------------------------------------------------------
    def _read(self) -> st.ExperimentStore:
        if self.folder is None:
            raise ConfigError("this experiment has not been created yet: call run() first")
        return st.ExperimentStore(self.folder / st.DB_NAME, readonly=True)

    @property
    def status(self) -> str:
        with self._read() as store:
            return st.effective_status(store.experiment(), self.folder)

    def trials(self, statuses: tuple[str, ...] | None = None) -> list[st.TrialRecord]:
        """Every trial (or those with the given statuses), in sequence order."""
        with self._read() as store:
            return store.trials(statuses)

    def best_trial(self) -> st.TrialRecord | None:
        """The successful trial with the best final result (per optimize_mode)."""
        done = [t for t in self.trials((st.SUCCEEDED,)) if t.value is not None]
        if not done:
            return None
        pick = max if self.config.optimize_mode == "maximize" else min
        return pick(done, key=lambda t: t.value)

    def export_data(self) -> list[dict[str, Any]]:
        """NNI-style records: trialJobId, parameter, value, status, times, logs (and
        ``paretoOptimal`` when the experiment has several objectives)."""
        from torchslim.experiment.pareto import mark_pareto

        return mark_pareto([t.to_dict() for t in self.trials()], self.config.objectives)

    def pareto_front(self) -> list[st.TrialRecord]:
        """The successful trials no other trial beats on every objective."""
        from torchslim.experiment.pareto import pareto_trials

        return pareto_trials(self.trials((st.SUCCEEDED,)), self.config.objectives
                             or [{"name": "default", "direction": self.config.optimize_mode}])

    # ---- live control (works on a running experiment, here or in another process) ------
    def update(self, *, trial_concurrency: int | None = None, max_trial_number: int | None = None,
               max_experiment_duration: float | str | None = None) -> dict[str, Any]:
        """Change the concurrency, trial budget or duration (NNI's ``update_*``)."""
        from torchslim.experiment import control

        args = {k: v for k, v in (("trial_concurrency", trial_concurrency),
                                  ("max_trial_number", max_trial_number),
                                  ("max_experiment_duration", max_experiment_duration))
                if v is not None}
        self._folder()
        result = control.send(self.folder, "update", args).result
        for key, (_, new) in result.items():
            setattr(self.config, key, new)
        return result

    def kill_trial(self, trial_id: str) -> dict[str, Any]:
        """Kill a running (or cancel a waiting) trial: it ends USER_CANCELED."""
        from torchslim.experiment import control

        self._folder()
        return control.send(self.folder, "kill", {"trial_id": trial_id}).result

    def import_data(self, records: list[dict[str, Any]]) -> list[str]:
        """Add finished trials (NNI's import-data records); returns their ids."""
        from torchslim.experiment import control
        from torchslim.experiment.importdata import parse_records, space_for_stored

        self._folder()
        parse_records(records, space_for_stored(self.config.to_dict()))
        return control.send(self.folder, "import", {"records": records}).result["imported"]

    def _folder(self) -> Path:
        if self.folder is None:
            raise ConfigError("this experiment has not been created yet: call run() first")
        return self.folder
