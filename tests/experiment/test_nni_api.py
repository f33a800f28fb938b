"""NNI's Python experiment API: Experiment('local'), experiment.config.*, run/start/stop,
export_data, get_status, connect, view; the trial-side ids."""
from __future__ import annotations

import json
import sys
import textwrap
import urllib.request

import pytest

from torchslim.errors import ConfigError
from torchslim.experiment import Experiment
from torchslim.experiment.nni_api import NNIExperiment, TrialResult

PYTHON = sys.executable


@pytest.fixture
def trial_dir(tmp_path):
    (tmp_path / "trial.py").write_text(textwrap.dedent("""
        import time
        import torchslim as nni  # what `torchslim migrate` makes of `import nni`
        params = nni.get_next_parameter()
        time.sleep(params.get("sleep", 0))
        print(nni.get_experiment_id(), nni.get_trial_id(), nni.get_sequence_id())
        nni.report_intermediate_result(params["lr"])
        nni.report_final_result({"default": params["lr"] * 10, "seq": nni.get_sequence_id()})
    """))
    return tmp_path


def _nni_block(trial_dir, n=4, sleep=0.0):
    # the NNI quickstart's block, as users write it
    search_space = {"lr": {"_type": "loguniform", "_value": [0.0001, 0.1]},
                    "sleep": {"_type": "choice", "_value": [sleep]}}
    experiment = Experiment("local")
    experiment.config.experiment_name = "nni api"
    experiment.config.trial_command = f"{PYTHON} trial.py"
    experiment.config.trial_code_directory = trial_dir
    experiment.config.search_space = search_space
    experiment.config.tuner.name = "TPE"
    experiment.config.tuner.class_args["optimize_mode"] = "maximize"
    experiment.config.max_trial_number = n
    experiment.config.trial_concurrency = 2
    experiment.config.max_experiment_duration = "5m"
    experiment.config.training_service.use_active_gpu = False
    return experiment


def test_the_nni_quickstart_block_runs(exp_dir, trial_dir):
    experiment = _nni_block(trial_dir)
    assert isinstance(experiment, NNIExperiment)
    assert experiment.run(0) is True  # port 0: any free port (8080 in NNI's docs)
    assert experiment.get_status() == "DONE"
    data = experiment.export_data()
    assert len(data) == 4 and all(isinstance(r, TrialResult) for r in data)
    assert {r.trialJobId for r in data} == {f"trial_{i:04d}" for i in range(4)}
    for r in data:  # the trial saw its own ids
        assert r.value["seq"] == int(r.trialJobId[-4:])
        assert r.value["default"] == pytest.approx(r.parameter["lr"] * 10)
    stdout = (exp_dir / experiment.id / "trials" / "trial_0002" / "stdout").read_text().split()
    assert stdout == [experiment.id, "trial_0002", "2"]
    assert experiment.get_job_statistics() == [{"trialJobStatus": "SUCCEEDED", "trialJobNumber": 4}]
    assert experiment.get_experiment_profile()["maxSequenceId"] == 3


def test_start_serves_the_ui_and_stop_stops(exp_dir, trial_dir):
    experiment = _nni_block(trial_dir, n=50, sleep=0.5)
    experiment.start(0)
    try:
        assert experiment.get_status() == "RUNNING"
        url = f"http://127.0.0.1:{experiment.port}/api/experiments/{experiment.id}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert json.load(resp)["status"] == "RUNNING"
        same = Experiment.connect(experiment.port)  # NNI's connect(port)
        assert same.id == experiment.id and same.get_status() == "RUNNING"
        assert Experiment.connect(experiment.id).get_status() == "RUNNING"
    finally:
        experiment.stop()
    assert experiment.get_status() == "STOPPED"
    viewer = Experiment.view(experiment.id, port=0, non_blocking=True)
    try:
        url = f"http://127.0.0.1:{viewer.port}/api/experiments/{experiment.id}/trials"
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert isinstance(json.load(resp), list)
    finally:
        viewer.stop()


def test_a_python_function_trial_through_the_nni_form(exp_dir):
    experiment = Experiment("local")
    experiment.config.search_space = {"x": {"_type": "uniform", "_value": [0, 1]}}
    experiment.config.trial_function = lambda p: p["x"]
    experiment.config.tuner.name = "Random"
    experiment.config.max_trial_number = 3
    assert experiment.run(port=None) is True
    assert len(experiment.export_data()) == 3


@pytest.mark.parametrize("setup, words", [
    (lambda e: setattr(e.config, "max_trial_numbr", 3), ["max_trial_numbr", "max_trial_number"]),
    (lambda e: setattr(e.config.tuner, "nmae", "TPE"), ["nmae", "name"]),
    (lambda e: setattr(e.config, "use_annotation", True), ["useAnnotation"]),
    (lambda e: setattr(e.config.advisor if False else e.config, "advisor", {"name": "BOHB"}),
     ["advisor"]),
    (lambda e: setattr(e.config, "trial_gpu_number", 64), ["trialGpuNumber", "64"]),
])
def test_config_mistakes_are_named(exp_dir, trial_dir, setup, words):
    experiment = _nni_block(trial_dir)
    with pytest.raises(ConfigError) as info:
        setup(experiment)
        experiment.run(0)
    for word in words:
        assert word in str(info.value)


