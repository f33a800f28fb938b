"""Candidates scored as Ray tasks: the dispatch (a stand-in ``ray`` module that pickles what a
real one would ship), and, with TORCHSLIM_TEST_RAY=1, a real local Ray (about 30 s)."""
from __future__ import annotations

import os
import sys
import types

import numpy as np
import pytest
import torch

from torchslim.auto import compress
from torchslim.auto.mnist import accuracy_on
from torchslim.auto.remote import RayScorer
from torchslim.errors import MissingDependencyError


class FakeRay(types.ModuleType):
    """What RayScorer uses of ``ray``; objects go through cloudpickle as to a worker."""

    def __init__(self) -> None:
        super().__init__("ray")
        self.pickle = pytest.importorskip("cloudpickle")  # what Ray ships objects with
        self.initialised = False
        self.init_args: dict = {}
        self.tasks: list[tuple] = []
        self.events: list[str] = []

    def is_initialized(self) -> bool:
        return self.initialised

    def init(self, **kwargs) -> None:
        self.initialised, self.init_args = True, kwargs

    def shutdown(self) -> None:
        self.initialised = False

    def put(self, value):
        return self.pickle.dumps(value)

    def get(self, ref):
        self.events.append("get")
        fn, value, s = ref
        return fn(self.pickle.loads(value), self.pickle.loads(s))

    def remote(self, **options):
        fake = self

        class Task:
            def __init__(self, fn, opts=None):
                self.fn, self.opts = fn, opts or {}

            def options(self, **opts):
                return Task(self.fn, opts)

            def remote(self, ref, s):  # a task runs when its result is asked for
                fake.tasks.append((self.opts, s))
                fake.events.append("submit")
                return fake.pickle.loads(fake.pickle.dumps(self.fn)), ref, fake.pickle.dumps(s)
        return lambda fn: Task(fn)


@pytest.fixture
def fake_ray(monkeypatch):
    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    return fake


def test_candidates_are_shipped_to_ray_tasks_and_score_as_locally(fake_ray, trained_lenet5, mnist_small):
    evaluate = accuracy_on(torch.utils.data.Subset(mnist_small[1], range(100)))
    example = torch.randn(1, 1, 28, 28)
    options = {"algorithm": "tuner", "algorithm_options": {"trials": 3}}
    remote = compress(trained_lenet5, example, evaluate, {"params": 2421}, ray=True, **options)
    assert not fake_ray.initialised  # the Ray it started is shut down
    assert fake_ray.init_args["address"] is None and "PYTHONPATH" in fake_ray.init_args["runtime_env"]["env_vars"]
    assert len(fake_ray.tasks) == len(remote.history) and fake_ray.tasks[0][0] == {"num_cpus": 1, "num_gpus": 0}
    local = compress(trained_lenet5, example, evaluate, {"params": 2421}, **options)
    assert [h["score"] for h in remote.history] == [h["score"] for h in local.history]
    assert [u["kept"] for u in remote.units] == [u["kept"] for u in local.units]


def test_a_cluster_ray_is_joined_and_left_running(fake_ray):
    fake_ray.initialised = True  # the user's ray.init(address=...) came first
    with RayScorer(lambda s: float(np.sum(s)), "10.0.0.1:6379") as scorer:
        assert scorer(np.array([0.25, 0.5])) == 0.75
    assert fake_ray.initialised and fake_ray.init_args == {}


def test_without_ray_the_message_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'torchslim\[ray\]'"):
        RayScorer(lambda s: 0.0)


@pytest.mark.skipif(os.environ.get("TORCHSLIM_TEST_RAY") != "1", reason="a real local Ray takes ~30 s: "
                    "set TORCHSLIM_TEST_RAY=1")
def test_real_local_ray(trained_lenet5, mnist_small, monkeypatch, tmp_path):
    pytest.importorskip("ray")
    # a local ray.init() otherwise turns on token auth for this process and saves a token in
    # ~/.ray, which later `ray start --head` clusters (tests/experiment/test_ray.py) pick up
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("HOME", str(tmp_path))
    evaluate = accuracy_on(torch.utils.data.Subset(mnist_small[1], range(100)))
    example = torch.randn(1, 1, 28, 28)
    options = {"algorithm": "tuner", "algorithm_options": {"trials": 2}}
    remote = compress(trained_lenet5, example, evaluate, {"params": 2421}, ray=True, **options)
    local = compress(trained_lenet5, example, evaluate, {"params": 2421}, **options)
    assert [h["score"] for h in remote.history] == [h["score"] for h in local.history]


def test_concurrent_candidates_are_submitted_together_and_recorded(fake_ray, tmp_path, trained_lenet5, mnist_small):
    from torchslim.auto.experiment import CompressExperiment
    from torchslim.experiment import store as st

    evaluate = accuracy_on(torch.utils.data.Subset(mnist_small[1], range(100)))
    exp = CompressExperiment.open({"concurrency": 3}, "batch", tmp_path)
    result = compress(trained_lenet5, torch.randn(1, 1, 28, 28), evaluate, {"params": 2421}, algorithm="tuner",
                      algorithm_options={"trials": 6, "concurrency": 3}, ray=True, experiment=exp)
    # uniform first (alone), then the tuner's proposals three at a time
    runs = "".join("s" if e == "submit" else "g" for e in fake_ray.events)
    assert runs.startswith("sg") and "sssggg" in runs, runs
    with st.ExperimentStore(exp.folder / st.DB_NAME, readonly=True) as store:
        trials = store.trials()
    assert len(trials) == len(result.history) == len(fake_ray.tasks)
    assert all(t.status == st.SUCCEEDED and t.attempts == 1 for t in trials)
