"""Schedules with speedup=True: the model shrinks after every pruning round, training goes on
with the optimizer (and its state) on the smaller parameters."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tests.graph.conftest import one_thread  # noqa: F401  (autouse: one thread per test)
from torchslim import TorchEvaluator
from torchslim.pruning import AGPPruner, L1NormPruner, LinearPruner, LotteryTicketPruner

CFG = [{"op_types": ["Linear"], "exclude_op_names": ["2"], "sparse_ratio": 0.8}]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 20), nn.ReLU(), nn.Linear(20, 2))


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 8, generator=g)
    return x, (x[:, 0] > 0).long()


@pytest.mark.parametrize("cls", [LinearPruner, AGPPruner, LotteryTicketPruner])
def test_schedule_shrinks_after_every_round_with_optimizer_state(cls):
    model = _model()
    x, y = _data()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    ev = TorchEvaluator.from_dataloader(DataLoader(TensorDataset(x, y), batch_size=16), opt, dummy_input=x[:2])
    widths = []
    schedule = cls(L1NormPruner(model, CFG), interval_steps=3, total_times=4, evaluator=ev, speedup=True)
    shrink = schedule._shrink

    def record():
        shrink()
        widths.append(model[0].out_features)

    schedule._shrink = record
    schedule.compress(max_steps=16)
    assert widths[-1] == 4 and widths == sorted(widths, reverse=True) and len(set(widths)) > 2
    assert model[2].in_features == 4
    params = {id(p) for p in model.parameters()}
    assert {id(p) for g in opt.param_groups for p in g["params"]} == params  # the optimizer follows
    for p in model.parameters():  # Adam's moments were cut like the weights and kept training
        assert opt.state[p]["exp_avg"].shape == p.shape and opt.state[p]["step"] > 0
    assert model(x).shape == (128, 2)


def test_optimizer_state_is_sliced_along_the_kept_channels():
    model = _model()
    x, y = _data()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    F.cross_entropy(model(x), y).backward()
    opt.step()
    momentum = opt.state[model[0].weight]["momentum_buffer"].clone()
    pruner = L1NormPruner(model, [{"op_names": ["0"], "sparse_ratio": 0.5}])
    pruner.compress()
    kept = torch.nonzero(pruner.get_masks()["0"]["weight"][:, 0]).reshape(-1)
    from torchslim.pruning.shrinking import shrink_round

    shrink_round(pruner, x[:2], [opt])
    assert torch.equal(opt.state[model[0].weight]["momentum_buffer"], momentum[kept])


def test_nni_v2_form_with_speedup():
    model = _model()
    x, y = _data()

    def trainer(model, optimizer, criterion, epoch):
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()

    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    pruner = AGPPruner(model, CFG, opt, trainer, F.cross_entropy, num_iterations=2, epochs_per_iteration=1,
                       pruning_algorithm="l1", dummy_input=x[:2], speedup=True)
    result = pruner.compress()
    assert model[0].out_features == 4 and result(x).shape == (128, 2)


def test_speedup_without_dummy_input_is_a_clear_error():
    model = _model()
    x, y = _data()
    ev = TorchEvaluator.from_dataloader(DataLoader(TensorDataset(x, y), batch_size=16),
                                        torch.optim.SGD(model.parameters(), lr=0.1))
    schedule = LinearPruner(L1NormPruner(model, CFG), interval_steps=2, total_times=2, evaluator=ev, speedup=True)
    with pytest.raises(ValueError, match="dummy_input"):
        schedule.compress(max_steps=4)
