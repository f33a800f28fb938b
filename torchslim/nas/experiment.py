"""``NasExperiment(model_space, evaluator, strategy)``: NAS on the experiment engine.

A multi-trial strategy becomes the engine's tuner over ``model_space.search_space()``; each
trial freezes its architecture and hands it to the evaluator (in this process by default,
or as a subprocess with ``config.execution_engine = 'subprocess'``). Store, resume, CLI and
web UI are the engine's: the architectures are the trials' parameters. A one-shot strategy
trains its supernet in this process instead.
"""
from __future__ import annotations

import pickle
import shlex
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch.nn as nn

from torchslim.errors import ConfigError
from torchslim.experiment.config import ExperimentConfig
from torchslim.experiment.experiment import Experiment
from torchslim.experiment.searchspace import SearchSpace
from torchslim.nas.evaluator import Evaluator
from torchslim.nas.nn.base import ModelSpace
from torchslim.nas.pareto import pareto_front
from torchslim.nas.strategy.base import MultiTrialStrategy, Strategy

__all__ = ["NasExperiment", "NasExperimentConfig"]

FORMATTERS = ("dict", "instance")
ENGINES = ("in_process", "subprocess")


@dataclass
class NasExperimentConfig:
    """NNI's ``NasExperimentConfig`` keys (snake_case) that torchslim uses."""

    max_trial_number: int | None = None
    trial_concurrency: int = 1
    trial_gpu_number: int = 0
    max_experiment_duration: float | str | None = None
    max_trial_duration: float | str | None = None
    execution_engine: str = "in_process"
    optimize_mode: str = "maximize"
    experiment_name: str | None = None  # default: "nas <strategy>"
    experiments_dir: str | None = None


class _NasTrials(Experiment):
    """The engine's experiment, running the strategy's tuner instead of a named one."""

    def __init__(self, config: ExperimentConfig, make: Callable[[SearchSpace], Any]) -> None:
        super().__init__(config=config)
        self._make = make

    def make_tuner(self) -> Any:
        return self._make(SearchSpace.parse(self.config.search_space))


