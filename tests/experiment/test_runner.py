"""Running trials locally: concurrency, failures, timeouts, early stop, stop, GPUs."""
from __future__ import annotations

import sys
import threading
import time

import pytest

import torchslim
from torchslim.experiment import Experiment
from torchslim.experiment import store as st

PYTHON = sys.executable


def make(code_dir, space, **kw):
    kw.setdefault("tuner", "Random")
    kw.setdefault("seed", 0)
    return Experiment(space, f"{PYTHON} trial.py", trial_code_directory=code_dir, **kw)


def test_trials_run_concurrently_and_record_everything(exp_dir, code_dir):
    space = {"x": torchslim.uniform(0, 1), "steps": torchslim.choice(2), "sleep": torchslim.choice(0.3)}
    start = time.monotonic()
    exp = make(code_dir, space, max_trial_number=4, trial_concurrency=4).run()
    wall = time.monotonic() - start
    trials = exp.trials()
    assert exp.status == "DONE" and len(trials) == 4
    assert wall < 0.3 * 4  # they overlapped
    for t in trials:
        assert t.status == st.SUCCEEDED and t.value == pytest.approx(t.parameters["x"])
        assert t.intermediate == pytest.approx([t.parameters["x"], 2 * t.parameters["x"]])
        assert "params" in open(t.stdout_path).read()
        assert t.started <= t.ended
    assert (exp_dir / exp.id / st.DB_NAME).is_file()


def test_a_failing_trial_is_recorded_and_the_experiment_goes_on(exp_dir, code_dir):
    space = {"x": torchslim.uniform(0, 1), "fail": torchslim.choice(0, 1)}
    exp = make(code_dir, space, max_trial_number=8, trial_concurrency=2).run()
    by_status = {t.status for t in exp.trials()}
    assert by_status == {st.SUCCEEDED, st.FAILED} and len(exp.trials()) == 8
    failed = exp.trials((st.FAILED,))[0]
    assert failed.exit_code == 3 and "exit code 3" in failed.error
    assert "failing on purpose" in open(failed.stderr_path).read()
    assert exp.best_trial().status == st.SUCCEEDED


def test_trial_timeout_kills_the_trial(exp_dir, code_dir):
    exp = make(code_dir, {"x": torchslim.uniform(0, 1), "sleep": torchslim.choice(30)},
               max_trial_number=1, max_trial_duration=0.5)
    start = time.monotonic()
    exp.run()
    assert time.monotonic() - start < 5
    (t,) = exp.trials()
    assert t.status == st.FAILED and "timed out after 0.5s (maxTrialDuration)" in t.error


def test_max_experiment_duration_ends_the_experiment(exp_dir, code_dir):
    exp = make(code_dir, {"x": torchslim.uniform(0, 1), "sleep": torchslim.choice(0.2)},
               max_trial_number=1000, max_experiment_duration=1)
    start = time.monotonic()
    exp.run()
    assert 1 <= time.monotonic() - start < 5
    info_trials = exp.trials()
    assert 2 <= len(info_trials) < 10
    assert all(t.status in (st.SUCCEEDED, st.WAITING) for t in info_trials)


def test_median_assessor_stops_bad_trials_early(exp_dir, code_dir):
    # two good trials first (GridSearch order), then bad slow ones that get stopped
    space = {"x": torchslim.choice(1.0, 2.0, 0.1, 0.05), "steps": torchslim.choice(6),
             "step_sleep": torchslim.choice(0.2)}
    exp = make(code_dir, space, tuner="GridSearch", assessor="Medianstop", max_trial_number=4)
    exp.run()
    statuses = [t.status for t in exp.trials()]
    assert statuses == [st.SUCCEEDED, st.SUCCEEDED, st.EARLY_STOPPED, st.EARLY_STOPPED]
    stopped = exp.trials((st.EARLY_STOPPED,))[0]
    assert 1 <= len(stopped.intermediate) < 6 and "Medianstop" in stopped.error


def test_gridsearch_ends_when_the_grid_is_exhausted(exp_dir, code_dir):
    exp = make(code_dir, {"x": torchslim.choice(0.1, 0.2, 0.3)}, tuner="GridSearch",
               max_trial_number=10, trial_concurrency=2).run()
    assert sorted(t.value for t in exp.trials()) == pytest.approx([0.1, 0.2, 0.3])


def test_function_trials(exp_dir):
    def trial(params):
        torchslim.report_intermediate_result(params["x"] / 2)
        if params["x"] > 0.8:
            raise RuntimeError("too big")
        return {"default": params["x"], "other": 1}

    exp = Experiment({"x": torchslim.uniform(0, 1)}, trial_function=trial, tuner="TPE", seed=1,
                     max_trial_number=12, trial_concurrency=3, optimize_mode="minimize").run()
    trials = exp.trials()
    assert len(trials) == 12
    for t in trials:
        if t.parameters["x"] > 0.8:
            assert t.status == st.FAILED and "RuntimeError: too big" in t.error
            assert "too big" in open(t.stderr_path).read()
        else:
            assert t.status == st.SUCCEEDED and t.metric["other"] == 1
    assert exp.best_trial().value == min(t.value for t in trials if t.value is not None)


def test_stop_from_another_thread_keeps_results_and_requeues_running(exp_dir, code_dir):
    exp = make(code_dir, {"x": torchslim.uniform(0, 1), "sleep": torchslim.choice(0.3)},
               max_trial_number=50, trial_concurrency=2)
    thread = threading.Thread(target=exp.run)
    thread.start()
    time.sleep(1.2)
    exp.stop()
    thread.join(10)
    assert not thread.is_alive() and exp.status == "STOPPED"
    statuses = [t.status for t in exp.trials()]
    assert statuses.count(st.SUCCEEDED) >= 2
    assert set(statuses) <= {st.SUCCEEDED, st.WAITING}


def test_each_concurrent_trial_gets_its_own_gpu(exp_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    (tmp_path / "gpu.py").write_text(
        "import os, time, torchslim\ntime.sleep(0.2)\n"
        "torchslim.report_final_result(int(os.environ['CUDA_VISIBLE_DEVICES']))\n")
    exp = Experiment({"x": torchslim.uniform(0, 1)}, f"{PYTHON} gpu.py", tuner="Random",
                     trial_code_directory=tmp_path, max_trial_number=4, trial_concurrency=4,
                     trial_gpu_number=1).run()
    trials = exp.trials()
    assert {t.value for t in trials} == {0, 1}
    # never two at once on the same GPU
    for a in trials:
        for b in trials:
            if a is not b and a.value == b.value:
                assert a.ended <= b.started or b.ended <= a.started


def test_rich_progress_view_renders(exp_dir, code_dir, capsys):
    make(code_dir, {"x": torchslim.uniform(0, 1)}, max_trial_number=3).run(progress="rich")
    out = capsys.readouterr().out
    assert "trial_0002" in out and "SUCCEEDED" in out and "trials 3/3" in out


def test_plain_progress_lines(exp_dir, code_dir, capsys):
    make(code_dir, {"x": torchslim.uniform(0, 1)}, max_trial_number=2).run(progress=True)
    out = capsys.readouterr().out  # not a terminal: plain lines
    assert "trial_0001 SUCCEEDED value=" in out and "finished (trials 2/2" in out
