"""Schedules: sparsity curves, nested masks, frozen masks, lottery-ticket rewinding, v1/v2 forms."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from torchslim import TorchEvaluator
from torchslim.pruning import (
    AGPPruner, LevelPruner, LinearPruner, LotteryTicketPruner, Pruner, SlimPruner, TaylorPruner,
)

CFG = [{"op_types": ["Linear"], "exclude_op_names": ["2"], "sparse_ratio": 0.8}]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 20), nn.ReLU(), nn.Linear(20, 2))


def _evaluator(model: nn.Module, momentum: float = 0.0) -> TorchEvaluator:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 8, generator=g)
    loader = DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=16)
    return TorchEvaluator.from_dataloader(loader, torch.optim.SGD(model.parameters(), lr=0.05, momentum=momentum))


def _sparsity(model: nn.Module) -> float:
    return float((model[0].weight == 0).float().mean())


class _Recorder:
    """Records the sub-pruner's mask after each pruning step."""

    def __init__(self, schedule) -> None:
        self.masks = []
        update = schedule.pruner.update_masks

        def record():
            masks = update()
            self.masks.append(masks["0"]["weight"].clone())
            return masks

        schedule.pruner.update_masks = record


@pytest.mark.parametrize("cls, curve", [
    (AGPPruner, lambda t: 0.8 * (1 - (1 - t / 4) ** 3)),
    (LinearPruner, lambda t: 0.8 * t / 4),
    (LotteryTicketPruner, lambda t: 1 - 0.2 ** (t / 4)),
])
def test_sparsity_follows_the_curve_masks_nest_and_freeze(cls, curve):
    model = _model()
    ev = _evaluator(model)
    schedule = cls(LevelPruner(model, CFG), interval_steps=3, total_times=4, evaluator=ev)
    rec = _Recorder(schedule)
    _, masks = schedule.compress(max_steps=20)  # 12 steps of pruning, 8 of fine-tuning
    assert ev.global_step == 20 and schedule.frozen
    ratios = [1 - float(m.mean()) for m in rec.masks]
    assert ratios == pytest.approx([curve(t) for t in (1, 2, 3, 4)], abs=1 / 160)
    for earlier, later in zip(rec.masks, rec.masks[1:]):
        assert torch.all(later <= earlier)  # pruned weights stay pruned
    assert torch.equal(masks["0"]["weight"], rec.masks[-1]) and _sparsity(model) == pytest.approx(0.8)


def test_agp_with_taylor_collects_data_between_steps_and_stops_after_freezing():
    model = _model()
    ev = _evaluator(model)
    sub = TaylorPruner(model, [{"op_names": ["0"], "sparse_ratio": 0.5}], ev, training_steps=2)
    schedule = AGPPruner(sub, interval_steps=4, total_times=2)
    _, masks = schedule.compress(max_steps=12)
    assert ev.global_step == 12 and not sub.collecting and not ev._before
    assert float(masks["0"]["weight"].amax(1).mean()) == 0.5


def test_start_finish_let_another_compressor_own_the_training_run():
    model = _model()
    ev = _evaluator(model)
    schedule = LinearPruner(LevelPruner(model, CFG), interval_steps=2, total_times=2, evaluator=ev)
    schedule.start()
    ev.train(max_steps=3)  # e.g. a quantizer's compress() running the shared loop
    assert schedule.times_done == 1 and _sparsity(model) == pytest.approx(0.4)
    ev.train(max_steps=2)
    schedule.finish()
    assert schedule.frozen and _sparsity(model) == pytest.approx(0.8) and not ev._after


def test_schedule_warns_and_finishes_when_training_is_too_short():
    model = _model()
    schedule = AGPPruner(LevelPruner(model, CFG), interval_steps=10, total_times=5, evaluator=_evaluator(model))
    with pytest.warns(UserWarning, match="before the last"):
        schedule.compress(max_steps=15)
    assert schedule.frozen and _sparsity(model) == pytest.approx(0.8)


def test_lottery_ticket_rewinds_survivors_and_optimizer_to_init():
    model = _model()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    ev = _evaluator(model, momentum=0.9)
    schedule = LotteryTicketPruner(LevelPruner(model, CFG), interval_steps=4, total_times=3, evaluator=ev)
    _, masks = schedule.compress(max_steps=12)  # ends right after the last prune + rewind
    mask = masks["0"]["weight"]
    assert torch.equal(model[0].weight, init["0.weight"] * mask)
    assert torch.equal(model[2].weight, init["2.weight"])  # not pruned, rewound too
    assert not ev.optimizers[0].state  # momentum buffers gone, as at the start

    model = _model()
    LotteryTicketPruner(LevelPruner(model, CFG), 4, 3, _evaluator(model), reset_weights=False).compress(max_steps=12)
    assert not torch.equal(model[0].weight, init["0.weight"] * (model[0].weight != 0))


