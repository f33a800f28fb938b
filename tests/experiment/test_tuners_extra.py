"""The tuners beyond TPE/Random (GP, CMAES, Metis, SMAC, Hyperband, BOHB, PBT, Batch, NSGA2,
MOTPE), the Curvefitting assessor, and users' own NNI-shaped tuner/assessor classes."""
from __future__ import annotations

import json
import textwrap

import pytest

from torchslim.errors import ConfigError
from torchslim.experiment import Experiment, pareto_front
from torchslim.experiment.config import load_config
from torchslim.experiment.curvefitting import CurvefittingAssessor, predict_final
from torchslim.experiment.tuners import NoMoreTrials, create_tuner

SPACE = {"x": {"_type": "uniform", "_value": [-5, 5]}, "y": {"_type": "uniform", "_value": [-5, 5]},
         "c": {"_type": "choice", "_value": [0, 1, 2]}}


def bowl(p):
    return (p["x"] - 1) ** 2 + (p["y"] + 2) ** 2 + p["c"]


def drive(tuner, n, fn=bowl):
    best = float("inf")
    for seq in range(n):
        params, _ = tuner.generate(seq)
        value = fn(params)
        tuner.receive(seq, value)
        best = min(best, value)
    return best


@pytest.mark.parametrize("name,args,n,bound", [
    # GP fits are slow-ish on CPU: few trials here (benchmarks/tuners.py measures quality)
    ("GP", {"cold_start_num": 4}, 8, 6.0), ("Metis", {"cold_start_num": 4}, 8, 6.0),
    ("CMAES", {}, 20, 3.0), ("SMAC", {"n_startup_jobs": 5, "n_candidates": 60, "n_trees": 10}, 20, 3.0),
])
def test_model_based_tuners_beat_the_start(name, args, n, bound):
    tuner = create_tuner(name, SPACE, {"optimize_mode": "minimize", "seed": 0, **args})
    # on a 3-d bowl (minimum 0) a typical random point scores ~17
    assert drive(tuner, n) < bound


def test_unknown_class_args_name_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"unknown argument\(s\) \['kappa'\] for GPTuner; "
                                          r"allowed: optimize_mode, seed, cold_start_num"):
        create_tuner("GP", SPACE, {"kappa": 5})
    with pytest.raises(ConfigError, match="eta is 1; allowed: a number > 1"):
        create_tuner("Hyperband", SPACE, {"eta": 1})
    with pytest.raises(ConfigError, match="tuner NSGA2 is multi-objective"):
        create_tuner("NSGA2", SPACE, {})


def test_hyperband_hands_out_budgets_and_promotes_the_best():
    tuner = create_tuner("Hyperband", SPACE, {"R": 9, "eta": 3, "optimize_mode": "minimize",
                                              "seed": 1})
    budgets, seen = [], {}
    for seq in range(13):  # bracket s=2: 9 configs at 1, 3 at 3, 1 at 9
        params, _ = tuner.generate(seq)
        budgets.append(params["TRIAL_BUDGET"])
        key = (params["x"], params["y"], params["c"])
        value = bowl(params) / params["TRIAL_BUDGET"]
        seen.setdefault(key, []).append(value)
        tuner.receive(seq, value)
    assert budgets == [1] * 9 + [3] * 3 + [9]
    promoted = [k for k, v in seen.items() if len(v) == 3]
    rung0 = sorted((v[0], k) for k, v in seen.items())
    assert promoted == [rung0[0][1]]  # the single config run at R=9 was the best at budget 1
    assert tuner.compute == 9 + 9 + 9


def test_hyperband_waits_while_a_rung_has_results_pending():
    tuner = create_tuner("Hyperband", SPACE, {"R": 3, "eta": 3, "seed": 0})
    issued = [tuner.generate(seq) for seq in range(3)]  # bracket s=1 rung 0 (3 configs)
    assert all(p["TRIAL_BUDGET"] == 1 for p, _ in issued)
    # the second bracket (s=0: 2 configs at 3) opens while the first waits
    assert tuner.generate(3)[0]["TRIAL_BUDGET"] == 3 and tuner.generate(4) is not None
    assert tuner.generate(5) is None  # both brackets wait for results


def test_bohb_uses_its_model_after_enough_results():
    tuner = create_tuner("BOHB", SPACE, {"R": 9, "eta": 3, "optimize_mode": "minimize", "seed": 0,
                                         "min_points_in_model": 4, "random_fraction": 0.0})
    best = drive(tuner, 40, fn=lambda p: bowl(p) + 3.0 / p["TRIAL_BUDGET"])
    assert tuner.counts and max(tuner.counts.values()) >= 4 and best < 3.0


