"""``torchslim compress --experiment``: SIGKILLed mid-search, resumed, every candidate scored once,
and the trials listed by the web UI's HTTP API."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from torchslim.cli.main import main
from torchslim.experiment import store as st
from torchslim.experiment.webui.server import make_server

ROOT = str(Path(__file__).resolve().parents[2])
ARGS = ["compress", "--model", "lenet5", "--params", "2421", "--quick", "--epochs", "1", "--finetune-epochs", "1",
        "--trials", "8", "--short-term-images", "100", "--no-progress"]


def _succeeded(db: Path) -> int:
    if not db.is_file():
        return 0
    try:
        with st.ExperimentStore(db, readonly=True) as store:
            return store.status_counts().get(st.SUCCEEDED, 0)
    except Exception:  # noqa: BLE001 - the database is being created
        return 0


def _kill_after(proc: subprocess.Popen, db: Path, trials: int, deadline_s: float = 240.0) -> None:
    """SIGKILL ``proc`` once ``trials`` candidates are stored (polling the store, no sleeps)."""
    give_up = time.monotonic() + deadline_s
    while _succeeded(db) < trials:
        assert time.monotonic() < give_up, "no trials were stored in time"
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"the run ended (rc {proc.returncode}) before it could be killed:\n{proc.stdout.read()}")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _get(server, path: str):
    with urllib.request.urlopen(server.url + path, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.mark.timeout(300)
def test_kill9_resume_and_web_ui(tmp_path, capsys):
    exps = tmp_path / "experiments"
    db = exps / "k1" / st.DB_NAME
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "torchslim.cli.main", *ARGS, "--experiment", "k1",
                             "--experiments-dir", str(exps)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _kill_after(proc, db, 3)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with st.ExperimentStore(db, readonly=True) as store:
        before = {t.sequence: t for t in store.trials()}
        assert st.effective_status(store.experiment(), db.parent) == "INTERRUPTED"
    done_before = {s for s, t in before.items() if t.status == st.SUCCEEDED}
    assert len(done_before) >= 3 and (db.parent / "dense.pt").is_file()

    # the web UI lists the interrupted experiment's trials
    server = make_server("127.0.0.1", 0, experiments_dir=exps, default_id="k1")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        summary = _get(server, "/api/experiments/k1")
        assert summary["status"] == "INTERRUPTED" and summary["total"] == len(before)
        assert [o["name"] for o in summary["config"]["objectives"]][:2] == ["accuracy", "params"]

        # resume: the same settings are read back from the store
        rc = main(["compress", "--resume", "k1", "--experiments-dir", str(exps), "--no-progress"])
        printed = capsys.readouterr().out
        assert rc == 0, printed
        assert "test accuracy (touched once)" in printed

        listed = _get(server, "/api/experiments/k1/trials")
        summary = _get(server, "/api/experiments/k1")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

    with st.ExperimentStore(db, readonly=True) as store:
        after = store.trials()
        info = store.experiment()
    assert info["status"] == "DONE" and "met" in info["message"]
    assert all(t.status == st.SUCCEEDED for t in after)
    # no candidate scored twice: those finished before the kill kept their single attempt, only
    # the one in flight at the kill was scored again (in its own row), and no two rows share a point
    assert all(t.attempts == 1 for t in after if t.sequence in done_before)
    assert sum(t.attempts for t in after) - len(after) <= 1
    assert len({tuple(t.raw["sparsity"]) for t in after}) == len(after)
    assert [t.parameters for t in after[:len(done_before)]] == [before[s].parameters for s in sorted(done_before)]
    # the web UI lists every trial, with the metrics the Pareto plot uses
    assert summary["status"] == "DONE" and summary["total"] == len(after)
    assert [t["trialJobId"] for t in listed] == [t.trial_id for t in after]
    assert all({"accuracy", "params", "macs"} <= set(t["value"]) for t in listed)
    assert (db.parent / "result" / "report.json").is_file()

    # --resume does not silently drop an option that would change the search
    with pytest.raises(SystemExit, match=r"--trials 9 \(stored: 8\)"):
        main(["compress", "--resume", "k1", "--trials", "9", "--experiments-dir", str(exps)])
    # once done, the same command only shows the stored result
    assert main([*ARGS, "--experiment", "k1", "--experiments-dir", str(exps)]) == 0
    assert "experiment k1 is done" in capsys.readouterr().out
    # a compress experiment is not resumed by the generic command: it points to the right one
    assert main(["experiment", "--experiments-dir", str(exps), "resume", "k1"]) == 1
    assert "torchslim compress --resume k1" in capsys.readouterr().err
