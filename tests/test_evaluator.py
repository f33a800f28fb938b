"""The training-loop protocol: hooks around the user's optimizer, loss patches, step limits."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from torchslim import TorchEvaluator
from torchslim.evaluator import TrainerEvaluator, as_evaluator, dataloader_training_func


def _data(n: int = 64) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return DataLoader(TensorDataset(x, (x.sum(1) > 0).long()), batch_size=8)


def _step(batch, model):
    return F.cross_entropy(model(batch[0]), batch[1])


def _evaluator(model: nn.Module, **kwargs) -> TorchEvaluator:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ev = TorchEvaluator(dataloader_training_func(_data()), opt, _step, **kwargs)
    ev.bind_model(model)
    return ev


def test_hooks_run_around_each_step_in_order_and_count_steps():
    model = nn.Linear(4, 2)
    ev = _evaluator(model)
    events = []
    ev.on_before_step(lambda: events.append(("before", model.weight.grad is not None)))
    ev.on_after_step(lambda: events.append(("after", ev.global_step)))
    ev.train(max_steps=3)
    assert events == [("before", True), ("after", 1), ("before", True), ("after", 2), ("before", True), ("after", 3)]
    ev.train(max_epochs=1)  # 64 samples / 8 = 8 steps
    assert ev.global_step == 11


def test_max_steps_is_enforced_when_the_users_loop_ignores_it():
    model = nn.Linear(4, 2)

    def greedy_loop(model, optimizer, training_step, lr_scheduler, max_steps, max_epochs):
        for _ in range(5):  # ignores max_steps on purpose
            for batch in _data():
                optimizer.zero_grad()
                training_step(batch, model).backward()
                optimizer.step()

    ev = TorchEvaluator(greedy_loop, torch.optim.SGD(model.parameters(), lr=0.1), _step)
    ev.bind_model(model)
    before = model.weight.detach().clone()
    ev.train(max_steps=4)
    assert ev.global_step == 4
    assert not torch.equal(model.weight, before)


def test_loss_patch_changes_the_gradient_and_is_removable():
    model = nn.Linear(4, 2)
    ev = _evaluator(model)
    seen = []
    ev.on_before_step(lambda: seen.append(model.weight.grad.clone()))
    handle = ev.patch_loss(lambda loss, batch: loss + 100.0 * model.weight.abs().sum())
    ev.train(max_steps=1)
    handle.remove()
    ev.train(max_steps=1)
    patched, plain = seen
    # the L1 term adds 100 * sign(w) to every gradient entry
    assert (patched - plain).abs().min() > 90


def test_hooks_are_silent_outside_train():
    model = nn.Linear(4, 2)
    ev = _evaluator(model)
    calls = []
    ev.on_after_step(lambda: calls.append(1))
    ev.patch_loss(lambda loss, batch: calls.append(2) or loss)
    opt = ev.optimizers[0]
    model(torch.randn(2, 4)).sum().backward()
    opt.step()  # the user's own training after compression
    assert calls == [] and ev.global_step == 0


def test_training_step_may_return_tuple_or_dict():
    model = nn.Linear(4, 2)
    seen = []
    for step in (lambda b, m: (_step(b, m), "extra"), lambda b, m: {"loss": _step(b, m), "acc": 0}):
        ev = TorchEvaluator(dataloader_training_func(_data()), torch.optim.SGD(model.parameters(), lr=0.1), step)
        ev.bind_model(model)
        ev.patch_loss(lambda loss, batch: seen.append(float(loss.detach())) or loss)
        ev.train(max_steps=2)
        ev.close()
    assert len(seen) == 4


def test_v2_trainer_form_with_and_without_epoch_argument():
    model = nn.Linear(4, 2)
    epochs = []

    def trainer(model, optimizer, criterion, epoch):
        epochs.append(epoch)
        for x, y in _data():
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()

    ev = as_evaluator(optimizer=torch.optim.SGD(model.parameters(), lr=0.1), trainer=trainer,
                      criterion=F.cross_entropy)
    assert isinstance(ev, TrainerEvaluator)
    ev.bind_model(model)
    ev.patch_loss(lambda loss, batch: loss * 0)  # criterion is wrapped: no learning at all
    before = model.weight.detach().clone()
    ev.train(max_epochs=2)
    assert epochs == [0, 1] and ev.global_step == 16 and torch.equal(model.weight, before)

    def trainer25(model, optimizer, criterion):  # NNI 2.5+ signature
        trainer(model, optimizer, criterion, -1)

    ev = TrainerEvaluator(trainer25, torch.optim.SGD(model.parameters(), lr=0.1), F.cross_entropy)
    ev.bind_model(model)
    ev.train(max_steps=10)  # stops inside the second epoch
    assert ev.global_step == 10 and epochs[-2:] == [-1, -1]


def test_evaluate_state_dict_and_errors():
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)
    ev = TorchEvaluator(dataloader_training_func(_data()), opt, _step, sched, evaluating_func=lambda m: 42.0)
    with pytest.raises(RuntimeError, match="bind_model"):
        ev.train(max_steps=1)
    ev.bind_model(model)
    with pytest.raises(ValueError, match="max_steps or max_epochs"):
        ev.train()
    with pytest.raises(ValueError, match="another model"):
        ev.bind_model(nn.Linear(4, 2))
    assert ev.evaluate() == 42.0
    state = ev.state_dict()
    ev.train(max_epochs=2)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025) and opt.state
    ev.load_state_dict(state)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1) and not opt.state
    with pytest.raises(TypeError, match="optimizer"):
        TorchEvaluator(lambda *a: None, "sgd", _step)


def test_from_dataloader_trains_a_classifier():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    ev = TorchEvaluator.from_dataloader(_data(256), torch.optim.SGD(model.parameters(), lr=0.5))
    ev.bind_model(model)
    ev.train(max_epochs=3)
    x, y = next(iter(_data(256)))
    assert (model(x).argmax(1) == y).float().mean() > 0.85


def test_a_mask_keeper_collected_inside_optimizer_step_does_not_break_it():
    """Regression: a garbage-collected MaskKeeper used to remove its global hook while torch
    iterated over them (pruners are created and dropped around training loops)."""
    import gc

    import torch.optim.optimizer as torch_optimizer

    from torchslim.masking import MaskKeeper

    collect = torch_optimizer.register_optimizer_step_post_hook(lambda *args: gc.collect())
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        keeper = MaskKeeper()
        keeper.cycle = keeper  # only the garbage collector can free it
        del keeper
        p = nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=0.1)
        p.grad = torch.ones(1)
        opt.step()
        opt.step()
    finally:
        collect.remove()
        if was_enabled:
            gc.enable()
    assert float(p.detach()) == pytest.approx(-0.2)
