import pytest

from torchslim.auto.target import Target
from torchslim.errors import ConfigError


def test_absolute_and_relative_budgets():
    target = Target({"params": 2421, "macs": "25%", "latency_ms": "0.5x"}).resolve(
        {"params": 44426, "macs": 1000.0, "latency": 8.0})
    assert [(b.metric, b.value) for b in target.bounds] == [("params", 2421), ("macs", 250.0), ("latency", 4.0)]


@pytest.mark.parametrize("spec,match", [
    ({"parms": 10}, "did you mean 'params'"),
    ({"params": -1}, "must be > 0"),
    ({"macs": "150%"}, "between 0 and 1"),
    ({"latency_ms": "fast"}, "'fast'"),
    ({}, "non-empty"),
    ({"params": True}, "True"),
])
def test_bad_targets_are_named_as_written(spec, match):
    with pytest.raises(ConfigError, match=match):
        Target(spec)
