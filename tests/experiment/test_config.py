"""Experiment YAML in NNI's v1 and v2 forms, and the Python-side checks."""
from __future__ import annotations

import json
import textwrap

import pytest

from torchslim.errors import ConfigError
from torchslim.experiment.config import ExperimentConfig, load_config, parse_duration

SPACE = {"lr": {"_type": "uniform", "_value": [0.1, 0.9]}}


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "search_space.json").write_text(json.dumps(SPACE))
    (tmp_path / "code").mkdir()
    return tmp_path


def write(folder, text, name="config.yml"):
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_v1_form_from_the_auto_compression_guide(folder):
    cfg = load_config(write(folder, """
        authorName: default
        experimentName: Auto_Compression
        trialConcurrency: 2
        maxExecDuration: 100h
        maxTrialNum: 500
        trainingServicePlatform: local
        useAnnotation: False
        searchSpacePath: search_space.json
        tuner:
          builtinTunerName: TPE
          classArgs:
            optimize_mode: maximize
        trial:
          command: bash run_prune.sh
          codeDir: code
          gpuNum: 1
    """))
    assert cfg.experiment_name == "Auto_Compression"
    assert (cfg.trial_concurrency, cfg.max_trial_number) == (2, 500)
    assert cfg.max_experiment_duration == 100 * 3600
    assert cfg.search_space == SPACE and cfg.tuner == "TPE" and cfg.optimize_mode == "maximize"
    assert cfg.trial_command == "bash run_prune.sh" and cfg.trial_gpu_number == 1
    assert cfg.trial_code_directory == str(folder / "code")  # relative to the YAML file
    assert cfg.training_service == "local"


def test_v2_form_with_assessor_and_inline_space(folder):
    cfg = load_config(write(folder, """
        experimentName: v2
        searchSpace:
          lr: {_type: loguniform, _value: [0.0001, 0.1]}
        trialCommand: python trial.py
        trialCodeDirectory: code
        trialConcurrency: 3
        maxTrialNumber: 10
        maxExperimentDuration: 30m
        maxTrialDuration: 45s
        experimentWorkingDirectory: exps
        tuner:
          name: Anneal
          classArgs: {optimize_mode: minimize}
        assessor:
          name: Medianstop
          classArgs: {start_step: 2}
        trainingService:
          platform: ray
          address: 127.0.0.1:6379
    """))
    assert cfg.search_space["lr"]["_type"] == "loguniform"
    assert (cfg.max_experiment_duration, cfg.max_trial_duration) == (1800, 45)
    assert cfg.tuner == "Anneal" and cfg.optimize_mode == "minimize"
    assert cfg.assessor == "Medianstop" and cfg.assessor_args == {"start_step": 2}
    assert (cfg.training_service, cfg.ray_address) == ("ray", "127.0.0.1:6379")
    assert cfg.experiments_dir == str(folder / "exps")


BASE_V2 = "searchSpaceFile: search_space.json\ntrialCommand: python t.py\n"


@pytest.mark.parametrize("extra, message", [
    ("trialConcurency: 2\n", r"unknown key 'trialConcurency' in .*allowed keys: experimentName, "
                             r"searchSpaceFile, searchSpace, trialCommand"),
    ("tuner: {name: TPE, clsArgs: {}}\n", r"unknown key 'clsArgs' in .*'tuner'; allowed keys: "
                                          r"name, classArgs"),
    ("trainingService: {platform: remote}\n", r"'remote' is not supported, use ray"),
    ("trainingService: {platform: local, machineList: []}\n", r"unknown key 'machineList'"),
    ("trainingService: {platform: moon}\n", r"platform is 'moon'; allowed: local, ray"),
    ("trialConcurrency: 0\n", r"trialConcurrency is 0; allowed: an integer >= 1"),
    ("maxTrialNumber: many\n", r"maxTrialNumber is 'many'"),
    ("maxExperimentDuration: 10 years\n", r"maxExperimentDuration is '10 years'; allowed: a "
                                          r"positive duration"),
    ("tuner: {name: Bogus}\n", r"tuner.name is 'Bogus'; allowed: TPE"),
    ("useAnnotation: true\n", r"useAnnotation: true is not supported"),
])
def test_bad_v2_keys_and_values_are_named(folder, extra, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(folder, BASE_V2 + extra))


def test_bad_v1_keys_are_named(folder):
    with pytest.raises(ConfigError, match=r"unknown key 'codeDirectory' in .*'trial'; allowed "
                                          r"keys: command, codeDir, gpuNum"):
        load_config(write(folder, "searchSpacePath: search_space.json\n"
                                  "trial: {command: x, codeDirectory: .}\n"))
    with pytest.raises(ConfigError, match=r"trainingServicePlatform 'pai' is not supported, use ray"):
        load_config(write(folder, "searchSpacePath: search_space.json\ntrial: {command: x}\n"
                                  "trainingServicePlatform: pai\n"))


def test_missing_files_and_bad_yaml(folder):
    with pytest.raises(ConfigError, match=r"cannot read search space file .*nope.json"):
        load_config(write(folder, "searchSpaceFile: nope.json\ntrialCommand: x\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(folder, "a: [1\n"))
    with pytest.raises(ConfigError, match="cannot read experiment config"):
        load_config(folder / "missing.yml")
    with pytest.raises(ConfigError, match="no search space; give searchSpaceFile or searchSpace"):
        load_config(write(folder, "trialCommand: x\n"))


def test_python_config_needs_exactly_one_trial_kind(folder):
    with pytest.raises(ConfigError, match="exactly one of trial_command"):
        ExperimentConfig(SPACE).validate()
    with pytest.raises(ConfigError, match="exactly one of trial_command"):
        ExperimentConfig(SPACE, trial_command="x", trial_function=print).validate()
    with pytest.raises(ConfigError, match="trialCodeDirectory .* is not a folder"):
        ExperimentConfig(SPACE, trial_command="x", trial_code_directory=str(folder / "no")).validate()


@pytest.mark.parametrize("text, seconds", [("100h", 360000), ("30m", 1800), ("45s", 45),
                                            ("1d", 86400), ("1.5h", 5400), (90, 90), ("12", 12)])
def test_durations(text, seconds):
    assert parse_duration(text, "k") == seconds