def test_bohb_draws_first_rung_configurations_as_they_are_issued():
    tuner = create_tuner("BOHB", SPACE, {"R": 9, "eta": 3, "seed": 0})
    tuner.generate(0)
    rung = tuner.brackets[0].rung
    # the other eight are drawn later, from a model that has seen the results before them
    assert rung.configs[0] is not None and rung.configs[1:] == [None] * 8


def test_hyperband_family_does_not_restart_a_configuration_of_a_finite_space():
    space = {"a": {"_type": "choice", "_value": [0, 1, 2, 3]}, "b": {"_type": "choice", "_value": [0, 1, 2, 3]},
             "c": {"_type": "choice", "_value": [0, 1, 2, 3]}}
    for name in ("Hyperband", "BOHB"):
        tuner = create_tuner(name, space, {"R": 9, "eta": 3, "optimize_mode": "minimize", "seed": 0,
                                           "min_points_in_model": 3, "random_fraction": 0.0}
                             if name == "BOHB" else {"R": 9, "eta": 3, "optimize_mode": "minimize", "seed": 0})
        for seq in range(60):  # 64 points: enough to start every bracket with a new one
            params, _ = tuner.generate(seq)
            tuner.receive(seq, params["a"] + params["b"] + params["c"] + 1.0 / params["TRIAL_BUDGET"])
        starts = [json.dumps(c, sort_keys=True) for b in tuner.brackets for c in b.rungs[0].configs if c]
        assert len(starts) > 30 and len(set(starts)) == len(starts), name


def test_bohb_takes_nni_names_and_checks_them():
    tuner = create_tuner("BOHB", SPACE, {"max_budget": 27, "min_budget": 3, "eta": 3, "top_n_percent": 30})
    assert tuner.R == 27 and tuner.s_max == 2
    assert tuner._n_good(20) == 6 and tuner._n_good(3) == 1  # 30 %, at least two left for the rest
    with pytest.raises(ConfigError, match="top_n_percent is 100; allowed: a number between 0 and 100"):
        create_tuner("BOHB", SPACE, {"top_n_percent": 100})


def test_batch_runs_each_configuration_once():
    space = {"combine_params": {"_type": "choice", "_value": [{"lr": 0.1, "bs": 8}, {"lr": 0.01, "bs": 16}]}}
    tuner = create_tuner("Batch", space, {})
    assert tuner.generate(0)[0] == {"lr": 0.1, "bs": 8}
    assert tuner.generate(1)[0] == {"lr": 0.01, "bs": 16}
    with pytest.raises(NoMoreTrials):
        tuner.generate(2)
    with pytest.raises(ConfigError, match="the Batch tuner needs the search space"):
        create_tuner("Batch", SPACE, {})


def test_multi_objective_experiment_reports_a_pareto_front(exp_dir):
    def trial(p):
        return {"accuracy": 1 - (p["x"] - 0.7) ** 2, "latency": 1 + 3 * p["x"]}

    exp = Experiment({"x": {"_type": "uniform", "_value": [0, 1]}}, trial_function=trial,
                     tuner="NSGA2", tuner_args={"population_size": 4, "seed": 0},
                     objectives=[{"name": "accuracy", "direction": "maximize"},
                                 {"name": "latency", "direction": "minimize"}],
                     max_trial_number=12, trial_concurrency=2)
    exp.run()
    rows = exp.export_data()
    assert len(rows) == 12 and all(r["status"] == "SUCCEEDED" for r in rows)
    front = exp.pareto_front()
    points = {r["trialJobId"]: (r["value"]["accuracy"], r["value"]["latency"]) for r in rows}
    dominated = {a for a, (acc, lat) in points.items() for b, (acc2, lat2) in points.items()
                 if acc2 >= acc and lat2 <= lat and (acc2, lat2) != (acc, lat)}
    assert {t.trial_id for t in front} == set(points) - dominated
    assert {r["trialJobId"] for r in rows if r["paretoOptimal"]} == {t.trial_id for t in front}
    assert rows[0]["value"]["default"] == rows[0]["value"]["accuracy"]  # first objective
    assert pareto_front([(1, 5), (2, 4), (3, 6), (1, 4)], ["maximize", "minimize"]) == [1, 2]


