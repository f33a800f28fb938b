"""Hardware-aware costs: parameters, MACs and a latency table, computed on the meta device."""
from __future__ import annotations

import torch
import torch.nn as nn

import torchslim
from torchslim.nas import (
    FlopsProfiler, LatencyProfiler, ModelSpace, MutableLinear, NumParamsProfiler,
)
from torchslim.nas.pareto import pareto_front


class MLP(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        hidden = torchslim.choice("hidden", [8, 64])
        self.fc1 = MutableLinear(16, hidden)
        self.fc2 = MutableLinear(hidden, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def test_params_and_macs_match_the_built_model() -> None:
    space = MLP()
    params, flops = NumParamsProfiler(space), FlopsProfiler(space, torch.randn(1, 16))
    for h in (8, 64):
        real = space.freeze({"hidden": h})
        assert params.profile({"hidden": h}) == sum(p.numel() for p in real.parameters())
        assert flops.profile({"hidden": h}) == 16 * h + h * 4
    # nothing was allocated: the profiler's copy lives on the meta device
    assert all(p.is_meta for p in params.meta_space.parameters())


def test_latency_table_measures_each_layer_once(tmp_path) -> None:
    space = MLP()
    lat = LatencyProfiler(space, torch.randn(1, 16), repeats=3)
    small, big = lat.profile({"hidden": 8}), lat.profile({"hidden": 64})
    assert small > 0 and big > 0 and lat.measured == 4
    lat.cache.clear()
    lat.profile({"hidden": 8})
    assert lat.measured == 4  # looked up, not measured again
    lat.save(tmp_path / "table.json")
    again = LatencyProfiler(space, torch.randn(1, 16), table=tmp_path / "table.json")
    assert again.profile({"hidden": 64}) == big and again.measured == 0


def test_pareto_front_keeps_only_non_dominated() -> None:
    ranked = [{"a": 1}, {"a": 2}, {"a": 3}, {"a": 4}]  # best score first
    cost = {1: 10, 2: 12, 3: 5, 4: 5}
    front = pareto_front(ranked, {"cost": lambda s: cost[s["a"]]})
    assert front == [{"a": 1}, {"a": 3}]
