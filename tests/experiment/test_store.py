"""The per-experiment SQLite store: WAL, round trips, re-queueing, read-only viewers."""
from __future__ import annotations

import sqlite3

import pytest

from torchslim.errors import ConfigError
from torchslim.experiment import store as st


@pytest.fixture
def db(tmp_path):
    with st.ExperimentStore(tmp_path / "e1" / st.DB_NAME) as store:
        store.create_experiment("e1", "demo", {"max_trial_number": 3, "tuner": "TPE"})
        yield store


def test_wal_mode_and_experiment_row(db):
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    info = db.experiment()
    assert (info["id"], info["name"], info["status"]) == ("e1", "demo", "CREATED")
    assert info["config"]["tuner"] == "TPE"
    db.update_experiment(status="RUNNING", pid=123)
    assert db.experiment()["pid"] == 123


def test_trial_round_trip_with_intermediate_results(db):
    db.add_trial(0, "trial_0000", {"a": {"_name": "x", "b": 1}}, {"a": 0, "a[x].b": 1})
    db.trial_started(0, "/o", "/e", pid=42)
    db.add_intermediate(0, 0, 0.5)
    db.add_intermediate(0, 1, {"default": 0.7, "loss": 2})
    db.trial_finished(0, st.SUCCEEDED, {"default": 0.9, "acc": 0.9}, exit_code=0)
    (rec,) = db.trials()
    assert rec.status == st.SUCCEEDED and rec.value == 0.9
    assert rec.metric == {"default": 0.9, "acc": 0.9}
    assert rec.parameters == {"a": {"_name": "x", "b": 1}} and rec.raw["a[x].b"] == 1
    assert rec.intermediate == [0.5, 0.7]
    assert rec.duration is not None and rec.duration >= 0 and rec.attempts == 1
    assert rec.to_dict()["trialJobId"] == "trial_0000"


def test_requeue_puts_running_trials_back_and_rerun_starts_clean(db):
    for seq in range(3):
        db.add_trial(seq, f"t{seq}", {}, {})
    db.trial_started(0, None, None)
    db.add_intermediate(0, 0, 1.0)
    db.trial_started(1, None, None)
    db.trial_finished(1, st.FAILED, exit_code=1, error="boom")
    waiting = db.requeue_unfinished()
    assert [r.sequence for r in waiting] == [0, 2]
    db.trial_started(0, None, None)
    (rec,) = db.trials(sequences=[0])
    assert rec.attempts == 2 and rec.intermediate == [] and rec.status == st.RUNNING
    assert db.status_counts() == {"RUNNING": 1, "FAILED": 1, "WAITING": 1}
    assert db.count() == 3


def test_readonly_viewer_reads_while_writer_writes_and_cannot_write(db):
    db.add_trial(0, "t0", {}, {})
    with st.ExperimentStore(db.path, readonly=True) as viewer:
        assert viewer.count() == 1
        db.add_trial(1, "t1", {}, {})  # the writer goes on while a reader is open
        assert viewer.count() == 2
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            viewer.conn.execute("DELETE FROM trials")


def test_experiments_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv(st.ENV_EXPERIMENTS_DIR, str(tmp_path / "env"))
    assert st.default_experiments_dir() == tmp_path / "env"
    assert st.default_experiments_dir(tmp_path / "cfg") == tmp_path / "cfg"
    monkeypatch.delenv(st.ENV_EXPERIMENTS_DIR)
    assert st.default_experiments_dir().name == "torchslim-experiments"


def test_unknown_experiment_id_lists_known_ones(db, tmp_path):
    with pytest.raises(ConfigError, match=r"no experiment with id 'zz'.*known ids: e1"):
        st.experiment_path("zz", tmp_path)
    assert [info["id"] for _, info, _ in st.iter_experiments(tmp_path)] == ["e1"]


def test_effective_status_detects_a_dead_runner():
    assert st.effective_status({"status": "RUNNING", "pid": 2**22 + 12345, "host": None}) == "INTERRUPTED"
    assert st.effective_status({"status": "DONE", "pid": None}) == "DONE"
