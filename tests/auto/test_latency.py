"""The latency table: predictions fall with sparsity, measurements correct them, tables are cached."""
import numpy as np
import pytest
import torch

from torchslim.auto.latency import LatencyTable
from torchslim.auto.units import CostModel

from .test_units import TinyNet


@pytest.fixture(scope="module")
def table_and_cost(tmp_path_factory):
    torch.manual_seed(0)
    model = TinyNet().eval()
    cost = CostModel(model, torch.randn(1, 3, 16, 16))
    cache = tmp_path_factory.mktemp("latency")
    table = LatencyTable(model, torch.randn(8, 3, 32, 32), cost, threads=1, repeats=3, cache_dir=cache)
    return model, cost, table, cache


def test_predictions_fall_with_sparsity(table_and_cost):
    _, cost, table, _ = table_and_cost
    n = len(cost.units)
    assert table.predict(np.zeros(n)) == pytest.approx(table.dense_ms)
    shares = [table.predict(np.full(n, s)) for s in (0.0, 0.3, 0.6, 0.9)]
    assert all(a >= b for a, b in zip(shares, shares[1:]))
    assert shares[-1] < shares[0]


def test_a_measurement_corrects_the_table(table_and_cost):
    _, cost, table, _ = table_and_cost
    n = len(cost.units)
    point = np.full(n, 0.5)
    try:
        table.calibrate(point, 0.3)
        assert table.predict(point) / table.dense_ms == pytest.approx(0.3)
        assert table.predict(np.zeros(n)) == pytest.approx(table.dense_ms)  # dense stays dense
    finally:
        table.beta, table.points = 1.0, []


def test_the_table_is_cached(table_and_cost):
    model, cost, table, cache = table_and_cost
    files = list(cache.glob("latency-*.json"))
    assert len(files) == 1
    again = LatencyTable(model, torch.randn(8, 3, 32, 32), cost, threads=1, repeats=3, cache_dir=cache)
    assert again.rows == table.rows and again.dense_ms == table.dense_ms
