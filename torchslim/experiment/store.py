"""One SQLite database per experiment: its config, status and every trial.

Why it survives ``kill -9``: the database runs in WAL mode and every state change is its
own committed transaction, written before the runner acts on it (a trial row exists before
its process starts; its result is committed as soon as the process ends). WAL with
``synchronous=NORMAL`` loses nothing on a process crash (only on power loss), and lets
viewers (``status``, ``list``, ``export``) read while the runner writes.

Stdlib only (sqlite3): viewers must start fast.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from torchslim.errors import ConfigError

DB_NAME = "experiment.db"
ENV_EXPERIMENTS_DIR = "TORCHSLIM_EXPERIMENTS_DIR"

# trial statuses (NNI's names)
WAITING, RUNNING, SUCCEEDED, FAILED = "WAITING", "RUNNING", "SUCCEEDED", "FAILED"
EARLY_STOPPED, USER_CANCELED = "EARLY_STOPPED", "USER_CANCELED"
FINISHED_STATUSES = (SUCCEEDED, FAILED, EARLY_STOPPED, USER_CANCELED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS experiment (
    id TEXT PRIMARY KEY, name TEXT, config TEXT NOT NULL, status TEXT NOT NULL,
    message TEXT, pid INTEGER, host TEXT, created REAL, started REAL, ended REAL,
    elapsed REAL NOT NULL DEFAULT 0, heartbeat REAL
);
CREATE TABLE IF NOT EXISTS trials (
    sequence INTEGER PRIMARY KEY, trial_id TEXT UNIQUE NOT NULL, status TEXT NOT NULL,
    parameters TEXT NOT NULL, raw TEXT NOT NULL, final REAL, metric TEXT,
    queued REAL, started REAL, ended REAL, exit_code INTEGER, pid INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0, stdout_path TEXT, stderr_path TEXT, error TEXT
);
CREATE TABLE IF NOT EXISTS intermediate (
    sequence INTEGER NOT NULL, step INTEGER NOT NULL, value REAL, metric TEXT, time REAL,
    PRIMARY KEY (sequence, step)
);
"""


def default_experiments_dir(configured: str | os.PathLike[str] | None = None) -> Path:
    """Where experiments live: the config key if given, else $TORCHSLIM_EXPERIMENTS_DIR,
    else ``~/torchslim-experiments``."""
    chosen = configured or os.environ.get(ENV_EXPERIMENTS_DIR) or "~/torchslim-experiments"
    return Path(chosen).expanduser().resolve()


