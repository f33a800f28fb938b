"""Search spaces: every NNI type samples inside its domain; bad specs name the path."""
from __future__ import annotations

import json
import math
import random

import pytest

import torchslim
from torchslim.errors import ConfigError
from torchslim.experiment.searchspace import (
    FixedSuggester, RandomSuggester, SearchSpace, load_search_space,
)

MIXED = {
    "c": torchslim.choice("a", 2, None),
    "i": torchslim.randint(3, 6),
    "u": torchslim.uniform(-1.0, 1.0),
    "qu": torchslim.quniform(0.1, 0.9, 0.25),
    "lu": torchslim.loguniform(1e-4, 1e-1),
    "qlu": torchslim.qloguniform(1, 100, 5),
    "n": torchslim.normal(10, 2),
    "qn": torchslim.qnormal(0, 1, 0.5),
    "ln": torchslim.lognormal(0, 0.5),
    "qln": torchslim.qlognormal(0, 0.5, 0.1),
}


def _samples(space, n=300, seed=0):
    s = RandomSuggester(random.Random(seed))
    return [space.sample(s)[0] for _ in range(n)]


def test_helpers_return_nni_json_form():
    assert torchslim.choice(1, 2) == {"_type": "choice", "_value": [1, 2]}
    assert torchslim.choice([1, 2]) == {"_type": "choice", "_value": [1, 2]}
    assert torchslim.qlognormal(1, 2, 3) == {"_type": "qlognormal", "_value": [1, 2, 3]}
    assert json.loads(json.dumps(MIXED)) == MIXED


def test_every_type_samples_inside_its_domain():
    values = _samples(SearchSpace.parse(MIXED))
    assert {v["c"] for v in values} == {"a", 2, None}
    assert {v["i"] for v in values} == {3, 4, 5}  # upper bound exclusive
    assert all(-1 <= v["u"] <= 1 for v in values)
    assert {v["qu"] for v in values} <= {0.1, 0.25, 0.5, 0.75, 0.9}
    assert all(1e-4 <= v["lu"] <= 1e-1 for v in values)
    # log-uniform: about half the draws below the geometric middle
    assert 0.35 < sum(v["lu"] < math.sqrt(1e-5) for v in values) / len(values) < 0.65
    assert all(1 <= v["qlu"] <= 100 and (v["qlu"] in (1, 100) or v["qlu"] % 5 == 0) for v in values)
    normals = [v["n"] for v in values]
    assert 9.5 < sum(normals) / len(normals) < 10.5
    assert all(v["qn"] * 2 == round(v["qn"] * 2) for v in values)
    assert all(v["ln"] > 0 for v in values)
    assert all(abs(v["qln"] * 10 - round(v["qln"] * 10)) < 1e-9 for v in values)


def test_nested_choice_samples_only_the_chosen_branch():
    space = SearchSpace.parse({"prune": torchslim.choice(
        {"_name": "agp", "s0": torchslim.uniform(0.1, 0.9)},
        {"_name": "level", "s1": torchslim.randint(1, 3), "fixed": 7},
    )})
    values = _samples(space, 50)
    names = {v["prune"]["_name"] for v in values}
    assert names == {"agp", "level"}
    for v in values:
        assert set(v["prune"]) == ({"_name", "s0"} if v["prune"]["_name"] == "agp"
                                   else {"_name", "s1", "fixed"})


def test_raw_point_replays_exactly():
    space = SearchSpace.parse(MIXED)
    params, raw = space.sample(RandomSuggester(random.Random(3)))
    assert space.realize(raw) == params
    assert space.sample(FixedSuggester(json.loads(json.dumps(raw))))[0] == params


def test_grid_enumerates_discrete_spaces():
    space = SearchSpace.parse({
        "a": torchslim.choice({"_name": "x", "q": torchslim.quniform(0, 1, 0.5)},
                              {"_name": "y", "k": torchslim.randint(0, 2)}),
        "b": torchslim.choice(True, False),
    })
    points = [space.realize(raw) for raw in space.grid()]
    assert len(points) == (3 + 2) * 2
    assert {"a": {"_name": "x", "q": 0.5}, "b": False} in points


def test_grid_rejects_continuous_parameter_by_path():
    space = SearchSpace.parse({"a": torchslim.choice({"_name": "x", "u": torchslim.uniform(0, 1)})})
    with pytest.raises(ConfigError, match=r"'a\[x\]\.u'.*uniform.*choice, randint, quniform"):
        space.grid()


@pytest.mark.parametrize("spec, message", [
    ({"lr": {"_type": "unifrom", "_value": [0, 1]}}, r"'lr' has _type 'unifrom'; allowed: choice"),
    ({"lr": {"_type": "uniform", "_value": [1, 0]}}, r"'lr' \(uniform\).*need low <= high"),
    ({"lr": {"_type": "uniform", "_value": [0]}}, r"'lr' \(uniform\) needs _value \[low, high\]"),
    ({"lr": {"_type": "uniform", "_value": ["a", 1]}}, r"'lr' \(uniform\) needs _value"),
    ({"lr": {"_type": "loguniform", "_value": [0, 1]}}, r"'lr'.*0 < low"),
    ({"n": {"_type": "randint", "_value": [3, 3]}}, r"'n' \(randint\).*lower < upper"),
    ({"n": {"_type": "normal", "_value": [0, -1]}}, r"'n' \(normal\).*sigma > 0"),
    ({"q": {"_type": "quniform", "_value": [0, 1, 0]}}, r"'q' \(quniform\).*q > 0"),
    ({"c": {"_type": "choice", "_value": []}}, r"'c' \(choice\) needs a non-empty"),
    ({"c": {"_type": "choice", "_value": "ab"}}, r"'c' \(choice\) needs a list _value"),
    ({"c": {"_type": "choice", "_value": [1], "extra": 1}}, r"'c' has unknown key\(s\) \['extra'\]"),
    ({"c": 5}, r"'c' must be a dict with '_type' and '_value'"),
    ({"p": {"_type": "choice", "_value": [{"x": 1}]}}, r"'p' \(choice\) option _value\[0\].*_name"),
    ({"p": {"_type": "choice", "_value": [{"_name": "a"}, {"_name": "a"}]}}, r"duplicate _name 'a'"),
    ({"p": {"_type": "choice", "_value": [
        {"_name": "agp", "s": {"_type": "uniform", "_value": [0.9, 0.1]}}]}},
     r"'p\[agp\]\.s' \(uniform\)"),
    ([1, 2], r"must be a dict of parameter name"),
])
def test_invalid_spaces_name_the_parameter_path(spec, message):
    with pytest.raises(ConfigError, match=message):
        SearchSpace.parse(spec)


def test_search_space_file_accepts_nni_trailing_commas(tmp_path):
    path = tmp_path / "space.json"
    path.write_text('{"a": {"_type": "choice", "_value": [{"_name": "x", '
                    '"s": {"_type": "uniform", "_value": [0.1, 0.9]},\n },\n]}}')
    assert load_search_space(path).params[0].path == "a"
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="bad.json.*not valid JSON"):
        load_search_space(tmp_path / "bad.json")
