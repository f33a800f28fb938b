"""benchmarks/pruning_mnist.py: every pruner of the grid runs on LeNet, choices come from validation,
a saved grid resumes only under the same protocol."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from torch.utils.data import Subset

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def grid(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCH))
    import pruning_mnist
    import results_io

    monkeypatch.setattr(results_io, "RESULTS", tmp_path)
    monkeypatch.setattr(pruning_mnist, "CACHE", tmp_path / "cache")
    torch.set_num_threads(1)
    pruning_mnist._init_worker(val_size=200, threads=1)
    data = dict(pruning_mnist._DATA)
    # a small slice (11 steps an epoch: enough for a 10-step schedule) keeps each run short
    pruning_mnist._DATA.update(train=Subset(data["train"], range(704)), val=Subset(data["val"], range(200)),
                               test=Subset(data["test"], range(200)))
    yield pruning_mnist
    pruning_mnist._DATA.clear()


def test_every_pruner_runs_on_lenet_and_shrinks_or_sparsifies(grid):
    dense = {arch: grid.train_dense(arch, seed=0, epochs=1, read_test=True) for arch in grid.ARCHS}
    for name, (structured, arch, _) in grid.PRUNERS.items():
        r = grid.prune_and_tune(name, dense[arch]["state"], 0.5, seed=0, lr=1e-3, epochs=1, read_test=True)
        assert r["params"] < 0.75 * dense[arch]["params"], name
        assert 0 <= r["test_acc"] <= 100 and r["val_acc"] > 0, name
        # one-shot accuracy exists exactly for the pruners that prune before fine-tuning
        assert (r["one_shot_val_acc"] is None) == name.startswith(("Movement", "Linear", "AGP", "Lottery")), name


def test_dense_weights_are_cached_for_a_resumed_grid(grid, monkeypatch):
    task = {"kind": "dense", "arch": "LeNet", "seed": 0, "epochs": 1, "read_test": False}
    first = grid.cached_dense(task)
    monkeypatch.setattr(grid, "train_dense", lambda *a: pytest.fail("retrained although cached"))
    again = grid.cached_dense(task)
    assert again["val_acc"] == first["val_acc"]
    assert all(torch.equal(again["state"][k], v) for k, v in first["state"].items())


def test_choice_is_best_validation_with_ties_to_the_smaller_budget(grid):
    rows = [{"pruner": "P", "lr": lr, "epochs": e, "val_acc": acc}
            for lr, e, acc in [(1e-3, 1, 97.0), (1e-3, 2, 97.0), (3e-4, 1, 96.0), (3e-4, 2, 96.5)]]
    assert grid.choose(rows, "P", 4) == (1e-3, 1)
    assert grid.choose(rows[:3], "P", 4) is None  # a failed selection run: no choice, no runs


def _args(**kw) -> argparse.Namespace:
    base = dict(dense_epochs=4, lrs=[1e-3], epoch_choices=[1], val=1000, fresh=False, name="pm")
    return argparse.Namespace(**{**base, **kw})


def test_resume_keeps_runs_and_refuses_another_protocol(grid, tmp_path):
    data = grid.start_data(_args())
    data["runs"].append({"pruner": "L1Norm", "sparsity": 0.5, "seed": 0})
    grid.save_all("pm", data, "md")
    again = grid.start_data(_args())
    assert again["runs"] == data["runs"]
    with pytest.raises(SystemExit, match="another protocol"):
        grid.start_data(_args(dense_epochs=2))
    assert grid.start_data(_args(dense_epochs=2, fresh=True))["runs"] == []


def test_render_shows_dense_baseline_one_shot_and_params_kept(grid):
    data = grid.start_data(_args(lrs=[1e-3, 3e-4]))
    data.update(train=7000, val_size=1000, test_size=2000)
    data["dense"] = [{"arch": "LeNet", "seed": s, "val_acc": 97.0 + s, "test_acc": 98.0 + s, "params": 1000}
                     for s in (0, 1)]
    data["select"] = [{"pruner": "L1Norm", "lr": lr, "epochs": 1, "val_acc": acc} for lr, acc in ((1e-3, 96.0), (3e-4, 95.0))]
    data["runs"] = [{"pruner": "L1Norm", "structured": True, "arch": "LeNet", "sparsity": 0.5, "seed": s, "lr": 1e-3,
                     "epochs": 1, "one_shot_val_acc": 90.0 + s, "test_acc": 97.0 + s, "params": 250} for s in (0, 1)]
    md = grid.render(data, list(grid.PRUNERS))
    assert "| LeNet | 1,000 | 97.50 ± 0.71 (n=2) | 98.50 ± 0.71 (n=2) |" in md
    assert "| L1Norm | structured | 0.001, 1 | 50% | 90.5 ± 0.7 (n=2) | 97.50 ± 0.71 (n=2) | 250 (25.0%) |" in md
    assert "| L1Norm | **96.0** | 95.0 |" in md
