"""kill -9 the experiment mid-run, resume it: nothing finished is lost, the count is exact."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torchslim
from torchslim.experiment import Experiment
from torchslim.experiment import store as st

PYTHON = sys.executable

ROOT = str(Path(__file__).resolve().parents[2])
MAX_TRIALS = 12


def _snapshot(folder):
    with st.ExperimentStore(folder / st.DB_NAME, readonly=True) as store:
        return store.trials()


def test_sigkill_then_resume_keeps_finished_trials_and_reaches_the_budget(exp_dir, code_dir, wait_for):
    exp = Experiment({"x": torchslim.uniform(0, 1), "sleep": torchslim.choice(0.25)},
                     f"{PYTHON} trial.py", trial_code_directory=code_dir, tuner="TPE",
                     max_trial_number=MAX_TRIALS, trial_concurrency=2)
    exp.create()
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.Popen([sys.executable, "-m", "torchslim.experiment", exp.id],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len([t for t in _snapshot(exp.folder) if t.status == st.SUCCEEDED]) >= 3, "3 finished trials")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {t.sequence: t for t in _snapshot(exp.folder) if t.status == st.SUCCEEDED}
    interrupted = [t for t in _snapshot(exp.folder) if t.status == st.RUNNING]
    assert len(before) >= 3 and len(before) < MAX_TRIALS
    assert Experiment.open(exp.id).status == "INTERRUPTED"

    resumed = Experiment.resume(exp.id)

    after = resumed.trials()
    assert resumed.status == "DONE"
    assert len(after) == MAX_TRIALS
    assert [t.sequence for t in after] == list(range(MAX_TRIALS))
    assert all(t.status == st.SUCCEEDED for t in after)
    for seq, old in before.items():  # every finished trial is still there, untouched
        assert (after[seq].value, after[seq].parameters, after[seq].ended) == (
            old.value, old.parameters, old.ended)
        assert after[seq].attempts == 1
    for old in interrupted:  # re-run with the same parameters, not counted twice
        assert after[old.sequence].parameters == old.parameters
        assert after[old.sequence].attempts == 2