def test_unsupported_platforms_are_refused():
    with pytest.raises(ConfigError, match="remote"):
        Experiment("remote")
    with pytest.raises(ConfigError, match="hybrid"):
        Experiment(["local", "remote"])


# ---- GPUs (detection injected through TORCHSLIM_GPUS: no GPU needed) ----------------------

GPU_TRIAL = ("import os, time, torchslim\ntime.sleep(0.3)\n"
             "torchslim.report_final_result({'default': 1, 'gpus': os.environ['CUDA_VISIBLE_DEVICES']})\n")


def _gpu_experiment(tmp_path, **service):
    (tmp_path / "gpu.py").write_text(GPU_TRIAL)
    experiment = Experiment("local")
    experiment.config.trial_command = f"{PYTHON} gpu.py"
    experiment.config.trial_code_directory = tmp_path
    experiment.config.search_space = {"x": {"_type": "uniform", "_value": [0, 1]}}
    experiment.config.tuner.name = "Random"
    experiment.config.max_trial_number = 6
    experiment.config.trial_concurrency = 4
    experiment.config.trial_gpu_number = 1
    for key, value in service.items():
        setattr(experiment.config.training_service, key, value)
    return experiment


def _gpu_runs(experiment):
    with experiment._store() as store:
        trials = store.trials()
    return [(t.metric["gpus"], t.started, t.ended) for t in trials]


def test_gpus_round_robin_with_a_per_gpu_limit(exp_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHSLIM_GPUS", "0,1")
    experiment = _gpu_experiment(tmp_path, max_trial_number_per_gpu=2)
    assert experiment.run(None) is True
    runs = _gpu_runs(experiment)
    assert {g for g, _, _ in runs} == {"0", "1"}
    for gpu in ("0", "1"):  # never more than 2 trials at once on one GPU
        spans = [(s, e) for g, s, e in runs if g == gpu]
        for s, _ in spans:
            assert sum(a <= s < b for a, b in spans) <= 2


def test_a_gpu_busy_with_another_process_is_skipped_unless_allowed(exp_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHSLIM_GPUS", "0*,1")
    experiment = _gpu_experiment(tmp_path)
    assert experiment.run(None) is True
    assert {g for g, _, _ in _gpu_runs(experiment)} == {"1"}
    monkeypatch.setenv("TORCHSLIM_GPUS", "0*,1")
    other = _gpu_experiment(tmp_path, use_active_gpu=True)
    assert other.run(None) is True
    assert {g for g, _, _ in _gpu_runs(other)} == {"0", "1"}


@pytest.mark.parametrize("gpus", ["", "0"])
def test_a_gpu_request_the_machine_cannot_meet_is_refused_at_create(exp_dir, tmp_path,
                                                                    monkeypatch, gpus):
    monkeypatch.setenv("TORCHSLIM_GPUS", gpus)
    experiment = _gpu_experiment(tmp_path)
    experiment.config.trial_gpu_number = 2
    with pytest.raises(ConfigError, match="trialGpuNumber is 2 but this machine offers"):
        experiment.run(None)
    assert not list(exp_dir.glob("*/experiment.db")) if exp_dir.exists() else True


def test_use_annotation_is_refused_with_the_reason(tmp_path):
    from torchslim.experiment.config import config_from_mapping

    with pytest.raises(ConfigError, match="useAnnotation: true is not supported"):
        config_from_mapping({"useAnnotation": True, "trialCommand": "true",
                             "searchSpace": {"x": {"_type": "choice", "_value": [1]}}}, tmp_path)


def test_cli_create_with_gpunum_on_a_machine_without_gpus_fails_clearly(exp_dir, tmp_path,
                                                                         monkeypatch, capsys):
    from torchslim.cli.main import main

    monkeypatch.setenv("TORCHSLIM_GPUS", "")
    (tmp_path / "space.json").write_text('{"x": {"_type": "uniform", "_value": [0, 1]}}')
    (tmp_path / "config.yml").write_text(
        "authorName: a\nexperimentName: g\ntrialConcurrency: 1\nmaxTrialNum: 2\n"
        "searchSpacePath: space.json\ntrainingServicePlatform: local\n"
        "tuner:\n  builtinTunerName: Random\n"
        "trial:\n  command: python trial.py\n  codeDir: .\n  gpuNum: 1\n")
    assert main(["experiment", "create", "--config", str(tmp_path / "config.yml")]) == 1
    assert "trialGpuNumber is 1 but this machine offers no GPU" in capsys.readouterr().err
