"""Pruner → quantizer → distiller on one model: one hook order, one training run, one unwrap."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchslim import TorchEvaluator
from torchslim.distillation import DynamicLayerwiseDistiller
from torchslim.pruning import AGPPruner, L1NormPruner
from torchslim.quantization import QATQuantizer

X = torch.randn(8, 6, generator=torch.Generator().manual_seed(0))


def setup(order):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))
    teacher = copy.deepcopy(model)
    ev = TorchEvaluator.from_dataloader([(X, torch.randint(0, 4, (8,)))], torch.optim.SGD(model.parameters(), lr=0.0))
    pruner = L1NormPruner(model, [{"op_names": ["0"], "sparse_ratio": 0.5, "granularity": "fine"}])
    pruner.evaluator = ev
    q_config = [{"op_names": ["0"], "target_names": ["_input_", "weight", "_output_"], "quant_dtype": "int8"}]
    d_config = [{"op_names": ["0"], "target_names": ["weight", "_input_", "_output_"]}]
    if order == "pqd":
        quantizer = QATQuantizer.from_compressor(pruner, q_config)
        last = DynamicLayerwiseDistiller.from_compressor(quantizer, d_config, teacher, lambda b, t: t(b[0]))
    else:  # the distiller built before the quantizer: the order on the module stays the same
        distiller = DynamicLayerwiseDistiller.from_compressor(pruner, d_config, teacher, lambda b, t: t(b[0]))
        last = quantizer = QATQuantizer.from_compressor(distiller, q_config)
    return model, pruner, quantizer, last


@pytest.mark.parametrize("order", ["pqd", "pdq"])
def test_distiller_reads_masked_then_fake_quantized_tensors(order):
    model, pruner, quantizer, last = setup(order)
    distiller = last if order == "pqd" else last.previous
    seen = {}
    real_loss = distiller.distill_loss

    def spy(batch):
        seen.update({key: value.detach().clone() for key, value in distiller.student.values.items()})
        return real_loss(batch)

    distiller.distill_loss = spy
    last.compress(max_steps=1)
    mask = pruner.get_masks()["0"]["weight"]
    weight = seen[("0", "weight")]
    assert torch.all(weight[mask == 0] == 0)  # 1. mask
    state = quantizer.states["0"]
    scale = state.targets["weight"].export()["scale"]
    assert torch.allclose(weight / scale, torch.round(weight / scale), atol=1e-3)  # 2. fake-quant weight grid
    assert not torch.equal(weight, model[0].weight.detach() * mask)
    in_scale = state.targets["_input_0"].export()["scale"]
    inp = seen[("0", "_input_0")]
    assert torch.allclose(inp / in_scale, torch.round(inp / in_scale), atol=1e-3)  # 3. distilled: quantized input
    out_scale = state.targets["_output_0"].export()["scale"]
    out = seen[("0", "_output_0")]
    assert torch.allclose(out / out_scale, torch.round(out / out_scale), atol=1e-3)


def test_unwrap_on_the_last_unwraps_all_and_masks_survive():
    model, pruner, quantizer, distiller = setup("pqd")
    distiller.compress(max_steps=1)
    before = pruner.get_masks()
    distiller.unwrap_model()
    distiller.unwrap_teacher_model()
    for module in model.modules():
        assert not module._forward_pre_hooks and not module._forward_hooks
    after = pruner.get_masks()  # NNI's pipelines call it after unwrap_model()
    assert after.keys() == before.keys() and torch.equal(after["0"]["weight"], before["0"]["weight"])
    assert set(quantizer.get_calibration_config()) == {"0"}


def test_a_schedule_quantizer_and_distiller_train_in_one_run():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))
    teacher = copy.deepcopy(model)
    steps = []

    def step(batch, model):
        steps.append(1)
        return F.cross_entropy(model(batch[0]), batch[1])

    data = [(X, torch.randint(0, 4, (8,)))] * 3
    ev = TorchEvaluator.from_dataloader(data, torch.optim.Adam(model.parameters(), 1e-3), step)
    pruner = AGPPruner(L1NormPruner(model, [{"op_names": ["0"], "sparse_ratio": 0.5}]), 2, 3, evaluator=ev)
    quantizer = QATQuantizer.from_compressor(pruner, [{"op_names": ["0", "2"], "quant_dtype": "int8"}],
                                             quant_start_step=2)
    distiller = DynamicLayerwiseDistiller.from_compressor(quantizer, [{"op_names": ["2"], "lambda": 0.1}], teacher,
                                                          lambda b, t: t(b[0]), 0.1)
    assert distiller.chain() == [pruner, quantizer, distiller]
    distiller.compress(max_steps=8)
    assert len(steps) == 8 and pruner.frozen
    assert distiller.last_losses
    distiller.unwrap_model()
    assert round(1 - float(pruner.get_masks()["0"]["weight"].mean()), 2) == 0.5


def test_a_failing_training_run_leaves_no_hook_behind():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))
    teacher = copy.deepcopy(model)

    def loop(model, optimizer, training_step, schedulers, max_steps, max_epochs):
        optimizer.zero_grad()
        training_step((X, torch.zeros(8, dtype=torch.long)), model).backward()
        optimizer.step()
        raise RuntimeError("the user's loop failed")

    ev = TorchEvaluator(loop, torch.optim.SGD(model.parameters(), lr=0.1),
                        lambda batch, model: F.cross_entropy(model(batch[0]), batch[1]))
    pruner = AGPPruner(L1NormPruner(model, [{"op_names": ["0"], "sparse_ratio": 0.5}]), 1, 4, evaluator=ev)
    distiller = DynamicLayerwiseDistiller.from_compressor(pruner, [{"op_names": ["2"]}], teacher, lambda b, t: t(b[0]))
    with pytest.raises(RuntimeError, match="loop failed"):
        distiller.compress(max_steps=10)
    assert not ev._loss_patches and not ev._after  # nothing left on the evaluator
    assert not model[2]._forward_hooks and not teacher[2]._forward_hooks
    assert pruner.times_done == 1  # aborted: not pruned to the final sparsity
