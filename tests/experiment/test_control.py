"""Live control of a running experiment from the CLI: update, trial ls/kill, log, import,
delete; and a consistent store after ``kill -9`` of the manager during an update."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from torchslim.experiment import control
from torchslim.experiment import store as st

ROOT = str(Path(__file__).resolve().parents[2])


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.run([sys.executable, "-m", "torchslim.cli.main", "experiment", *args],
                          capture_output=True, text=True, env=env, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def statuses(exp_id: str) -> dict[str, str]:
    return {t["trialJobId"]: t["status"] for t in json.loads(cli("trial", "ls", exp_id, "--json").stdout)}


def write_config(tmp_path: Path, code_dir: Path, sleep: float, max_trials: int) -> Path:
    (tmp_path / "space.json").write_text(json.dumps({
        "x": {"_type": "uniform", "_value": [0, 1]},
        "sleep": {"_type": "choice", "_value": [sleep]}}))
    path = tmp_path / "config.yml"
    path.write_text(textwrap.dedent(f"""
        searchSpaceFile: space.json
        trialCommand: {sys.executable} trial.py
        trialCodeDirectory: {code_dir}
        trialConcurrency: 1
        maxTrialNumber: {max_trials}
        tuner: {{name: Random}}
    """))
    return path


def start(config: Path) -> str:
    out = cli("create", "--config", str(config)).stdout
    return out.split("experiment ", 1)[1].split()[0]


def test_kill_update_import_log_delete_on_a_running_experiment(exp_dir, code_dir, tmp_path, wait_for):
    exp_id = start(write_config(tmp_path, code_dir, sleep=60, max_trials=2))
    try:
        wait_for(lambda: statuses(exp_id).get("trial_0000") == "RUNNING", "the first trial")
        out = cli("update", exp_id, "--concurrency", "2").stdout
        assert "trial_concurrency 1 -> 2" in out
        wait_for(lambda: statuses(exp_id).get("trial_0001") == "RUNNING", "a second slot used")

        assert "killed (was RUNNING)" in cli("trial", "kill", exp_id, "trial_0000").stdout
        wait_for(lambda: statuses(exp_id)["trial_0000"] == "USER_CANCELED", "the kill")
        # the budget raised live: a third trial starts in the freed slot
        assert "max_trial_number 2 -> 3" in cli("update", exp_id, "--max-trials", "3").stdout
        wait_for(lambda: statuses(exp_id).get("trial_0002") == "RUNNING", "a third trial")

        bad = cli("update", exp_id, "--concurrency", "0", check=False)
        assert bad.returncode == 1 and "--concurrency is 0; allowed: an integer >= 1" in bad.stderr
        missing = cli("trial", "kill", exp_id, "trial_0042", check=False)
        assert missing.returncode == 1 and "no trial 'trial_0042'" in missing.stderr

        data = tmp_path / "import.json"
        data.write_text(json.dumps([{"parameter": {"x": 0.25, "sleep": 60}, "value": 0.25},
                                    {"parameter": {"x": 0.75, "sleep": 60}, "value": 0.75}]))
        assert "imported 2 trial(s)" in cli("import", exp_id, str(data)).stdout
        after = statuses(exp_id)
        assert after["trial_0003"] == after["trial_0004"] == "SUCCEEDED"
        bad_data = tmp_path / "bad.json"
        bad_data.write_text(json.dumps([{"parameter": {"x": 7, "sleep": 60}, "value": 1}]))
        refused = cli("import", exp_id, str(bad_data), check=False)
        assert refused.returncode == 1 and "[0].parameter.x is 7; allowed: a number in [0.0, 1.0]" in refused.stderr

        assert "running; stop it first" in cli("delete", exp_id, "--yes", check=False).stderr
        table = cli("trial", "ls", exp_id).stdout
        assert "USER_CANCELED" in table and "trial_0004" in table
    finally:
        cli("stop", exp_id, check=False)
    stderr = cli("log", exp_id, "0", "--stderr", check=False)
    assert stderr.returncode in (0, 1)  # a killed trial may have written nothing
    folder = exp_dir / exp_id
    assert cli("delete", exp_id, "--yes").returncode == 0 and not folder.exists()


def test_store_consistent_after_kill_9_during_update(exp_dir, code_dir, tmp_path, wait_for):
    exp_id = start(write_config(tmp_path, code_dir, sleep=0.3, max_trials=3))
    folder = exp_dir / exp_id
    with st.ExperimentStore(folder / st.DB_NAME) as store:
        pid = store.experiment()["pid"]
        wait_for(lambda: store.trials(statuses=(st.RUNNING,)), "a running trial")
        control.ensure_schema(store.conn)
        command_id = control.submit(store, "update", {"max_trial_number": 4})
        os.kill(pid, signal.SIGKILL)  # the manager dies while (or before) applying it
    wait_for(lambda: not st.pid_alive(pid), "the manager's death")
    conn = sqlite3.connect(folder / st.DB_NAME)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    status = conn.execute("SELECT status FROM control WHERE id = ?", (command_id,)).fetchone()[0]
    limit = json.loads(conn.execute("SELECT config FROM experiment").fetchone()[0])["max_trial_number"]
    conn.close()
    # applied and recorded together, or neither
    assert (status, limit) in (("DONE", 4), ("PENDING", 3), ("CLAIMED", 3))
    cli("resume", exp_id, "--foreground", "--progress", "plain")
    with st.ExperimentStore(folder / st.DB_NAME, readonly=True) as store:
        assert control.get(store, command_id).status == "DONE"
        assert store.experiment()["config"]["max_trial_number"] == 4
        assert store.status_counts() == {"SUCCEEDED": 4}


def test_create_foreground_with_web_prints_the_control_link(exp_dir, code_dir, tmp_path):
    config = write_config(tmp_path, code_dir, sleep=0, max_trials=2)
    out = cli("create", "--config", str(config), "--foreground", "--web", "--port", "0",
              "--progress", "plain").stdout
    assert "web UI at http://127.0.0.1:" in out and "?token=" in out and "DONE; best" in out
