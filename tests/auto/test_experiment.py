"""A compress search as an experiment: every candidate a trial, resumed without re-evaluating."""
import json
import math

import pytest

from torchslim.auto import compress
from torchslim.auto.experiment import CompressExperiment
from torchslim.auto.mnist import accuracy_on
from torchslim.errors import ConfigError
from torchslim.experiment import store as st

TARGET = {"params": 2421}
SETTINGS = {"model": "lenet5", "params": 2421, "algorithm": "tuner", "trials": 6}


class Crash(KeyboardInterrupt):
    """Stands for the process dying in the middle of a candidate (not an Exception: a trial
    failure would be recorded; this leaves the trial RUNNING, as kill -9 does)."""


def _counting(evaluate, crash_at=None):
    calls = []

    def fn(model):
        calls.append(1)
        if crash_at is not None and len(calls) == crash_at:
            raise Crash()
        return evaluate(model)
    return fn, calls


def _run(model, data, exp, evaluate_fn):
    return compress(model, data, evaluate_fn, TARGET, algorithm="tuner",
                    algorithm_options={"trials": 6}, experiment=exp, seed=0)


def _trials(folder):
    with st.ExperimentStore(folder / st.DB_NAME, readonly=True) as store:
        return store.trials(), store.experiment()


def test_resumed_search_reads_stored_candidates_and_ends_as_uninterrupted(tmp_path, trained_lenet5, mnist_small):
    import torch

    example = torch.randn(1, 1, 28, 28)
    evaluate = accuracy_on(torch.utils.data.Subset(mnist_small[1], range(200)))

    # uninterrupted reference
    ref = CompressExperiment.open(SETTINGS, "ref", tmp_path)
    fn, ref_calls = _counting(evaluate)
    ref_result = _run(trained_lenet5, example, ref, fn)
    ref_trials, info = _trials(ref.folder)
    assert info["status"] == "DONE" and info["message"] == ref_result.headline()
    assert all(t.status == st.SUCCEEDED and t.attempts == 1 for t in ref_trials)
    assert set(ref_trials[0].parameters) == {"conv1", "conv2", "fc1", "fc2"}
    metric = ref_trials[0].metric
    assert {"accuracy", "params", "macs"} <= set(metric) and metric["default"] == metric["accuracy"]
    assert [o["name"] for o in info["config"]["objectives"]] == ["accuracy", "params", "macs"]
    assert info["config"]["tuner"] == "TPE" and set(info["config"]["search_space"]) == set(ref_trials[0].parameters)
    assert (ref.folder / "result" / "report.json").is_file()

    # a run that dies while scoring its 4th candidate ...
    exp = CompressExperiment.open(SETTINGS, "crashy", tmp_path)
    fn, _ = _counting(evaluate, crash_at=4)
    with pytest.raises(Crash):
        _run(trained_lenet5, example, exp, fn)
    trials, info = _trials(exp.folder)
    assert info["status"] == "STOPPED" and [t.status for t in trials] == [st.SUCCEEDED] * 3 + [st.WAITING]

    # ... resumed: the stored three are read back, the 4th is scored again in its own row
    again = CompressExperiment.open(SETTINGS, "crashy", tmp_path)
    fn, calls = _counting(evaluate)
    result = _run(trained_lenet5, example, again, fn)
    trials, info = _trials(again.folder)
    assert again.reused >= 3 and again.evaluated == len(ref_trials) - 3
    assert [t.attempts for t in trials] == [1, 1, 1, 2] + [1] * (len(trials) - 4)
    assert info["status"] == "DONE" and all(t.status == st.SUCCEEDED for t in trials)
    # the same search as without the crash: same candidates, same scores, same result
    assert [t.parameters for t in trials] == [t.parameters for t in ref_trials]
    assert [t.value for t in trials] == [t.value for t in ref_trials]
    assert [u["kept"] for u in result.units] == [u["kept"] for u in ref_result.units]
    assert len(calls) == len(ref_calls) - 3


def test_failed_candidate_is_a_failed_trial_and_the_search_goes_on(tmp_path, trained_lenet5, mnist_small):
    import torch

    evaluate = accuracy_on(torch.utils.data.Subset(mnist_small[1], range(100)))
    calls = []

    def flaky(model):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("out of memory (simulated)")
        return evaluate(model)

    exp = CompressExperiment.open(SETTINGS, None, tmp_path)
    result = compress(trained_lenet5, torch.randn(1, 1, 28, 28), flaky, TARGET, algorithm="tuner",
                      algorithm_options={"trials": 3}, experiment=exp)
    trials, info = _trials(exp.folder)
    assert [t.status for t in trials].count(st.FAILED) == 1
    failed = next(t for t in trials if t.status == st.FAILED)
    assert "out of memory" in failed.error and failed.value is None
    assert info["status"] == "DONE" and result.met
    assert any(h["score"] == -math.inf for h in result.history)


def test_other_settings_are_refused_and_ids_checked(tmp_path):
    CompressExperiment.open(SETTINGS, "mine", tmp_path)
    with pytest.raises(ConfigError, match="other settings.*trials: 6 now 7"):
        CompressExperiment.open({**SETTINGS, "trials": 7}, "mine", tmp_path)
    with pytest.raises(ConfigError, match="letters, digits"):
        CompressExperiment.open(SETTINGS, "a/b", tmp_path)
    assert CompressExperiment.stored_settings("mine", tmp_path) == json.loads(json.dumps(SETTINGS))
    with pytest.raises(ConfigError, match="no experiment with id 'nope'"):
        CompressExperiment.stored_settings("nope", tmp_path)