def test_motpe_learns_from_objective_vectors():
    objectives = [{"name": "a", "direction": "minimize"}, {"name": "b", "direction": "minimize"}]
    tuner = create_tuner("MOTPE", {"x": {"_type": "uniform", "_value": [0, 1]}},
                         {"seed": 0, "n_startup_jobs": 3}, objectives=objectives)
    for seq in range(6):
        params, _ = tuner.generate(seq)
        tuner.receive(seq, [params["x"], 1 - params["x"]])
    assert len(tuner.study.best_trials) >= 1


def test_pbt_trials_resume_from_checkpoints(exp_dir):
    from torchslim.experiment.trial import get_next_parameter, load_checkpoint, save_checkpoint

    def trial(p):
        state = load_checkpoint() or {"steps": 0, "score": 0.0}
        state = {"steps": state["steps"] + 1, "score": state["score"] + p["lr"]}
        save_checkpoint(state)
        assert get_next_parameter()["save_checkpoint_dir"]
        return state["score"]

    exp = Experiment({"lr": {"_type": "uniform", "_value": [0.0, 1.0]}}, trial_function=trial,
                     tuner="PBT", tuner_args={"population_size": 4, "seed": 0, "fraction": 0.25},
                     max_trial_number=12, trial_concurrency=2)
    exp.run()
    trials = exp.trials()
    assert [("load_checkpoint_dir" in t.parameters) for t in trials] == [False] * 4 + [True] * 8
    # generation 3 trials carry three steps of training: their score sums three lr values
    assert all(t.value > max(t.parameters["lr"], 0) for t in trials[8:])
    assert (exp.folder / "checkpoints" / "member_000" / "generation_002").is_dir()


def test_curvefitting_stops_a_hopeless_curve_and_keeps_a_good_one():
    assert abs(predict_final([1 - 0.5 / k for k in range(1, 7)], 20) - 0.975) < 0.05
    a = CurvefittingAssessor(epoch_num=20, start_step=4, threshold=0.95)
    a.trial_end([0.5, 0.7, 0.8, 0.85, 0.9], True)  # best so far 0.9
    assert a.should_stop([0.1, 0.15, 0.18, 0.2])
    assert not a.should_stop([0.6, 0.75, 0.82, 0.86])
    with pytest.raises(ConfigError, match="start_step \\(30\\) must be below epoch_num \\(20\\)"):
        CurvefittingAssessor(start_step=30)


def test_user_tuner_and_assessor_from_yaml(tmp_path, exp_dir, code_dir):
    lib = tmp_path / "mine"
    lib.mkdir()
    (lib / "my_tuner.py").write_text(textwrap.dedent("""
        from torchslim.experiment import Tuner, Assessor, AssessResult, NoMoreTrialError

        class Ladder(Tuner):
            def __init__(self, start=0.1, optimize_mode="maximize"):
                self.x, self.seen = start, []
            def update_search_space(self, search_space):
                self.space = search_space
            def generate_parameters(self, parameter_id, **kwargs):
                if self.x > 0.45:
                    raise NoMoreTrialError("done")
                self.x += 0.1
                return {"x": round(self.x, 3), "steps": 2}
            def receive_trial_result(self, parameter_id, parameters, value, **kwargs):
                self.seen.append((parameters["x"], value))

        class Never(Assessor):
            def assess_trial(self, trial_job_id, trial_history):
                return AssessResult.Good
    """))
    (tmp_path / "space.json").write_text(json.dumps({"x": {"_type": "uniform", "_value": [0, 1]}}))
    config = tmp_path / "config.yml"
    config.write_text(textwrap.dedent(f"""
        searchSpaceFile: space.json
        trialCommand: python trial.py
        trialCodeDirectory: {code_dir}
        maxTrialNumber: 10
        tuner:
          codeDirectory: mine
          className: my_tuner.Ladder
          classArgs: {{start: 0.2}}
        assessor:
          codeDirectory: mine
          className: my_tuner.Never
    """))
    exp = Experiment(config=load_config(config)).run()
    assert [t.parameters["x"] for t in exp.trials()] == [0.3, 0.4, 0.5]
    assert all(t.status == "SUCCEEDED" for t in exp.trials())
    config.write_text(config.read_text().replace("my_tuner.Ladder", "my_tuner.Nope"))
    with pytest.raises(ConfigError, match="has no class 'Nope'"):
        Experiment(config=load_config(config)).run()
