"""The ray training service against a local Ray head started by the test."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import torchslim
from torchslim.experiment import Experiment
from torchslim.experiment import store as st

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'torchslim[ray]')")
ROOT = str(Path(__file__).resolve().parents[2])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    ray_cli = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    if not os.path.exists(ray_cli):
        pytest.skip("the `ray` command is not available")
    port = _free_port()
    temp = tmp_path_factory.mktemp("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = subprocess.run(
        [ray_cli, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={temp}"], capture_output=True, text=True, timeout=120, env=env)
    if start.returncode != 0:
        pytest.skip(f"could not start a local Ray head: {start.stderr[-500:]}")
    yield f"127.0.0.1:{port}"
    subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120, env=env)


def test_trials_run_as_ray_tasks(exp_dir, code_dir, ray_head):
    space = {"x": torchslim.uniform(0, 1), "steps": torchslim.choice(2),
             "fail": torchslim.choice(0, 0, 1)}
    exp = Experiment(space, f"{sys.executable} trial.py", trial_code_directory=code_dir,
                     tuner="Random", seed=2, max_trial_number=6, trial_concurrency=2,
                     training_service="ray", ray_address=ray_head)
    exp.run()
    trials = exp.trials()
    assert exp.status == "DONE" and len(trials) == 6
    for t in trials:
        if t.parameters["fail"]:
            assert t.status == st.FAILED and t.exit_code == 3
        else:
            assert t.status == st.SUCCEEDED and t.value == pytest.approx(t.parameters["x"])
            # intermediate results stream back from the task while it runs
            assert t.intermediate == pytest.approx([t.parameters["x"], 2 * t.parameters["x"]])
            assert "params" in Path(t.stdout_path).read_text()


def test_ray_trial_timeout(exp_dir, code_dir, ray_head):
    exp = Experiment({"x": torchslim.uniform(0, 1), "sleep": torchslim.choice(30)},
                     f"{sys.executable} trial.py", trial_code_directory=code_dir, tuner="Random",
                     max_trial_number=1, max_trial_duration=1, training_service="ray",
                     ray_address=ray_head)
    exp.run()
    (t,) = exp.trials()
    assert t.status == st.FAILED and "maxTrialDuration" in t.error
