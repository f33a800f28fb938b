"""Live control of an experiment through its own database (``experiment update``, ``trial kill``,
``import``): the control channel.

A controller (CLI, web UI) never talks to the manager process directly. It appends a row to
the ``control`` table of the experiment's SQLite database; the runner polls that table between
events, *claims* a pending command with a conditional UPDATE, and applies it. Whoever claims a
command first applies it: if the manager is gone (crash, stop), the controller claims its own
command and applies it to the stored state, so nothing is left half-done.

Why this survives ``kill -9`` of the manager: a command's effect on the stored state and the
command's ``DONE`` mark are one SQLite transaction (:func:`commit_update` and friends), so after
a crash a command is either fully applied or still ``PENDING`` (and the next run applies it).
Readers (status, web UI) are never blocked: WAL mode, short write transactions.

Stdlib only (sqlite3): controllers must start fast.
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from torchslim.errors import ConfigError
from torchslim.experiment import store as st

PENDING, CLAIMED, DONE, REJECTED = "PENDING", "CLAIMED", "DONE", "REJECTED"
KINDS = ("update", "kill", "import")
POLL_S = 0.25  # how often a running manager looks for commands
# update keys (CLI/API spelling) -> stored config field
UPDATE_FIELDS = {"trial_concurrency": "trial_concurrency", "max_trial_number": "max_trial_number",
                 "max_experiment_duration": "max_experiment_duration"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS control (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, args TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'PENDING', result TEXT, created REAL, applied REAL
);
"""


@dataclass
class Command:
    """One control request as stored."""

    id: int
    kind: str
    args: dict[str, Any]
    status: str
    result: Any = None

    @property
    def finished(self) -> bool:
        return self.status in (DONE, REJECTED)


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(_SCHEMA)


def _row(row: Any) -> Command:
    result = row[4]
    return Command(row[0], row[1], json.loads(row[2]), row[3],
                   None if result is None else json.loads(result))


def submit(store: st.ExperimentStore, kind: str, args: Mapping[str, Any]) -> int:
    """Append a command; returns its id."""
    if kind not in KINDS:
        raise ConfigError(f"control command is {kind!r}; allowed: {', '.join(KINDS)}")
    ensure_schema(store.conn)
    cur = store.conn.execute(
        "INSERT INTO control (kind, args, created) VALUES (?, ?, ?)",
        (kind, json.dumps(dict(args)), time.time()))
    return int(cur.lastrowid)


def get(store: st.ExperimentStore, command_id: int) -> Command:
    row = store.conn.execute("SELECT id, kind, args, status, result FROM control WHERE id = ?",
                             (command_id,)).fetchone()
    if row is None:
        raise ConfigError(f"no control command {command_id}")
    return _row(row)


def pending(store: st.ExperimentStore) -> list[Command]:
    """Commands nobody has applied yet, oldest first (CLAIMED ones were interrupted by a
    crash mid-apply and, having changed nothing, are pending again)."""
    try:
        rows = store.conn.execute(
            "SELECT id, kind, args, status, result FROM control WHERE status IN (?, ?) "
            "ORDER BY id", (PENDING, CLAIMED)).fetchall()
    except sqlite3.OperationalError:  # no control table yet: nobody ever sent a command
        return []
    return [_row(r) for r in rows]


def claim(store: st.ExperimentStore, command: Command) -> bool:
    """Take ``command`` for applying; False if someone else took it first."""
    cur = store.conn.execute(
        "UPDATE control SET status = ? WHERE id = ? AND status IN (?, ?)",
        (CLAIMED, command.id, PENDING, CLAIMED))
    return cur.rowcount == 1


def _finish_sql(conn: sqlite3.Connection, command_id: int, status: str, result: Any) -> None:
    conn.execute("UPDATE control SET status = ?, result = ?, applied = ? WHERE id = ?",
                 (status, json.dumps(result), time.time(), command_id))


def reject(store: st.ExperimentStore, command: Command, reason: str) -> None:
    _finish_sql(store.conn, command.id, REJECTED, {"error": reason})


def transaction(store: st.ExperimentStore, command: Command, work: Callable[[sqlite3.Connection], Any]
                ) -> Any:
    """Run ``work(conn)`` and mark ``command`` DONE with its result, atomically."""
    conn = store.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn)
        _finish_sql(conn, command.id, DONE, result)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return result


# ---- what a command does to the stored state -------------------------------------------