class NasExperiment:
    """Search ``model_space`` with ``strategy``, scoring architectures with ``evaluator``."""

    def __init__(self, model_space: ModelSpace, evaluator: Evaluator | None,
                 strategy: Strategy) -> None:
        if not isinstance(model_space, nn.Module):
            raise ConfigError(f"NasExperiment needs a ModelSpace, got {type(model_space).__name__}")
        if not isinstance(strategy, Strategy):
            raise ConfigError(f"NasExperiment strategy is {strategy!r}; use one from "
                              f"torchslim.nas.strategy (Random(), TPE(), DARTS(), ...)")
        self.model_space, self.evaluator, self.strategy = model_space, evaluator, strategy
        self.config = NasExperimentConfig()
        self.experiment: Experiment | None = None
        self.server: Any = None
        self._payload_dir: tempfile.TemporaryDirectory[str] | None = None

    # ---- running ------------------------------------------------------------------------
    def run(self, port: int | None = None, debug: bool = False, progress: bool | str = False
            ) -> "NasExperiment":
        """Run the search; with ``port``, serve the web UI there (it stays up until stop())."""
        if not isinstance(self.strategy, MultiTrialStrategy):
            self.strategy.run(self.model_space, self.evaluator)  # one-shot
            return self
        if self.evaluator is None:
            raise ConfigError("a multi-trial strategy needs an evaluator, e.g. "
                              "FunctionalEvaluator(evaluate_model)")
        space = self.model_space.simplify()  # validates labels before anything is created
        if not space:
            raise ConfigError("the model space has no choices: nothing to search")
        exp = _NasTrials(self._engine_config(), self._make_tuner)
        self.experiment = exp
        exp.create()
        if port is not None:
            self._serve(port)
        exp.run(progress=progress)
        return self

    @classmethod
    def resume(cls, experiment_id: str, model_space: ModelSpace, evaluator: Evaluator,
               strategy: Strategy, experiments_dir: str | None = None,
               max_trial_number: int | None = None, progress: bool | str = False
               ) -> "NasExperiment":
        """Continue a stored in-process search (optionally to a larger trial budget).

        The strategy relearns every stored result first; unfinished trials run again.
        """
        nas = cls(model_space, evaluator, strategy)
        if not isinstance(strategy, MultiTrialStrategy):
            raise ConfigError("only multi-trial searches are stored, so only they resume")
        exp = _NasTrials.open(experiment_id, experiments_dir)
        if exp.config.trial_command is not None:
            raise ConfigError(f"experiment {experiment_id!r} ran trials as subprocesses from a "
                              f"temporary payload; start a new search instead")
        if exp.config.search_space != model_space.search_space():
            raise ConfigError(f"experiment {experiment_id!r} searched another space: its labels "
                              f"are {list(exp.config.search_space)}")
        exp.config.trial_function = nas._trial_function()
        if max_trial_number is not None:
            exp.config.max_trial_number = max_trial_number
        exp.config.validate()
        exp._make = nas._make_tuner
        nas.config.optimize_mode = exp.config.optimize_mode
        nas.config.max_trial_number = exp.config.max_trial_number
        nas.experiment = exp
        exp.run(progress=progress)
        return nas

    def _make_tuner(self, space: SearchSpace) -> Any:
        assert isinstance(self.strategy, MultiTrialStrategy)
        return self.strategy.make_tuner(space, self.config.optimize_mode)

    def _engine_config(self) -> ExperimentConfig:
        c = self.config
        if c.execution_engine not in ENGINES:
            raise ConfigError(f"config.execution_engine is {c.execution_engine!r}; "
                              f"allowed: {', '.join(ENGINES)}")
        trial: dict[str, Any] = {}
        if c.execution_engine == "subprocess":
            trial["trial_command"], trial["trial_code_directory"] = self._trial_command()
        else:
            trial["trial_function"] = self._trial_function()
        return ExperimentConfig(
            search_space=self.model_space.search_space(), **trial,
            trial_concurrency=c.trial_concurrency, max_trial_number=c.max_trial_number,
            max_experiment_duration=c.max_experiment_duration,
            max_trial_duration=c.max_trial_duration, trial_gpu_number=c.trial_gpu_number,
            # the engine stores a tuner name; the strategy's own tuner runs (make_tuner)
            tuner=getattr(self.strategy, "engine_tuner", "Random"),
            tuner_args={"optimize_mode": c.optimize_mode},
            experiment_name=c.experiment_name or f"nas {self.strategy!r}",
            experiments_dir=c.experiments_dir,
        ).validate()

    def _trial_function(self) -> Callable[[dict[str, Any]], Any]:
        space, evaluator = self.model_space, self.evaluator

        def trial(parameters: dict[str, Any]) -> Any:
            return evaluator.evaluate(space.freeze(parameters))

        # the store names a function trial by its function: show the user's evaluator
        trial.__module__ = getattr(evaluator, "function", trial).__module__
        trial.__qualname__ = getattr(getattr(evaluator, "function", None), "__qualname__",
                                     type(evaluator).__name__)
        return trial

    def _trial_command(self) -> tuple[str, str]:
        for obj, what in ((type(self.model_space), "model space class"),
                          (getattr(self.evaluator, "function", type(self.evaluator)),
                           "evaluator function")):
            if getattr(obj, "__module__", None) == "__main__":
                raise ConfigError(
                    f"execution_engine='subprocess' needs the {what} {obj.__qualname__!r} "
                    f"importable from a module (it is defined in __main__); move it into a "
                    f"module or use the default execution_engine='in_process'")
        try:
            payload = pickle.dumps((self.model_space, self.evaluator))
        except Exception as exc:  # noqa: BLE001 (any pickling failure means the same thing)
            raise ConfigError(f"execution_engine='subprocess' needs a picklable model space "
                              f"and evaluator: {exc}") from exc
        self._payload_dir = tempfile.TemporaryDirectory(prefix="torchslim-nas-")
        path = Path(self._payload_dir.name) / "payload.pkl"
        path.write_bytes(payload)
        pythonpath = ":".join(p for p in sys.path if p)
        command = (f"env PYTHONPATH={shlex.quote(pythonpath)} {shlex.quote(sys.executable)} "
                   f"-m torchslim.nas.trial {shlex.quote(str(path))}")
        return command, self._payload_dir.name

    def _serve(self, port: int) -> None:
        from torchslim.experiment.webui.server import make_server

        assert self.experiment is not None and self.experiment.folder is not None
        server = make_server(port=port, experiments_dir=self.experiment.folder.parent,
                             default_id=self.experiment.id)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                         name="torchslim-nas-webui", daemon=True).start()
        self.server = server
        print(f"torchslim web UI: {server.url}/experiments/{self.experiment.id}", flush=True)

    def stop(self) -> None:
        """Stop a running search and the web UI."""
        if self.experiment is not None:
            self.experiment.stop()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    # ---- results ------------------------------------------------------------------------
    def trials(self) -> list[Any]:
        """The engine's trial records (parameters = architecture)."""
        if self.experiment is None:
            raise ConfigError("the experiment has not run yet: call run() first")
        return self.experiment.trials()

    def _ranked(self) -> list[tuple[dict[str, Any], Any]]:
        from torchslim.experiment import store as st
        from torchslim.experiment.runner import metric_value

        done = [r for r in self.trials() if r.status == st.SUCCEEDED and r.value is not None]
        done.sort(key=lambda r: metric_value(r.metric),
                  reverse=self.config.optimize_mode == "maximize")
        return [(dict(r.parameters), r.metric) for r in done]

    def export_top_models(self, top_k: int = 1, formatter: str = "dict",
                          objectives: dict[str, Callable[[dict[str, Any]], float]] | None = None
                          ) -> list[Any]:
        """The best ``top_k`` architectures as dicts or frozen modules (``formatter``).

        ``objectives``: extra costs to minimise, ``{name: sample -> number}`` (e.g. a
        profiler's ``profile``); then the export is the Pareto front of the score and
        those costs (best score first), cut to ``top_k``.
        """
        if formatter not in FORMATTERS:
            raise ConfigError(f"formatter is {formatter!r}; allowed: {', '.join(FORMATTERS)}")
        if not isinstance(top_k, int) or top_k < 1:
            raise ConfigError(f"top_k is {top_k!r}; allowed: an int >= 1")
        if isinstance(self.strategy, MultiTrialStrategy):
            samples = [s for s, _ in self._ranked()]
        else:
            samples = self.strategy.export_top_models(top_k if not objectives else 10 * top_k)
        if objectives:
            samples = pareto_front(samples, objectives)
        samples = samples[:top_k]
        if formatter == "dict":
            return samples
        return [self.model_space.freeze(s) for s in samples]
