"""Outputs of any structure: channels reaching a dict / tuple / list / dataclass / ModelOutput
are kept; torchvision segmentation and detection models shrink with outputs verified."""
import dataclasses
from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import nn

from torchslim.pruning import L1NormPruner, auto_set_dependency_group_ids
from torchslim.speedup import ModelSpeedup
from torchslim.utils.metrics import count_params


@dataclasses.dataclass
class Out:
    logits: torch.Tensor
    extra: tuple


class Heads(nn.Module):
    def __init__(self, wrap: str) -> None:
        super().__init__()
        self.wrap = wrap
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.seg = nn.Conv2d(16, 5, 1)
        self.aux = nn.Conv2d(16, 3, 1)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        seg, aux = self.seg(h), self.aux(h)
        if self.wrap == "dict":
            return OrderedDict(out=seg, aux=aux)
        if self.wrap == "nested":
            return [seg, {"aux": (aux, h.sum())}]
        if self.wrap == "dataclass":
            return Out(seg, (aux,))
        from transformers.modeling_outputs import SemanticSegmenterOutput

        return SemanticSegmenterOutput(logits=seg, hidden_states=(aux,))


@pytest.mark.parametrize("wrap", ["dict", "nested", "dataclass", "model_output"])
def test_output_channels_are_kept_in_any_structure(wrap):
    torch.manual_seed(0)
    model = Heads(wrap).eval()
    _, masks = L1NormPruner(model, [{"op_types": ["Conv2d"], "sparse_ratio": 0.5}]).compress()
    speedup = ModelSpeedup(model, torch.randn(1, 3, 8, 8), masks)
    speedup.speedup_model()  # the check compares every tensor of the structure
    assert (model.seg.out_channels, model.aux.out_channels) == (5, 3)  # outputs keep their shape
    assert model.stem.out_channels == 8
    names = {r.name for r in speedup.report.layers}
    assert {"seg", "aux"} <= names and {r.name for r in speedup.report.shortfalls()} == {"seg", "aux"}


def calibrated(model, size):
    """Random init with BatchNorm statistics of real activations, so outputs depend on the input."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a plain average of the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(2, 3, size, size))
    return model.eval()


def _prune(model, x):
    config = auto_set_dependency_group_ids(model, [{"op_types": ["Conv2d", "Linear"], "sparse_ratio": 0.3}], x)
    _, masks = L1NormPruner(model, config).compress()
    return masks


@pytest.mark.parametrize("name", ["fcn_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"])
def test_segmentation_models_shrink(name):
    torch.manual_seed(0)
    model = calibrated(torchvision.models.get_model(name, weights=None, weights_backbone=None, num_classes=21), 64)
    x = torch.randn(1, 3, 64, 64)
    masks = _prune(model, x)
    before = count_params(model)
    speedup = ModelSpeedup(model, x, masks)
    speedup.speedup_model()  # raises unless the shrunk output equals the masked reference
    assert count_params(model) < 0.6 * before and speedup.report.max_abs_diff is not None
    with torch.no_grad():
        out = model(x)["out"]
        assert out.shape == (1, 21, 64, 64)  # the 21-class head is whole
        assert not torch.allclose(out, model(torch.randn_like(x))["out"])  # the check was not vacuous


class Recorder:
    """Records every output of the named modules (speedup's first run is the masked reference on
    its dummy input)."""

    def __init__(self, model, names):
        self.seen = {n: [] for n in names}
        self.handles = [model.get_submodule(n).register_forward_hook(
            lambda m, a, o, n=n: self.seen[n].append(o)) for n in names]

    def remove(self):
        for h in self.handles:
            h.remove()


@pytest.mark.parametrize("name, size, heads", [
    ("ssdlite320_mobilenet_v3_large", 320, ["head"]),
    ("fasterrcnn_mobilenet_v3_large_fpn", 128, ["rpn.head", "roi_heads.box_predictor"]),
])
def test_detection_models_shrink(name, size, heads):
    from torchslim.speedup.verify import close, flat_tensors

    torch.manual_seed(0)
    kwargs = {"min_size": size, "max_size": size} if "rcnn" in name else {}
    model = torchvision.models.get_model(name, weights=None, weights_backbone=None, **kwargs).eval()
    calibrated(model.backbone, size)
    x = torch.randn(1, 3, size, size)
    masks = _prune(model, x)
    before = count_params(model)
    recorder = Recorder(model, heads)
    ModelSpeedup(model, x, masks).speedup_model()  # checks the detections (random init: few, near ties)
    reference = {n: seen[0] for n, seen in recorder.seen.items()}  # speedup's first run: the masked model on x
    with torch.no_grad():
        model(x)
        model(torch.randn_like(x))  # another input
    recorder.remove()
    assert count_params(model) < 0.8 * before
    # so the boxes' inputs are compared too: the heads' outputs, masked reference vs shrunk
    for n in heads:
        ref, out, other = (flat_tensors(o) for o in (reference[n], *recorder.seen[n][-2:]))
        assert len(ref) == len(out) and all(close(r, o, 1e-3, 1e-6) for r, o in zip(ref, out)), n
        if n == heads[0]:  # random-init box heads barely see the input; the first head does
            assert not all(torch.allclose(r, a) for r, a in zip(ref, other) if r.shape == a.shape), n
