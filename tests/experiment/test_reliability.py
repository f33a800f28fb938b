"""The manager never dies of a trial, no trial outlives its experiment, one manager per
experiment, seeded tuners do not repeat themselves after a resume."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import torchslim
from torchslim.errors import ConfigError
from torchslim.experiment import Experiment
from torchslim.experiment import store as st
from torchslim.experiment.lock import ManagerLock, manager_running
from torchslim.experiment.messages import MessageError, parse_message
from torchslim.experiment.procgroup import experiment_groups, terminate_groups
from torchslim.experiment.services import local
from torchslim.experiment.tuners import create_tuner

PYTHON = sys.executable
ROOT = str(Path(__file__).resolve().parents[2])

# every kind of line a broken (or hostile) trial may write on its metrics pipe
BAD_LINES = {
    "string final": b'{"type":"final","value":"abc"}',
    "list": b"[1, 2]",
    "default not a number": b'{"type":"final","value":{"default":"x"}}',
    "string intermediate": b'{"type":"intermediate","value":"s"}',
    "dict without default or numbers": b'{"type":"final","value":{"acc":"high"}}',
    "bool": b'{"type":"final","value":true}',
    "NaN": b'{"type":"final","value":NaN}',
    "inf in dict": b'{"type":"final","value":{"default":1,"x":Infinity}}',
    "no value": b'{"type":"final"}',
    "unknown type": b'{"type":"bogus","value":1}',
    "no type": b'{"value":1}',
    "not json": b"hello world",
    "bad utf8": b"\xff\xfe{",
    "null": b"null",
    "exit code string": b'{"type":"exit","code":"x"}',
    "deep nesting": b"[" * 100000 + b"]" * 100000,
    "huge line": b'{"type":"final","value":1,"pad":"' + b"x" * (1 << 20) + b'"}',
}


@pytest.mark.parametrize("line", list(BAD_LINES.values()), ids=list(BAD_LINES))
def test_parse_message_refuses_every_malformed_line(line):
    with pytest.raises(MessageError):
        parse_message(line)


def test_parse_message_accepts_the_trial_api_forms():
    assert parse_message(b'{"type":"final","value":0.5}') == ("final", 0.5, None)
    assert parse_message(b'{"type":"intermediate","value":{"default":1,"loss":2}}')[1] == {
        "default": 1, "loss": 2}
    assert parse_message(b'{"type":"exit","code":1,"error":"E"}') == ("exit", 1, "E")


WRITER = r"""
import json, os, sys, time
p = json.loads(os.environ["TORCHSLIM_TRIAL_PARAMETERS"])
lines = json.loads(sys.argv[1])
fd = int(os.environ["TORCHSLIM_METRICS_FD"])
line = lines[p["case"]]
os.write(fd, (line + "\n").encode("latin-1"))
if p["case"] != "ok":
    time.sleep(60)  # the manager must end it
