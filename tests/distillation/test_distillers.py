"""Each distiller's loss on constructed cases: known student/teacher tensors → known loss."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchslim import TorchEvaluator
from torchslim.distillation import (
    Adaptive1dLayerwiseDistiller, DynamicLayerwiseDistiller, LogitsDistiller, kl,
)
from torchslim.errors import ConfigError


def linear(weight):
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    layer.weight.data.copy_(weight)
    return layer


class Student(nn.Module):
    def __init__(self, out=3):
        super().__init__()
        self.a = linear(torch.ones(3, 2))
        self.head = linear(torch.eye(out, 3))

    def forward(self, x):
        return self.head(self.a(x))


class Teacher(nn.Module):
    def __init__(self, out=3):
        super().__init__()
        self.a = linear(torch.zeros(out, 2))  # far from the student's a
        self.b = linear(torch.full((out, 2), 0.9))  # close to the student's a
        self.head = linear(torch.eye(3, out))

    def forward(self, x):
        return self.head(self.a(x) + self.b(x) * 0)


def evaluator(model, steps_seen=None, lr=0.0):
    def step(batch, model):
        return F.mse_loss(model(batch[0]), batch[1])

    def loop(model, optimizer, training_step, schedulers, max_steps, max_epochs):
        for _ in range(max_steps):
            optimizer.zero_grad()
            loss = training_step(BATCH, model)
            if steps_seen is not None:
                steps_seen.append(float(loss.detach()))
            loss.backward()
            optimizer.step()

    return TorchEvaluator(loop, torch.optim.SGD(model.parameters(), lr=lr), step)


X = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
BATCH = (X, torch.zeros(2, 3))


def predict(batch, teacher):
    return teacher(batch[0])


def test_dynamic_link_picks_the_closest_teacher_target_and_weights_the_losses():
    student, teacher = Student(), Teacher()
    seen = []
    config = [{"op_names": ["a"], "lambda": 0.5, "apply_method": "mse", "link": ["a", "b"]}]
    distiller = DynamicLayerwiseDistiller(student, config, evaluator(student, seen), teacher, predict, 0.1)
    distiller.compress(max_steps=1)
    with torch.no_grad():
        s, far, close = student.a(X), teacher.a(X), teacher.b(X)
        origin = F.mse_loss(student(X), BATCH[1])
    assert F.mse_loss(s, close) < F.mse_loss(s, far)
    expected_distill = F.mse_loss(s, close)
    assert distiller.last_losses[("a", "_output_0")] == pytest.approx(float(expected_distill))
    assert seen == [pytest.approx(float(0.1 * origin + 0.5 * expected_distill), rel=1e-6)]
    # hooks are gone after training: a plain forward records nothing
    assert not student.a._forward_hooks and not teacher.a._forward_hooks


def test_kl_and_callable_apply_methods():
    student, teacher = Student(), Teacher()
    teacher.a.weight.data.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    config = [{"op_names": ["a"], "apply_method": "kl", "temperature": 2.0},
              {"op_names": ["head"], "apply_method": lambda s, t: (s - t).abs().sum()}]
    distiller = DynamicLayerwiseDistiller(student, config, evaluator(student), teacher, predict, 1.0)
    distiller.compress(max_steps=1)
    with torch.no_grad():
        s, t = student.a(X), teacher.a(X)
        head = (student(X) - teacher(X)).abs().sum()
    manual = (F.softmax(t / 2, -1) * (F.log_softmax(t / 2, -1) - F.log_softmax(s / 2, -1))).sum(-1).mean() * 4
    assert distiller.last_losses[("a", "_output_0")] == pytest.approx(float(manual), rel=1e-5)
    assert float(kl(s, t, 2.0)) == pytest.approx(float(manual), rel=1e-5)
    assert distiller.last_losses[("head", "_output_0")] == pytest.approx(float(head))


def test_input_target_and_adaptive_linear_on_the_last_dim():
    student, teacher = Student(), Teacher(out=5)
    ev = evaluator(student)
    config = [{"op_names": ["a"], "target_names": ["_output_"], "apply_method": "mse"},
              {"op_names": ["head"], "target_names": ["_input_"], "link": "b"}]
    distiller = Adaptive1dLayerwiseDistiller(student, config, ev, teacher, predict, 1.0)
    groups_before = len(ev.optimizers[0].param_groups)
    distiller.compress(max_steps=1)
    adapter = distiller.adapters["a|_output_0"]
    assert isinstance(adapter, nn.Linear) and (adapter.in_features, adapter.out_features) == (3, 5)
    assert len(ev.optimizers[0].param_groups) == groups_before + 2  # the adapters train with the student
    with torch.no_grad():
        expected = F.mse_loss(adapter(student.a(X)), teacher.a(X))
    # the adapter took one (lr=0) step: its loss is the one computed with its current weights
    assert distiller.last_losses[("a", "_output_0")] == pytest.approx(float(expected), rel=1e-5)
    # head's input (student a's output, 3 wide) vs teacher b's input (the raw x, 2 wide)
    assert isinstance(distiller.adapters["head|_input_0"], nn.Linear)


def test_logits_distiller_is_temperature_scaled_kl():
    student, teacher = Student(), Teacher()
    teacher.a.weight.data.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    distiller = LogitsDistiller(student, evaluator(student), teacher, predict, 0.5, temperature=3.0, kd_lambda=2.0)
    distiller.compress(max_steps=1)
    with torch.no_grad():
        s, t = student(X), teacher(X)
    manual = (F.softmax(t / 3, -1) * (F.log_softmax(t / 3, -1) - F.log_softmax(s / 3, -1))).sum(-1).mean() * 9
    assert distiller.last_losses[("", "_output_0")] == pytest.approx(float(manual), rel=1e-5)


def test_config_errors_name_the_users_keys():
    student, teacher = Student(), Teacher()
    ev = evaluator(student)
    with pytest.raises(ConfigError, match="link"):
        DynamicLayerwiseDistiller(student, [{"op_names": ["a"], "link": "nope"}], ev, teacher, predict)
    with pytest.raises(ConfigError, match="apply_method"):
        DynamicLayerwiseDistiller(student, [{"op_names": ["a"], "apply_method": "l2"}], ev, teacher, predict)
    with pytest.raises(ConfigError, match="one teacher target"):
        Adaptive1dLayerwiseDistiller(student, [{"op_names": ["a"], "link": ["a", "b"]}], ev, teacher, predict)
    with pytest.raises(ConfigError, match="origin_loss_lambda"):
        DynamicLayerwiseDistiller(student, [{"op_names": ["a"]}], ev, teacher, predict, -1)
    assert not student.a._forward_hooks