def test_v1_lottery_ticket_iterations():
    model = _model()
    init = model[0].weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cfg = [{"prune_iterations": 2, "sparsity": 0.75, "op_names": ["0"]}]
    pruner = LotteryTicketPruner(model, cfg, opt)
    sparsities = []
    for _ in pruner.get_prune_iterations():
        pruner.prune_iteration_start()
        sparsities.append(_sparsity(model))
        rewound = model[0].weight.detach().clone()
        with torch.no_grad():
            model[0].weight.add_(0.01)  # "training"
    assert sparsities == pytest.approx([0.0, 0.5, 0.75])
    assert torch.equal(rewound, init * (rewound != 0))


def test_v2_form_runs_prune_then_train_per_iteration():
    model = _model()
    x = torch.randn(32, 8)
    y = (x[:, 0] > 0).long()
    log = []

    def trainer(model, optimizer, criterion, epoch):
        log.append((epoch, round(_sparsity(model), 3)))
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = AGPPruner(model, CFG, opt, trainer, F.cross_entropy, num_iterations=2, epochs_per_iteration=2,
                       pruning_algorithm="l1")
    result = pruner.compress()
    assert result(x).shape == (32, 2)  # v2 code uses the result as the model
    assert log == [(0, 0.7), (1, 0.7), (2, 0.8), (3, 0.8)]


def test_v1_update_epoch_form():
    model = _model()
    pruner = AGPPruner(model, CFG, torch.optim.SGD(model.parameters(), lr=0.1), pruning_algorithm="level",
                       num_iterations=3, epochs_per_iteration=1)
    pruner.compress()
    seen = [_sparsity(model)]
    for epoch in range(1, 5):
        pruner.update_epoch(epoch)
        pruner.step()
        seen.append(_sparsity(model))
    expected = [0.8 * (1 - (2 / 3) ** 3), 0.8 * (1 - (1 / 3) ** 3), 0.8, 0.8, 0.8]
    assert seen == pytest.approx(expected, abs=1 / 160)


def test_slim_under_agp_keeps_its_penalty_while_scheduling():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    x = torch.randn(64, 4)
    ev = TorchEvaluator.from_dataloader(DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=16),
                                        torch.optim.SGD(model.parameters(), lr=0.1))
    penalties = []
    sub = SlimPruner(model, [{"op_types": ["BatchNorm1d"], "sparse_ratio": 0.5}], ev, regular_scale=0.1)
    ev.patch_loss(lambda loss, batch: penalties.append(1) or loss)
    AGPPruner(sub, interval_steps=2, total_times=2).compress(max_steps=6)
    assert len(penalties) == 6
    assert float(model[1].weight.ne(0).float().mean()) == 0.5 and torch.equal(model[1].bias.ne(0), model[1].weight.ne(0))


def test_custom_calc_mask_pruner_under_a_schedule():
    class KeepFirst(Pruner):
        def calc_mask(self, wrapper, config):
            w = wrapper.module.weight
            mask = torch.ones_like(w).flatten()
            mask[: int(config["sparsity"] * mask.numel())] = 0
            return {"weight_mask": mask.view_as(w)}

    model = _model()
    schedule = LinearPruner(KeepFirst(model, CFG), 2, 2, evaluator=_evaluator(model))
    schedule.compress()
    assert _sparsity(model) == pytest.approx(0.8) and bool((model[0].weight.flatten()[:128] == 0).all())


def test_bad_arguments():
    model = _model()
    with pytest.raises(TypeError, match="wraps a torchslim Pruner"):
        AGPPruner("l1", 10, 2)
    with pytest.raises(ValueError, match=">= 1"):
        AGPPruner(LevelPruner(model, CFG), 0, 2)
    with pytest.raises(ValueError, match="needs an evaluator"):
        AGPPruner(LevelPruner(model, CFG), 1, 2).compress(max_steps=3)
    with pytest.raises(Exception, match="pruning_algorithm"):
        AGPPruner(model, CFG, pruning_algorithm="magic")


def test_structured_pipeline_agp_taylor_then_speedup_shrinks_lenet5():
    from torch.utils.data import Subset

    from torchslim.datasets import load_mnist
    from torchslim.models import LeNet5
    from torchslim.speedup import ModelSpeedup
    from torchslim.utils.metrics import count_params

    torch.manual_seed(0)
    train, _ = load_mnist()
    model = LeNet5()
    ev = TorchEvaluator.from_dataloader(DataLoader(Subset(train, range(256)), batch_size=64),
                                        torch.optim.Adam(model.parameters(), lr=1e-3))
    widths = {"conv1": (6, 4), "conv2": (16, 8), "fc1": (120, 10), "fc2": (84, 9)}
    cfg = [{"op_names": [name], "sparse_ratio": (full - kept) / full} for name, (full, kept) in widths.items()]
    schedule = AGPPruner(TaylorPruner(model, cfg, ev, training_steps=2), interval_steps=2, total_times=3)
    _, masks = schedule.compress(max_steps=8)
    schedule.unwrap_model()
    x = torch.stack([train[i][0] for i in range(4)])
    expected = model(x)
    small = ModelSpeedup(model, x, masks).speedup_model()
    assert count_params(small) == 2401  # the benchmark's shape: <= 2,421 as in the seeds
    assert torch.allclose(small(x), expected, atol=1e-5)