def experiment_path(exp_id: str, experiments_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder of experiment ``exp_id`` (it must exist)."""
    root = default_experiments_dir(experiments_dir)
    path = root / exp_id
    if not (path / DB_NAME).is_file():
        known = ", ".join(sorted(p.parent.name for p in root.glob(f"*/{DB_NAME}"))) or "none"
        raise ConfigError(f"no experiment with id {exp_id!r} in {str(root)!r}; "
                          f"known ids: {known}")
    return path


def _metric_value(metric: Any) -> float | None:
    if metric is None:
        return None
    if isinstance(metric, dict):
        metric = metric.get("default")
    return float(metric)


@dataclass
class TrialRecord:
    """One trial as stored."""

    sequence: int
    trial_id: str
    status: str
    parameters: dict[str, Any]
    raw: dict[str, Any]
    value: float | None = None
    metric: Any = None  # the reported final result as given (number or dict)
    queued: float | None = None
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    pid: int | None = None
    attempts: int = 0
    stdout_path: str | None = None
    stderr_path: str | None = None
    error: str | None = None
    intermediate: list[float] = field(default_factory=list)

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started

    def to_dict(self) -> dict[str, Any]:
        """An NNI-export-like record."""
        return {
            "trialJobId": self.trial_id, "sequence": self.sequence, "status": self.status,
            "parameter": self.parameters, "value": self.metric, "intermediate": self.intermediate,
            "startTime": self.started, "endTime": self.ended, "duration": self.duration,
            "exitCode": self.exit_code, "stdout": self.stdout_path, "stderr": self.stderr_path,
            "error": self.error,
        }


_TRIAL_COLUMNS = ("sequence, trial_id, status, parameters, raw, final, metric, queued, started, "
                  "ended, exit_code, pid, attempts, stdout_path, stderr_path, error")


class ExperimentStore:
    """Access to one experiment's database; ``readonly`` for viewers."""

    def __init__(self, path: str | os.PathLike[str], readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            # mode=ro: a viewer can never write, even by accident
            self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(_SCHEMA)
            self._migrate()
        self.conn.row_factory = sqlite3.Row

    def _migrate(self) -> None:
        """Add columns newer versions write to a database an older version created."""
        columns = {row[1] for row in self.conn.execute("PRAGMA table_info(experiment)")}
        if "heartbeat" not in columns:  # when `elapsed` was last written (while running)
            self.conn.execute("ALTER TABLE experiment ADD COLUMN heartbeat REAL")

    @property
    def folder(self) -> Path:
        return self.path.parent

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "ExperimentStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql: str, args: Iterable[Any] = ()) -> None:
        # isolation_level=None: each statement is its own committed transaction
        self.conn.execute(sql, tuple(args))

    # ---- experiment row -------------------------------------------------------------
    def create_experiment(self, exp_id: str, name: str, config: dict[str, Any]) -> None:
        self._write(
            "INSERT INTO experiment (id, name, config, status, created, host) "
            "VALUES (?, ?, ?, 'CREATED', ?, ?)",
            (exp_id, name, json.dumps(config), time.time(), socket.gethostname()),
        )

    def experiment(self) -> dict[str, Any]:
        row = self.conn.execute("SELECT * FROM experiment").fetchone()
        if row is None:
            raise ConfigError(f"experiment database {str(self.path)!r} holds no experiment")
        info = dict(row)
        info["config"] = json.loads(info["config"])
        return info

    def update_experiment(self, **fields: Any) -> None:
        if "config" in fields:
            fields["config"] = json.dumps(fields["config"])
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._write(f"UPDATE experiment SET {sets}", fields.values())

    # ---- trials ---------------------------------------------------------------------
    def add_trial(self, sequence: int, trial_id: str, parameters: dict[str, Any],
                  raw: dict[str, Any], status: str = WAITING) -> None:
        self._write(
            "INSERT INTO trials (sequence, trial_id, status, parameters, raw, queued) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (sequence, trial_id, status, json.dumps(parameters), json.dumps(raw), time.time()),
        )

    def trial_started(self, sequence: int, stdout_path: str | None, stderr_path: str | None,
                      pid: int | None = None) -> None:
        # a re-run (after a crash) starts clean: old intermediate results belong to a run
        # whose final result never arrived
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.execute("DELETE FROM intermediate WHERE sequence = ?", (sequence,))
            self.conn.execute(
                "UPDATE trials SET status = 'RUNNING', started = ?, ended = NULL, "
                "attempts = attempts + 1, stdout_path = ?, stderr_path = ?, pid = ?, "
                "final = NULL, metric = NULL, error = NULL WHERE sequence = ?",
                (time.time(), stdout_path, stderr_path, pid, sequence),
            )

    def set_trial_pid(self, sequence: int, pid: int | None) -> None:
        self._write("UPDATE trials SET pid = ? WHERE sequence = ?", (pid, sequence))

    def add_intermediate(self, sequence: int, step: int, metric: Any) -> None:
        self._write(
            "INSERT OR REPLACE INTO intermediate (sequence, step, value, metric, time) "
            "VALUES (?, ?, ?, ?, ?)",
            (sequence, step, _metric_value(metric), json.dumps(metric), time.time()),
        )

    def trial_finished(self, sequence: int, status: str, metric: Any = None,
                       exit_code: int | None = None, error: str | None = None) -> None:
        self._write(
            "UPDATE trials SET status = ?, final = ?, metric = ?, ended = ?, exit_code = ?, "
            "error = ?, pid = NULL WHERE sequence = ?",
            (status, _metric_value(metric), None if metric is None else json.dumps(metric),
             time.time(), exit_code, error, sequence),
        )

    def requeue_unfinished(self) -> list[TrialRecord]:
        """Put trials that were running (crash, stop) back to WAITING; return all WAITING."""
        self._write("UPDATE trials SET status = 'WAITING', pid = NULL WHERE status = 'RUNNING'")
        return self.trials(statuses=(WAITING,))

    def count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]

    def trials(self, statuses: Iterable[str] | None = None, with_intermediate: bool = True,
               sequences: Iterable[int] | None = None) -> list[TrialRecord]:
        """Trials in sequence order, optionally only those with given statuses/sequences."""
        where, args = [], []
        for column, values in (("status", statuses), ("sequence", sequences)):
            if values is not None:
                values = tuple(values)
                where.append(f"{column} IN ({', '.join('?' * len(values))})")
                args.extend(values)
        sql = f"SELECT {_TRIAL_COLUMNS} FROM trials"
        if where:
            sql += " WHERE " + " AND ".join(where)
        records = [self._record(row) for row in self.conn.execute(sql + " ORDER BY sequence", args)]
        if with_intermediate and records:
            by_seq = {r.sequence: r for r in records}
            rows = self.conn.execute(
                "SELECT sequence, value FROM intermediate WHERE sequence BETWEEN ? AND ? "
                "ORDER BY sequence, step", (records[0].sequence, records[-1].sequence))
            for seq, value in rows:
                if seq in by_seq:
                    by_seq[seq].intermediate.append(value)
        return records

    def status_counts(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT status, COUNT(*) FROM trials GROUP BY status"))

    @staticmethod
    def _record(row: sqlite3.Row) -> TrialRecord:
        return TrialRecord(
            sequence=row["sequence"], trial_id=row["trial_id"], status=row["status"],
            parameters=json.loads(row["parameters"]), raw=json.loads(row["raw"]),
            value=row["final"], metric=None if row["metric"] is None else json.loads(row["metric"]),
            queued=row["queued"], started=row["started"], ended=row["ended"],
            exit_code=row["exit_code"], pid=row["pid"], attempts=row["attempts"],
            stdout_path=row["stdout_path"], stderr_path=row["stderr_path"], error=row["error"],
        )


def pid_alive(pid: int | None, host: str | None = None) -> bool:
    """Whether ``pid`` runs (only checkable on the host that started it)."""
    if not pid or (host and host != socket.gethostname()):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def effective_status(info: dict[str, Any], folder: str | os.PathLike[str] | None = None) -> str:
    """The experiment status, with RUNNING shown as INTERRUPTED when no manager runs it.

    With the experiment's ``folder``, "runs" means "holds the manager lock" (exact, even
    right after a ``kill -9``); without it, the stored pid is checked.
    """
    if info["status"] != "RUNNING":
        return info["status"]
    if folder is not None:
        from torchslim.experiment.lock import manager_running

        alive = manager_running(folder)
    else:
        alive = pid_alive(info["pid"], info.get("host"))
    return "RUNNING" if alive else "INTERRUPTED"


def iter_experiments(experiments_dir: str | os.PathLike[str] | None = None
                     ) -> Iterator[tuple[Path, dict[str, Any], dict[str, int]]]:
    """(folder, experiment row, trial status counts) of every experiment, oldest first."""
    root = default_experiments_dir(experiments_dir)
    found = []
    for db in root.glob(f"*/{DB_NAME}"):
        try:
            with closing(ExperimentStore(db, readonly=True)) as store:
                found.append((db.parent, store.experiment(), store.status_counts()))
        except (sqlite3.Error, ConfigError):
            continue  # a half-created or foreign folder: not ours to show
    found.sort(key=lambda item: item[1].get("created") or 0)
    yield from found
