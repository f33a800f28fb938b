"""Speedup refuses bad masks before touching the model, and a failed speedup leaves model and
pruner exactly as they were (masks still attached and still enforced)."""
from __future__ import annotations

import pytest
import torch

from torchslim.errors import SpeedupError
from torchslim.masking import get_masks
from torchslim.models import LeNet5
from torchslim.pruning import L1NormPruner
from torchslim.speedup import ModelSpeedup

CONFIG = [{"op_types": ["Linear", "Conv2d"], "sparse_ratio": 0.5}, {"op_names": ["fc3"], "exclude": True}]
X = torch.randn(1, 1, 28, 28)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_untouched(model, before, masks_before):
    after = model.state_dict()
    assert list(after) == list(before)
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    for name, module in model.named_modules():
        assert {t: m.clone() for t, m in get_masks(module).items()}.keys() == masks_before[name].keys()
        for t, m in get_masks(module).items():
            assert torch.equal(m, masks_before[name][t])


def _masked_lenet():
    torch.manual_seed(0)
    model = LeNet5()
    pruner = L1NormPruner(model, CONFIG)
    _, masks = pruner.compress()
    masks_before = {n: {t: m.clone() for t, m in get_masks(mod).items()}
                    for n, mod in model.named_modules()}
    return model, pruner, masks, masks_before


def _bad(masks, kind):
    bad = {n: dict(t) for n, t in masks.items()}
    name = next(iter(bad))
    weight = bad[name]["weight"]
    if kind == "misspelt target":
        bad[name]["wieght"] = bad[name].pop("weight")
    elif kind == "unknown module":
        bad["conv9"] = bad.pop(name)
    elif kind == "wrong shape":
        bad[name]["weight"] = weight[:1]
    elif kind == "not binary":
        bad[name]["weight"] = weight * 0.5
    elif kind == "not a tensor":
        bad[name]["weight"] = weight.tolist()
    elif kind == "complex":
        bad[name]["weight"] = weight.to(torch.complex64)
    elif kind == "not a dict":
        bad[name] = weight
    return bad


@pytest.mark.parametrize("kind", ["misspelt target", "unknown module", "wrong shape", "not binary",
                                  "not a tensor", "complex", "not a dict"])
def test_bad_masks_are_refused_before_the_model_changes(kind):
    model, _, masks, masks_before = _masked_lenet()
    before = _state(model)
    with pytest.raises(SpeedupError) as info:
        ModelSpeedup(model, X, _bad(masks, kind)).speedup_model()
    if kind == "misspelt target":
        assert "'wieght'" in str(info.value) and "its tensors: weight, bias" in str(info.value)
    _assert_untouched(model, before, masks_before)


def test_integer_and_bool_masks_are_accepted():
    model, _, masks, _ = _masked_lenet()
    as_bool = {n: {t: m.bool() for t, m in ts.items()} for n, ts in masks.items()}
    ModelSpeedup(model, X, as_bool).speedup_model()
    assert model.conv1.out_channels == 3


def test_a_failure_mid_shrink_restores_model_and_pruner(monkeypatch):
    from torchslim.speedup import shrink

    model, pruner, masks, masks_before = _masked_lenet()
    before = _state(model)
    params = {n: p for n, p in model.named_parameters()}
    calls = []

    def explode(module, keep):  # the second linear layer fails, after others were shrunk
        calls.append(module)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return original(module, keep)

    original = shrink.SHRINKERS["linear"]
    monkeypatch.setitem(shrink.SHRINKERS, "linear", explode)
    with pytest.raises(RuntimeError, match="boom"):
        ModelSpeedup(model, X, masks).speedup_model()
    _assert_untouched(model, before, masks_before)
    assert all(p is params[n] for n, p in model.named_parameters())  # same Parameter objects
    # the pruner still enforces its masks: a training step keeps pruned weights at zero
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    model(torch.randn(4, 1, 28, 28)).sum().backward()
    opt.step()
    for name, targets in masks_before.items():
        module = model.get_submodule(name)
        for target, mask in targets.items():
            assert torch.all(getattr(module, target)[mask == 0] == 0), name
    assert pruner.get_masks().keys() == masks.keys()


def test_a_mismatch_restores_the_masks_too(monkeypatch):
    from torchslim.speedup import shrink

    model, _, masks, masks_before = _masked_lenet()
    before = _state(model)

    def wrong_linear(module, keep):  # keeps the right count, but the wrong channels
        keep = {s: torch.arange(i.numel()) for s, i in keep.items()}
        return original(module, keep)

    original = shrink.SHRINKERS["linear"]
    monkeypatch.setitem(shrink.SHRINKERS, "linear", wrong_linear)
    with pytest.raises(SpeedupError, match="does not match the masked model"):
        ModelSpeedup(model, X, masks).speedup_model()
    _assert_untouched(model, before, masks_before)


def test_load_with_a_model_reads_tensors_only(tmp_path):
    from torchslim.speedup import load, save
    from torchslim.speedup.serialize import FORMAT

    model, _, masks, _ = _masked_lenet()
    ModelSpeedup(model, X, masks).speedup_model()
    save(model, tmp_path / "slim.pt")
    fresh = load(tmp_path / "slim.pt", model=LeNet5())
    with torch.no_grad():
        torch.testing.assert_close(fresh(X), model(X), rtol=0, atol=0)
    with pytest.raises(ValueError, match="weights_only=False"):
        load(tmp_path / "slim.pt")  # the pickled module only on request
    # a crafted file: a payload that would run code when unpickled
    marker = tmp_path / "pwned"
    evil = {"format": FORMAT, "state_dict": {}, "spec": {}, "module": b"", "x": _Payload(marker)}
    torch.save(evil, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="more than tensors"):
        load(tmp_path / "evil.pt", model=LeNet5())
    assert not marker.exists()


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))
