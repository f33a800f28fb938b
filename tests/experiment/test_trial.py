"""The trial API: light to import, works by hand, talks to the runner through a pipe."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from torchslim.experiment import trial

ROOT = str(Path(__file__).resolve().parents[2])


def _run(code: str, env_extra: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHSLIM_")}
    env["PYTHONPATH"] = ROOT
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60, **kw)


def test_trial_import_is_stdlib_only():
    code = ("import sys, torchslim; torchslim.get_next_parameter(); torchslim.report_final_result(1.0);"
            "heavy = [m for m in ('torch', 'numpy', 'optuna', 'yaml', 'rich', 'sqlite3', 'ray')"
            " if m in sys.modules]; print('HEAVY', heavy)")
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout


def test_standalone_run_uses_defaults_and_prints():
    out = _run("import torchslim as t; print(t.get_next_parameter(), t.get_parameters(), "
               "t.get_trial_id(), t.get_experiment_id()); t.report_intermediate_result(0.5); "
               "t.report_final_result({'default': 0.9, 'loss': 1})")
    assert out.returncode == 0, out.stderr
    assert "{} {} STANDALONE STANDALONE" in out.stdout
    assert "intermediate result: 0.5" in out.stdout
    assert "final result: {'default': 0.9, 'loss': 1}" in out.stdout


def test_parameters_from_environment_and_results_through_fd():
    r, w = os.pipe()
    env = {trial.ENV_PARAMETERS: json.dumps({"lr": 0.1}), trial.ENV_TRIAL_ID: "t7",
           trial.ENV_EXPERIMENT_ID: "e1", trial.ENV_METRICS_FD: str(w)}
    out = _run("import torchslim as t; p = t.get_next_parameter(); "
               "t.report_intermediate_result(p['lr']); t.report_final_result(p['lr'] * 2); "
               "print(t.get_trial_id(), t.get_experiment_id())", env, pass_fds=(w,))
    os.close(w)
    data = os.read(r, 65536).decode()
    os.close(r)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["t7", "e1"]
    messages = [json.loads(line) for line in data.splitlines()]
    assert [(m["type"], m["value"]) for m in messages] == [("intermediate", 0.1), ("final", 0.2)]


@pytest.mark.parametrize("bad", [None, "0.5", float("nan"), True, {"loss": "x"}, {"default": "x"}])
def test_bad_metric_is_rejected_with_a_clear_message(bad):
    with pytest.raises(ValueError, match="report_final_result\\(\\) must be a finite number"):
        trial.report_final_result(bad)


def test_context_runs_function_trials_in_process():
    got = []
    ctx = trial.TrialContext("e", "t1", 1, {"a": 1}, got.append)
    trial.run_in_context(ctx, lambda: trial.report_final_result(trial.get_next_parameter()["a"]))
    assert [(m["type"], m["value"]) for m in got] == [("final", 1)]
    assert trial.get_trial_id() == "STANDALONE"  # the context does not leak out
