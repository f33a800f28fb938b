"""Tuners: every built-in proposes valid points, learns (TPE beats random), resumes."""
from __future__ import annotations

import math
import sys

import pytest

import torchslim
from torchslim.errors import ConfigError, MissingDependencyError
from torchslim.experiment.tuners import TUNERS, NoMoreTrials, create_tuner

SPACE = {
    "x": torchslim.uniform(-3, 3),
    "lr": torchslim.loguniform(1e-4, 1),
    "k": torchslim.randint(0, 5),
    "opt": torchslim.choice({"_name": "sgd", "m": torchslim.uniform(0, 1)},
                            {"_name": "adam"}),
}


def objective(p):
    """Minimum 0 at x=1, lr=1e-2, k=2, adam."""
    v = (p["x"] - 1) ** 2 + (math.log10(p["lr"]) + 2) ** 2 + (p["k"] - 2) ** 2 / 4
    return v + (0 if p["opt"]["_name"] == "adam" else 0.5 + p["opt"]["m"])


def run(tuner, n, fn=objective):
    best = math.inf
    for seq in range(n):
        params, _ = tuner.generate(seq)
        value = fn(params)
        best = min(best, value)
        tuner.receive(seq, value)
    return best


@pytest.mark.parametrize("name", ["Random", "TPE", "Anneal", "Evolution"])
def test_tuner_proposes_valid_points_and_improves_on_its_start(name):
    tuner = create_tuner(name, SPACE, {"optimize_mode": "minimize", "seed": 0})
    first = run(tuner, 5)
    best = min(first, run(tuner, 35))
    assert best <= first
    for seq in range(100, 110):
        params, _ = tuner.generate(seq)
        assert -3 <= params["x"] <= 3 and 1e-4 <= params["lr"] <= 1 and params["k"] in range(5)
        assert params["opt"]["_name"] in ("sgd", "adam")


def test_tpe_beats_random_median_on_a_small_budget():
    def best_of(name, seed):
        return run(create_tuner(name, SPACE, {"optimize_mode": "minimize", "seed": seed}), 40)

    tpe = sorted(best_of("TPE", s) for s in range(3))[1]
    rnd = sorted(best_of("Random", s) for s in range(3))[1]
    assert tpe < rnd


def test_maximize_is_the_default_and_flips_the_loss():
    tuner = create_tuner("Anneal", {"x": torchslim.uniform(0, 1)}, {"seed": 1, "n_startup_jobs": 3})
    best = -run(tuner, 30, fn=lambda p: -p["x"])  # maximising x: best close to 1
    assert best > 0.8


def test_gridsearch_visits_every_point_once_then_stops():
    tuner = create_tuner("GridSearch", {"a": torchslim.choice(1, 2, 3),
                                        "b": torchslim.quniform(0, 1, 0.5)})
    seen = []
    with pytest.raises(NoMoreTrials, match="all 9 grid points"):
        for seq in range(20):
            seen.append(tuple(tuner.generate(seq)[0].values()))
    assert len(seen) == len(set(seen)) == 9


def test_gridsearch_resume_skips_observed_points():
    space = {"a": torchslim.choice(1, 2, 3)}
    first = create_tuner("GridSearch", space)
    _, raw = first.generate(0)
    again = create_tuner("GridSearch", space)
    again.observe(0, raw)
    assert [again.generate(s)[0]["a"] for s in (1, 2)] == [2, 3]


def test_tpe_learns_from_observed_history():
    tuner = create_tuner("TPE", SPACE, {"optimize_mode": "minimize", "seed": 0})
    history = []
    for seq in range(12):
        params, raw = tuner.generate(seq)
        history.append((seq, raw, objective(params)))
        tuner.receive(seq, objective(params))
    resumed = create_tuner("TPE", SPACE, {"optimize_mode": "minimize", "seed": 0})
    for seq, raw, value in history:
        resumed.observe(seq, raw)
        resumed.receive(seq, value)
    assert len(resumed.study.trials) == 12
    assert resumed.study.best_value == pytest.approx(min(v for _, _, v in history))


@pytest.mark.parametrize("name, args, message", [
    ("Bogus", {}, r"tuner.name is 'Bogus'; allowed: TPE, Random"),
    ("TPE", {"optimize_mode": "best"}, r"optimize_mode is 'best'; allowed: maximize, minimize"),
    ("Evolution", {"pop": 3}, r"unknown argument\(s\) \['pop'\].*allowed: optimize_mode, seed, "
                              r"population_size"),
])
def test_bad_tuner_config_is_named(name, args, message):
    with pytest.raises(ConfigError, match=message):
        create_tuner(name, SPACE, args)


def test_tuner_names_are_nni_names_case_insensitive():
    assert set(TUNERS) >= {"TPE", "Random", "Anneal", "Evolution", "GridSearch"}
    assert type(create_tuner("tpe", SPACE)).name == "TPE"


def test_missing_optuna_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(MissingDependencyError, match=r"TPE tuner.*pip install 'torchslim\[experiment\]'"):
        create_tuner("TPE", SPACE)


def test_nni_tuners_we_do_not_provide_say_so():
    with pytest.raises(ConfigError, match=r"tuner.name 'DNGO' is an NNI tuner torchslim does "
                                          r"not provide; allowed: TPE, Random, Anneal"):
        create_tuner("DNGO", SPACE)