"""


def test_malformed_lines_fail_only_their_trial(exp_dir, tmp_path):
    (tmp_path / "writer.py").write_text(WRITER)
    cases = {k: v.decode("latin-1") for k, v in BAD_LINES.items() if len(v) < 1000}
    cases["ok"] = '{"type":"final","value":1.5}'
    (tmp_path / "lines.json").write_text(json.dumps(cases))
    exp = Experiment({"case": torchslim.choice(*cases)},
                     f"{PYTHON} writer.py \"$(cat lines.json)\"", tuner="GridSearch",
                     trial_code_directory=tmp_path, trial_concurrency=4,
                     max_trial_duration=30)
    start = time.monotonic()
    exp.run()
    assert time.monotonic() - start < 20  # nobody waited for the 60 s sleeps or the timeout
    assert exp.status == "DONE"
    by_case = {t.parameters["case"]: t for t in exp.trials()}
    assert set(by_case) == set(cases)
    for case, t in by_case.items():
        if case == "ok":
            assert t.status == st.SUCCEEDED and t.value == 1.5
        else:
            assert t.status == st.FAILED, case
            assert t.error.startswith("invalid message from the trial"), (case, t.error)
    assert not experiment_groups(exp.id)


def test_a_trial_ignoring_sigterm_is_killed_within_grace(exp_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(local, "KILL_GRACE_S", 1.0)
    pidfile = tmp_path / "pid"
    (tmp_path / "stubborn.py").write_text(
        "import os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\ntime.sleep(120)\n")
    # '; true' keeps the shell around: it dies of SIGTERM, its child must not survive it
    exp = Experiment({"x": torchslim.uniform(0, 1)}, f"{PYTHON} stubborn.py; true",
                     tuner="Random", trial_code_directory=tmp_path, max_trial_number=1,
                     max_trial_duration=1.0)
    exp.run()
    (t,) = exp.trials()
    pid = int(pidfile.read_text())
    assert t.status == st.FAILED and "maxTrialDuration" in t.error
    killed_at = time.time()
    assert not _alive(pid)
    # dead no later than deadline + grace + 1 s
    assert killed_at - t.started <= 1.0 + 1.0 + 1.0 + 0.5


def test_stop_kills_a_trial_ignoring_sigterm_and_its_children(exp_dir, tmp_path, monkeypatch, wait_for):
    monkeypatch.setattr(local, "KILL_GRACE_S", 1.0)
    pidfile = tmp_path / "pids"
    (tmp_path / "stubborn.py").write_text(
        "import os, signal, subprocess, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(pidfile)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "time.sleep(120)\n")
    exp = Experiment({"x": torchslim.uniform(0, 1)}, f"{PYTHON} stubborn.py; true",
                     tuner="Random", trial_code_directory=tmp_path, max_trial_number=1)
    thread = threading.Thread(target=exp.run)
    thread.start()
    wait_for(lambda: pidfile.exists() and " " in pidfile.read_text(), "the trial's pid file", timeout=10)
    stopped = time.monotonic()
    exp.stop()
    thread.join(10)
    assert time.monotonic() - stopped <= 1.0 + 1.0
    assert exp.status == "STOPPED"
    assert not any(_alive(int(p)) for p in pidfile.read_text().split())


def test_a_background_child_left_by_a_finished_trial_is_ended(exp_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(local, "KILL_GRACE_S", 1.0)
    pidfile = tmp_path / "pid"
    cmd = (f"sleep 120 & echo $! > {pidfile}; {PYTHON} -c "
           "'import torchslim; torchslim.report_final_result(1)'")
    exp = Experiment({"x": torchslim.uniform(0, 1)}, cmd, tuner="Random",
                     trial_code_directory=tmp_path, max_trial_number=1).run()
    assert exp.trials()[0].status == st.SUCCEEDED
    assert not _alive(int(pidfile.read_text()))


def test_two_concurrent_resumes_run_one_manager(exp_dir, tmp_path):
    # long enough (>= 3 s) that the second manager starts while the first runs, even on a
    # loaded machine
    exp = Experiment({"x": torchslim.uniform(0, 1)}, "sleep 1.5; " + _ECHO_FINAL,
                     tuner="Random", seed=1, trial_code_directory=tmp_path,
                     max_trial_number=4, trial_concurrency=2)
    exp.create()
    procs = [_spawn_manager(exp.id, exp_dir, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], outs
    loser = next(err for p, (_, err) in zip(procs, outs) if p.returncode == 1)
    assert b"running in another process" in loser
    trials = exp.trials()
    assert [t.sequence for t in trials] == list(range(4))
    assert all(t.status == st.SUCCEEDED and t.attempts == 1 for t in trials)


def test_status_follows_the_lock_not_the_pid(exp_dir, tmp_path):
    exp = Experiment({"x": torchslim.uniform(0, 1)}, "true", trial_code_directory=tmp_path)
    exp.create()
    with st.ExperimentStore(exp.folder / st.DB_NAME) as store:
        store.update_experiment(status="RUNNING", pid=os.getpid())  # a live pid, no lock
    assert exp.status == "INTERRUPTED"
    with ManagerLock(exp.folder):
        assert manager_running(exp.folder) and exp.status == "RUNNING"
        with pytest.raises(ConfigError, match="running in another process"):
            exp.run()
    assert not manager_running(exp.folder)


def resumed_proposals(tuner: str, space: dict, args: dict, n: int = 5) -> tuple[list, list]:
    """Raw points of ``n`` trials with results, then of ``n`` more after a restore from them."""
    first = create_tuner(tuner, space, args)
    history = []
    for seq in range(n):
        params, raw = first.generate(seq)
        first.receive(seq, params["x"])
        history.append((seq, raw, params["x"], True))
    resumed = create_tuner(tuner, space, args)
    resumed.restore(history)
    return [h[1] for h in history], [resumed.generate(seq)[1] for seq in range(n, 2 * n)]


@pytest.mark.parametrize("tuner", ["Random", "TPE", "Anneal", "Evolution"])
def test_seeded_tuner_does_not_repeat_points_after_resume(tuner):
    space = {"x": torchslim.uniform(0, 1), "c": torchslim.choice("a", "b")}
    args = {"seed": 3} | ({"n_startup_jobs": 2} if tuner in ("TPE", "Anneal") else {})
    before, again = resumed_proposals(tuner, space, args)
    keys = {json.dumps(r, sort_keys=True) for r in before}
    assert not keys & {json.dumps(r, sort_keys=True) for r in again}
    # and determinism is kept: the same history gives the same continuation
    assert resumed_proposals(tuner, space, args)[1] == again


def test_a_small_space_is_used_up_before_any_repeat():
    tuner = create_tuner("Random", {"a": torchslim.choice(1, 2, 3), "b": torchslim.choice(0, 1)},
                         {"seed": 0})
    points = [json.dumps(tuner.generate(seq)[1], sort_keys=True) for seq in range(6)]
    assert len(set(points)) == 6
    tuner.generate(6)  # exhausted: a repeat is allowed now, not an error


def test_seeded_experiment_resumed_proposes_no_repeat(exp_dir):
    def trial(p):
        return p["x"]

    space = {"x": torchslim.uniform(0, 1)}
    exp = Experiment(space, trial_function=trial, tuner="Random", seed=0, max_trial_number=8)

    def stop_after_three(kind, runner, seq):
        if kind == "trial_end" and runner.counts["SUCCEEDED"] >= 3:
            runner.request_stop()

    exp.create()
    with st.ExperimentStore(exp.folder / st.DB_NAME) as store:
        from torchslim.experiment.experiment import make_service
        from torchslim.experiment.runner import Runner

        Runner(store, exp.id, exp.config, make_service(exp.config), stop_after_three).run()
    assert 3 <= len(exp.trials((st.SUCCEEDED,))) < 8
    resumed = Experiment.resume(exp.id, trial_function=trial)
    xs = [t.parameters["x"] for t in resumed.trials()]
    assert len(xs) == 8 and len(set(xs)) == 8


def test_elapsed_time_survives_a_crash(exp_dir, tmp_path, wait_for):
    exp = Experiment({"x": torchslim.uniform(0, 1)}, "sleep 0.3; " + _ECHO_FINAL,
                     tuner="Random", trial_code_directory=tmp_path, max_trial_number=50)
    exp.create()
    proc = _spawn_manager(exp.id, exp_dir)
    wait_for(lambda: len(exp.trials((st.SUCCEEDED,))) >= 6, "6 finished trials", timeout=30)
    proc.kill()
    proc.wait()
    with st.ExperimentStore(exp.folder / st.DB_NAME, readonly=True) as store:
        elapsed = store.experiment()["elapsed"]
    assert elapsed >= 1.0  # checkpointed while running, not only at a clean end
    terminate_groups(experiment_groups(exp.id), 1.0)  # what a resume would do first


def test_numpy_scalars_are_results_and_exports_are_valid_json(exp_dir):
    np = pytest.importorskip("numpy")

    def trial(p):
        torchslim.report_intermediate_result(np.float32(0.25))
        return {"default": np.float64(p["x"]), "n": np.int64(3)}

    exp = Experiment({"x": torchslim.uniform(0, 1)}, trial_function=trial, tuner="Random",
                     max_trial_number=2).run()
    assert all(t.status == st.SUCCEEDED and t.intermediate == [0.25] for t in exp.trials())
    with st.ExperimentStore(exp.folder / st.DB_NAME) as store:  # an old run stored a NaN
        store.trial_finished(0, st.SUCCEEDED, {"default": 1.0, "loss": float("nan")}, 0)
    from torchslim.experiment.export import export_trials

    text = export_trials(exp.trials(), "json")
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert data[0]["value"] == {"default": 1.0, "loss": None}


def test_status_into_a_closed_pipe_prints_no_traceback(exp_dir, tmp_path):
    exp = Experiment({"x": torchslim.uniform(0, 1)}, "true", trial_code_directory=tmp_path)
    exp.create()
    with st.ExperimentStore(exp.folder / st.DB_NAME) as store:  # more than a pipe buffer
        for seq in range(2000):
            store.add_trial(seq, f"trial_{seq:04d}", {"x": seq}, {"x": seq})
    cmd = (f"{PYTHON} -m torchslim.cli.main experiment status {exp.id} --json | head -c 1")
    result = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": ROOT})
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


# ---- fault injection -----------------------------------------------------------------

_ECHO_FINAL = ('echo "{\\"type\\":\\"final\\",\\"value\\":$TORCHSLIM_TRIAL_SEQUENCE}" '
               '> /proc/self/fd/$TORCHSLIM_METRICS_FD')


def test_kill_minus_9_at_random_points_loses_nothing(exp_dir, tmp_path):
    """≥ 20 kills of the manager at random moments, then a clean resume: the budget is exact,
    no sequence twice, nothing left RUNNING, no trial process left over."""
    rng = random.Random(12)
    budget, kills, experiments = 10, 0, []
    for _ in range(4):
        exp = Experiment({"x": torchslim.uniform(0, 1)}, "sleep 0.15; " + _ECHO_FINAL,
                         tuner="Random", seed=rng.randrange(100), trial_code_directory=tmp_path,
                         max_trial_number=budget, trial_concurrency=3)
        exp.create()
        experiments.append(exp)
        for _ in range(6):
            proc = _spawn_manager(exp.id, exp_dir)
            _wait_or_kill(proc, rng.uniform(0.0, 0.9))
            kills += 1
    assert kills >= 20
    for exp in experiments:
        _spawn_manager(exp.id, exp_dir).wait(60)
        trials = exp.trials()
        assert exp.status == "DONE"
        assert [t.sequence for t in trials] == list(range(budget))
        assert all(t.status == st.SUCCEEDED for t in trials)
        assert all(t.value == t.sequence for t in trials)  # each result is its own trial's
        assert not experiment_groups(exp.id)


# ---- helpers -------------------------------------------------------------------------

def _spawn_manager(exp_id, exp_dir, **kw):
    env = {**os.environ, "PYTHONPATH": ROOT, st.ENV_EXPERIMENTS_DIR: str(exp_dir)}
    kw.setdefault("stderr", subprocess.DEVNULL)
    return subprocess.Popen([PYTHON, "-m", "torchslim.experiment", exp_id], env=env,
                            stdout=subprocess.DEVNULL, **kw)


def _wait_or_kill(proc, delay):
    try:
        proc.wait(delay)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_a_lock_kept_by_a_dead_managers_forked_child_does_not_count(tmp_path):
    # between fork and exec a trial holds a copy of the manager's lock; if the manager is
    # killed right then, the lock outlives it for a moment: the holder's pid settles it
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = ManagerLock(tmp_path).acquire()
    try:
        assert manager_running(tmp_path)
        lock.path.write_text(f"{dead.pid}\n")  # the holder that wrote its pid is gone
        assert not manager_running(tmp_path)
    finally:
        lock.release()
