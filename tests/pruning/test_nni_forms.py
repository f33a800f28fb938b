"""The pruning family's NNI boundary: every legacy name and call form works and warns, naming the modern form."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchslim.pruning as pruning
from torchslim.pruning import AGPPruner, L1NormPruner, LevelPruner, LinearPruner, LotteryTicketPruner, Pruner


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 20), nn.ReLU(), nn.Linear(20, 2))


def _sparsity(layer: nn.Module) -> float:
    return float((layer.weight == 0).float().mean())


def _trainer(model, optimizer, criterion, epoch):
    g = torch.Generator().manual_seed(epoch)
    for _ in range(4):
        x = torch.randn(16, 8, generator=g)
        optimizer.zero_grad()
        criterion(model(x), (x[:, 0] > 0).long()).backward()
        optimizer.step()


@pytest.mark.parametrize("old, new", [
    ("AGP_Pruner", "AGPPruner"),
    ("ActivationAPoZRankFilterPruner", "ActivationAPoZRankPruner"),
    ("ActivationMeanRankFilterPruner", "ActivationMeanRankPruner"),
    ("L1FilterPruner", "L1NormPruner"),
    ("TaylorFOWeightPruner", "TaylorPruner"),
    ("auto_set_denpendency_group_ids", "auto_set_dependency_group_ids"),
])
def test_renamed_names_resolve_and_warn(old, new):
    with pytest.warns(DeprecationWarning, match=rf"^{old} is an NNI legacy form; use {new} \(from torchslim.pruning\)$"):
        assert getattr(pruning, old) is getattr(pruning, new)


def test_misspelled_dependency_helper_works():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=8))
    with pytest.warns(DeprecationWarning, match="auto_set_dependency_group_ids"):
        helper = pruning.auto_set_denpendency_group_ids
    cfg = helper(model, [{"op_types": ["Conv2d"], "sparse_ratio": 0.5}], torch.rand(1, 3, 8, 8))
    assert {e.get("dependency_group_id") for e in cfg[1:]} == {"dep0"}


def test_v0_call_form_prunes_when_called_on_the_model():
    model = _model()
    with pytest.warns(DeprecationWarning, match=r"LevelPruner\(config_list\); pruner\(model\) is an NNI legacy form; "
                                                r"use LevelPruner\(model, config_list\)\.compress\(\)"):
        pruner = LevelPruner([{"sparsity": 0.5, "op_types": ["default"]}])
    assert _sparsity(model[0]) == 0
    assert pruner(model) is model
    assert _sparsity(model[0]) == pytest.approx(0.5) and _sparsity(model[2]) == pytest.approx(0.5)
    assert set(pruner.get_masks()) == {"0", "2"}  # the real pruner's API after the call


def test_op_name_and_v0_agp_keys():
    model = _model()
    cfg = [{"initial_sparsity": 0, "final_sparsity": 0.8, "start_epoch": 0, "end_epoch": 4, "frequency": 1,
            "op_name": "0"}]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruner = pruning.AGP_Pruner(cfg)
        pruner(model)
    messages = "\n".join(str(w.message) for w in caught)
    assert "AGP_Pruner is an NNI legacy form; use AGPPruner" in messages
    assert "AGPPruner(config_list); pruner(model) is an NNI legacy form" in messages
    assert "'op_name' is an NNI legacy form; use 'op_names': [name]" in messages
    assert "v0 AGP keys" in messages and "AGPPruner(pruner, interval_steps, total_times)" in messages
    assert all(w.filename == __file__ for w in caught)  # each points at the user's line
    ratios = []
    for epoch in range(5):
        pruner.update_epoch(epoch)
        ratios.append(_sparsity(model[0]))
    assert ratios == pytest.approx([0.8 * (1 - (1 - t / 4) ** 3) for t in (1, 2, 3, 4, 4)], abs=0.01)
    assert _sparsity(model[2]) == 0  # op_name chose layer '0' only


def test_op_name_in_a_modern_call():
    model = _model()
    with pytest.deprecated_call(match="'op_name'"):
        L1NormPruner(model, [{"sparse_ratio": 0.5, "op_name": "0"}]).compress()
    assert _sparsity(model[0]) == pytest.approx(0.5) and _sparsity(model[2]) == 0


@pytest.mark.parametrize("name", ["ActivationAPoZRankFilterPruner", "ActivationMeanRankFilterPruner"])
def test_v1_activation_pruners_with_v2_training_arguments(name):
    model = _model()
    with pytest.deprecated_call():
        cls = getattr(pruning, name)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.deprecated_call(match=r"\(model, config_list, optimizer, trainer, criterion, \.\.\.\) is an NNI legacy "
                                      r"form; use \w+\(model, config_list, TorchEvaluator"):
        pruner = cls(model, [{"sparsity": 0.5, "op_types": ["Linear"], "op_names": ["0"]}], optimizer, _trainer,
                     F.cross_entropy, 2)
    assert pruner.training_steps == 2
    pruner.compress()
    assert _sparsity(model[0]) == pytest.approx(0.5)
    assert ((model[0].weight == 0).all(dim=1)).sum() == 10  # whole neurons


def test_v2_slim_keywords():
    model = nn.Sequential(nn.Linear(8, 6), nn.BatchNorm1d(6), nn.Linear(6, 4), nn.BatchNorm1d(4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruner = pruning.SlimPruner(model, [{"sparsity": 0.5, "op_types": ["BatchNorm1d"]}], optimizer, _trainer,
                                    F.cross_entropy, scale=0.01, sparsifying_training_epochs=1, mode="global")
    messages = "\n".join(str(w.message) for w in caught)
    for old, new in (("scale=", "regular_scale="), ("sparsifying_training_epochs=", "training_epochs="),
                     ("mode='global'", "'global_group_id'")):
        assert f"(..., {old}) is an NNI legacy form" in messages and new in messages
    assert pruner.regular_scale == 0.01 and pruner.training_epochs == 1
    assert {s["weight"]["global_group_id"] for s in pruner.settings.values()} == {"slim"}
    pruner.compress()
    assert float((model[1].weight == 0).float().mean() + (model[3].weight == 0).float().mean()) > 0


def test_custom_pruner_bound_model():
    class MyPruner(Pruner):
        def calc_mask(self, wrapper, config):
            assert self.bound_model is self.model
            return torch.ones_like(wrapper.module.weight)

    model = _model()
    pruner = MyPruner(model, [{"sparsity": 0.5, "op_types": ["Linear"]}])
    with pytest.deprecated_call(match=r"^MyPruner\.bound_model is an NNI legacy form; use \.model$"):
        pruner.compress()
    with pytest.raises(AttributeError, match="no attribute 'bound_modle'"):
        pruner.bound_modle


@pytest.mark.parametrize("cls, algorithm", [(LinearPruner, "l1"), (LotteryTicketPruner, "level")])
def test_v2_iterative_pruners(cls, algorithm):
    model = _model()
    rounds = []
    with pytest.deprecated_call(match=rf"{cls.__name__}\(model, config_list, '{algorithm}', total_iteration, \.\.\.\) "
                                      rf"is an NNI legacy form"):
        pruner = cls(model, [{"sparsity": 0.75, "op_types": ["Linear"], "op_names": ["0"]}], algorithm, 3,
                     finetuner=lambda m: rounds.append(_sparsity(m[0])), evaluator=lambda m: -_sparsity(m[0]))
    pruner.compress()
    assert len(rounds) == 3 and rounds[-1] == pytest.approx(0.75, abs=0.02) and rounds == sorted(rounds)
    task_id, best_model, masks, score, config_list = pruner.get_best_result()
    assert task_id == 0 and score == pytest.approx(-rounds[0])  # the evaluator's best round
    assert masks["0"]["weight"].shape == (20, 8) and config_list[0]["op_names"] == ["0"]


def test_v2_agp_form_still_trains_between_rounds():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.deprecated_call(match=r"AGPPruner\(model, config_list, optimizer, \.\.\.\)"):
        pruner = AGPPruner(model, [{"sparsity": 0.5, "op_types": ["default"]}], optimizer, _trainer, F.cross_entropy,
                           num_iterations=2, epochs_per_iteration=1, pruning_algorithm="level")
    pruner.compress()
    assert _sparsity(model[0]) == pytest.approx(0.5)


def test_modern_forms_do_not_warn():
    model = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        AGPPruner(L1NormPruner(model, [{"sparse_ratio": 0.5, "op_types": ["Linear"]}]), 1, 2).update_epoch(1)
        LevelPruner(model, [{"sparse_ratio": 0.5, "op_types": ["Linear"]}]).compress()


def test_typed_constructors_refuse_guessing():
    model = _model()
    with pytest.raises(TypeError, match="must be a torchslim Evaluator"):
        pruning.TaylorPruner(model, [{"sparse_ratio": 0.5, "op_types": ["Linear"]}], evaluator=object())
    with pytest.raises(TypeError, match="wraps a torchslim Pruner"):
        AGPPruner("not a pruner", 1, 2)