def check_update(args: Mapping[str, Any]) -> dict[str, Any]:
    """Validated config changes of an ``update`` command (keys as the config fields)."""
    from torchslim.experiment.config import parse_duration

    unknown = sorted(set(args) - set(UPDATE_FIELDS))
    if unknown:
        raise ConfigError(f"update has unknown key(s) {unknown}; allowed: {', '.join(UPDATE_FIELDS)}")
    if not args:
        raise ConfigError("update needs at least one of --concurrency, --max-trials, --duration")
    out: dict[str, Any] = {}
    for key, value in args.items():
        if key == "max_experiment_duration":
            out[key] = parse_duration(value, "--duration (maxExperimentDuration)")
        elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
            flag = "--concurrency" if key == "trial_concurrency" else "--max-trials"
            raise ConfigError(f"{flag} is {value!r}; allowed: an integer >= 1")
        else:
            out[key] = value
    return out


def update_config_sql(conn: sqlite3.Connection, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Apply config changes to the stored config; returns {field: [old, new]}."""
    config = json.loads(conn.execute("SELECT config FROM experiment").fetchone()[0])
    diff = {k: [config.get(k), v] for k, v in changes.items()}
    config.update(changes)
    conn.execute("UPDATE experiment SET config = ?", (json.dumps(config),))
    return diff


def cancel_trial_sql(conn: sqlite3.Connection, trial_id: str, reason: str) -> str:
    """Mark a trial that is not running USER_CANCELED; returns its previous status."""
    row = conn.execute("SELECT status FROM trials WHERE trial_id = ?", (trial_id,)).fetchone()
    if row is None:
        raise ConfigError(f"no trial {trial_id!r}")
    if row[0] in st.FINISHED_STATUSES:
        raise ConfigError(f"trial {trial_id} already finished ({row[0]})")
    conn.execute("UPDATE trials SET status = ?, error = ?, ended = ?, pid = NULL "
                 "WHERE trial_id = ?", (st.USER_CANCELED, reason, time.time(), trial_id))
    return row[0]


def apply_offline(store: st.ExperimentStore, command: Command) -> Any:
    """Apply ``command`` to a stored experiment whose manager is not running."""
    if not claim(store, command):
        return None
    try:
        if command.kind == "update":
            changes = check_update(command.args)
            return transaction(store, command, lambda c: update_config_sql(c, changes))
        if command.kind == "kill":
            trial_id = command.args["trial_id"]
            return transaction(store, command, lambda c: {
                "trial_id": trial_id, "was": cancel_trial_sql(c, trial_id, "killed by user")})
        if command.kind == "import":
            from torchslim.experiment import importdata as imp

            config = store.experiment()["config"]
            records = [{**r, "value": imp.with_default(r["value"], config.get("objectives"))}
                       for r in imp.parse_records(command.args.get("records"),
                                                  imp.space_for_stored(config))]
            return transaction(store, command, lambda c: imp.import_records_sql(c, records))
    except ConfigError as exc:
        reject(store, command, str(exc))
        raise
    raise ConfigError(f"unknown control command {command.kind!r}")


# ---- the controller's side ---------------------------------------------------------------

def manager_running(store: st.ExperimentStore) -> bool:
    return st.effective_status(store.experiment(), store.folder) == "RUNNING"


def send(folder: str | Path, kind: str, args: Mapping[str, Any], timeout: float = 20.0) -> Command:
    """Send a command to the experiment in ``folder`` and wait until it is applied.

    With its manager running the manager applies it (the wait is for that); otherwise it is
    applied to the stored state here. Raises ConfigError when it was rejected.
    """
    with st.ExperimentStore(Path(folder) / st.DB_NAME) as store:
        ensure_schema(store.conn)
        command_id = submit(store, kind, args)
        deadline = time.monotonic() + timeout
        while True:
            command = get(store, command_id)
            if command.finished:
                break
            if not manager_running(store):  # gone (or never there): apply it ourselves
                apply_offline(store, command)  # a CLAIMED one was cut off by a crash
                continue
            if time.monotonic() >= deadline:
                raise ConfigError(f"the experiment's manager did not apply the {kind} command "
                                  f"within {timeout:g}s; it stays queued (id {command_id}) and is "
                                  f"applied when the manager next looks")
            time.sleep(0.05)  # polling another process's database: no event to wait on
    if command.status == REJECTED:
        raise ConfigError((command.result or {}).get("error", f"{kind} was rejected"))
    return command


def find_trial(records: Iterable[st.TrialRecord], trial: str) -> st.TrialRecord:
    """A trial by id (``trial_0003``) or sequence number (``3``)."""
    records = list(records)
    for r in records:
        if trial in (r.trial_id, str(r.sequence)):
            return r
    raise ConfigError(f"no trial {trial!r}; trials: "
                      f"{', '.join(r.trial_id for r in records[:10]) or 'none'}"
                      + (" ..." if len(records) > 10 else ""))
