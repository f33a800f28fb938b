"""One-shot strategies: DARTS, RandomOneShot, ENAS on a tiny cell space."""
from __future__ import annotations

import pytest
import torch

import torchslim
from torchslim.errors import ConfigError
from torchslim.nas import Mutable, MutableLinear, ModelSpace, NasExperiment, strategy


@pytest.mark.parametrize("make", [strategy.DARTS, lambda: strategy.RandomOneShot(num_candidates=8),
                                  lambda: strategy.ENAS(num_candidates=8)])
def test_one_shot_exports_valid_architectures(cell_space, tiny_classification, make) -> None:
    strat = make()
    exp = NasExperiment(cell_space, tiny_classification, strat)
    exp.run()
    top = exp.export_top_models(top_k=3)
    assert len(top) == 3 and len({repr(t) for t in top}) == 3
    for sample in top:
        assert cell_space.check_sample(sample) == sample
    model = exp.export_top_models(formatter="instance")[0]
    assert not any(isinstance(m, Mutable) for m in model.modules())
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_darts_learns_architecture_weights_per_label(cell_space, tiny_classification) -> None:
    darts = strategy.DARTS(arc_learning_rate=0.05)
    NasExperiment(cell_space, tiny_classification, darts).run()
    assert set(darts.alphas) == set(cell_space.simplify())
    probs = darts.alphas["cell/op_0_0"]
    assert abs(sum(probs) - 1) < 1e-5 and max(probs) - min(probs) > 1e-4  # they moved
    # the export is the argmax of each label's softmax
    best = darts.export_top_models(1)[0]
    assert best["cell/op_0_0"] == ["conv", "skip", "pool"][probs.index(max(probs))]


def test_darts_refuses_what_it_cannot_relax(tiny_classification) -> None:
    class Sized(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.fc = MutableLinear(784, torchslim.choice("w", [4, 8]))

    with pytest.raises(ConfigError, match="use RandomOneShot"):
        NasExperiment(Sized(), tiny_classification, strategy.DARTS()).run()
    with pytest.raises(ConfigError, match="Classification evaluator"):
        NasExperiment(Sized(), None, strategy.RandomOneShot()).run()
