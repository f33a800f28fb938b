"""A ``compress()`` search recorded as an experiment in torchslim's experiment store.

Every candidate the search scores is a trial (parameters: per-unit sparsities; metrics:
score, params, MACs, predicted latency), so ``torchslim experiment status/view/export`` and
the web UI show the search as they show any experiment (Pareto plot of the score against
the budget metric included).

Why a re-run continues where a ``kill -9`` left it: the searches are deterministic given
their seed and the scores they receive. A resumed run replays the search from the start;
each candidate already in the store is answered from its stored score (not evaluated
again), so the tuners, the annealing and the greedy walk see the very same history and
propose the very same next candidates: the result equals that of an uninterrupted run,
and only the candidates the killed run never finished are evaluated (a candidate that was
running when the process died is run again in its own trial row, ``attempts`` 2).
The experiment's manager lock is held while the search runs, so a second process is
refused and ``status`` shows INTERRUPTED right after a crash.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from torchslim.errors import ConfigError
from torchslim.experiment import store as st
from torchslim.experiment.lock import ExperimentLocked, ManagerLock

KIND = "compress"  # config["kind"] of a compress experiment
_HEARTBEAT_S = 1.0
_METRIC_NAMES = {"latency": "latency_ms"}  # cost-model metric -> the name a trial reports


class CompressExperiment:
    """The store of one compress search: create or reopen it, then hand it to ``compress()``.

    ``settings`` (JSON-able) say what the search is; reopening an experiment with other
    settings is refused, since its stored scores would belong to another search.
    """

    def __init__(self, folder: Path, exp_id: str, settings: dict[str, Any]) -> None:
        self.folder, self.id, self.settings = folder, exp_id, settings
        self.store: st.ExperimentStore | None = None
        self.lock = ManagerLock(folder)
        self.known: dict[tuple, st.TrialRecord] = {}
        self.key: Callable[[np.ndarray], tuple] = lambda s: tuple(np.round(s, 4))
        self.units: list[str] = []
        self.objectives: list[dict[str, str]] = []
        self.say: Callable[[str], None] = lambda line: None  # compress() sets its progress display
        self.evaluated = 0  # candidates this process scored (the rest came from the store)
        self.reused = 0
        self._started = time.monotonic()
        self._elapsed_before = 0.0
        self._beat = 0.0

    # ---- create / reopen ----------------------------------------------------------------
    @classmethod
    def open(cls, settings: Mapping[str, Any], experiment_id: str | None = None,
             experiments_dir: str | os.PathLike[str] | None = None,
             name: str = "compress") -> "CompressExperiment":
        """The experiment ``experiment_id`` (created when it does not exist; a new id when None)."""
        from torchslim.experiment.experiment import new_experiment_id

        settings = dict(settings)
        root = st.default_experiments_dir(experiments_dir)
        if experiment_id is not None and (root / experiment_id / st.DB_NAME).is_file():
            folder = root / experiment_id
            with st.ExperimentStore(folder / st.DB_NAME, readonly=True) as store:
                config = store.experiment()["config"]
            if config.get("kind") != KIND:
                raise ConfigError(f"experiment {experiment_id!r} is not a compress experiment; "
                                  f"pick another id")
            stored = config.get("compress", {})
            changed = sorted(k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k))
            if changed:
                raise ConfigError(
                    f"experiment {experiment_id!r} was a search with other settings ("
                    + ", ".join(f"{k}: {stored.get(k)!r} now {settings.get(k)!r}" for k in changed)
                    + f"); resume it with `torchslim compress --resume {experiment_id}` or pick a new id")
            return cls(folder, experiment_id, settings)
        if experiment_id is not None and (not experiment_id or any(c in experiment_id for c in "/\\ ")):
            raise ConfigError(f"experiment id {experiment_id!r}: use letters, digits, '-' or '_'")
        root.mkdir(parents=True, exist_ok=True)
        while True:
            exp_id = experiment_id or new_experiment_id()
            try:
                (root / exp_id).mkdir()
                break
            except FileExistsError:
                if experiment_id is not None:
                    raise ConfigError(f"{str(root / exp_id)!r} exists and holds no experiment") from None
        algorithm = settings.get("algorithm", "tuner")
        config = {"kind": KIND, "experiment_name": name,
                  "tuner": settings.get("tuner", "TPE") if algorithm == "tuner" else algorithm,
                  "tuner_args": {"optimize_mode": "maximize"}, "search_space": {},
                  "trial_function": "torchslim.auto.compress", "trial_command": None,
                  "trial_concurrency": 1, "max_trial_number": None, "objectives": None,
                  "compress": settings}
        with st.ExperimentStore(root / exp_id / st.DB_NAME) as store:
            store.create_experiment(exp_id, name, config)
        return cls(root / exp_id, exp_id, settings)

    @staticmethod
    def stored_settings(experiment_id: str, experiments_dir: str | os.PathLike[str] | None = None
                        ) -> dict[str, Any]:
        """The settings a compress experiment was created with (for ``--resume``)."""
        folder = st.experiment_path(experiment_id, experiments_dir)
        with st.ExperimentStore(folder / st.DB_NAME, readonly=True) as store:
            config = store.experiment()["config"]
        if config.get("kind") != KIND:
            raise ConfigError(f"experiment {experiment_id!r} is not a compress experiment "
                              f"(resume it with `torchslim experiment resume {experiment_id}`)")
        return dict(config["compress"])

    @property
    def status(self) -> str:
        with st.ExperimentStore(self.folder / st.DB_NAME, readonly=True) as store:
            return st.effective_status(store.experiment(), self.folder)

    # ---- running ------------------------------------------------------------------------
    def __enter__(self) -> "CompressExperiment":
        try:
            self.lock.acquire()
        except ExperimentLocked:
            raise ConfigError(f"experiment {self.id!r} is running in another process; "
                              f"stop it first") from None
        self.store = st.ExperimentStore(self.folder / st.DB_NAME)
        info = self.store.experiment()
        self._elapsed_before = float(info.get("elapsed") or 0.0)
        self._started = time.monotonic()
        now = time.time()
        self.store.update_experiment(status="RUNNING", pid=os.getpid(), started=now, heartbeat=now,
                                     ended=None, message=None)
        # a candidate the killed run was scoring is scored again, in its own row
        self.store.requeue_unfinished()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self.store is not None
        if exc_type is None:
            status, message = "DONE", self.store.experiment().get("message")
        elif issubclass(exc_type, KeyboardInterrupt):
            status, message = "STOPPED", "stopped by user"
        else:
            status, message = "ERROR", f"{exc_type.__name__}: {exc}"
        self.store.requeue_unfinished()
        now = time.time()
        self.store.update_experiment(status=status, message=message, pid=None, ended=now,
                                     heartbeat=now, elapsed=self._elapsed())
        self.store.close()
        self.store = None
        self.lock.release()

    def _elapsed(self) -> float:
        return self._elapsed_before + time.monotonic() - self._started

    def bind(self, units: Sequence[str], key: Callable[[np.ndarray], tuple], score_name: str,
             metrics: Sequence[str], max_sparsity: float, search: str = "TPE") -> None:
        """Called by ``compress()`` once the units are known: the search space, objectives and
        search (the web UI's "tuner") it shows, and the stored candidates by their key."""
        assert self.store is not None, "use the experiment as a context manager"
        self.units, self.key = list(units), key
        self.objectives = [{"name": score_name, "direction": "maximize"},
                           *({"name": _METRIC_NAMES.get(m, m), "direction": "minimize"} for m in metrics)]
        config = self.store.experiment()["config"]
        config["search_space"] = {u: {"_type": "uniform", "_value": [0.0, max_sparsity]} for u in self.units}
        config["objectives"] = self.objectives
        config["tuner"] = search  # the tuner's name, or netadapt / anneal / uniform
        self.store.update_experiment(config=config)
        self.known = {}
        for rec in self.store.trials(with_intermediate=False):
            self.known[key(np.asarray(rec.raw["sparsity"], dtype=float))] = rec

    def has(self, s: np.ndarray) -> bool:
        """Whether candidate ``s`` has a stored outcome (it will not be evaluated again)."""
        rec = self.known.get(self.key(s))
        return rec is not None and rec.status in (st.SUCCEEDED, st.FAILED)

    def score(self, s: np.ndarray, source: str, costs: Mapping[str, float],
              compute: Callable[[], float]) -> float:
        """The score of candidate ``s``: read back from the store, or computed and recorded
        (a failing candidate is a FAILED trial scored -inf; the search goes on)."""
        assert self.store is not None, "use the experiment as a context manager"
        k = self.key(s)
        rec = self.known.get(k)
        if self.has(s):
            self.reused += 1
            return float(rec.value) if rec.status == st.SUCCEEDED and rec.value is not None else -math.inf
        if rec is None:
            seq = self.store.count()
            params = {u: round(float(v), 6) for u, v in zip(self.units, s)}
            self.store.add_trial(seq, f"trial_{seq:04d}", params,
                                 {"sparsity": [float(v) for v in s], "source": source})
        else:
            seq = rec.sequence
        self.store.trial_started(seq, None, None, os.getpid())
        self.evaluated += 1
        try:
            value = float(compute())
        except Exception as exc:  # noqa: BLE001 - a trial can fail; the search does not die of it
            self.store.trial_finished(seq, st.FAILED, None, 1, f"{type(exc).__name__}: {exc}")
            self.say(f"trial_{seq:04d} ({source}) FAILED: {type(exc).__name__}: {exc}")
            value = -math.inf
        else:
            metric = {"default": value, self.objectives[0]["name"]: value,
                      **{_METRIC_NAMES.get(m, m): float(v) for m, v in costs.items()}}
            self.store.trial_finished(seq, st.SUCCEEDED, metric, 0)
            self.say(f"trial_{seq:04d} ({source}): {self.objectives[0]['name']} {value:.2f}, "
                     + ", ".join(f"{_METRIC_NAMES.get(m, m)} {v:,.4g}" for m, v in costs.items()))
        self.known[k] = self.store.trials(sequences=[seq], with_intermediate=False)[0]
        self._heartbeat()
        return value

    def _heartbeat(self) -> None:
        if self.store is not None and time.monotonic() - self._beat >= _HEARTBEAT_S:
            self._beat = time.monotonic()
            self.store.update_experiment(elapsed=self._elapsed(), heartbeat=time.time())

    def finish(self, result: Any) -> Path:
        """Save the result next to the trials and make its headline the experiment's message."""
        assert self.store is not None
        out = result.save(self.folder / "result")
        self.store.update_experiment(message=result.headline())
        return out


__all__ = ["CompressExperiment", "KIND"]
