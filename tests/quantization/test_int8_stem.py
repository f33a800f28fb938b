"""The space-to-depth rewrite of a strided 3-channel int8 stem convolution (onnxruntime backend)."""
import numpy as np
import pytest
import torch
from torch import nn

from torchslim.quantization import PtqQuantizer, deploy

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

CFG = [{"op_types": ["Conv2d", "Linear"], "target_names": ["_input_"], "quant_dtype": "int8"},
       {"op_types": ["Conv2d", "Linear"], "target_names": ["weight"], "quant_dtype": "int8", "quant_scheme": "symmetric",
        "granularity": "per_channel"}]


def stem_net(kernel=7, stride=2, padding=3):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, kernel, stride, padding, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 10)).eval()


def images(size, seed, batch=4):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def build(model, size, tmp_path, **kwargs):
    _, calibration = PtqQuantizer(model, CFG, bn_folding=True).compress([images(size, s) for s in range(2)])
    name = "s2d" if kwargs.get("space_to_depth", True) else "plain"
    return deploy(model, calibration, images(size, 0), backend="onnxruntime", onnx_path=tmp_path / f"{name}.onnx",
                  **kwargs)


@pytest.mark.parametrize("size", [32, 33])  # even and odd input sizes (the odd one needs extra padding)
def test_space_to_depth_stem_is_bit_identical(tmp_path, size):
    model = stem_net()
    rewritten, plain = build(model, size, tmp_path), build(model, size, tmp_path, space_to_depth=False)
    assert any("space-to-depth" in r["source"] for r in rewritten.report)
    ops = {n.op_type for n in onnx.load(str(rewritten.path)).graph.node}
    assert "SpaceToDepth" in ops
    x = images(size, 5)
    assert torch.equal(rewritten(x), plain(x))
    assert not torch.equal(rewritten(x), rewritten(images(size, 6)))  # depends on its input


def test_space_to_depth_mutation_is_caught(tmp_path):
    """Swapping two pixel-phase blocks of the rearranged weights must change the output."""
    from onnx import numpy_helper

    from torchslim.quantization.int8.onnx_qdq import OnnxRuntimeInt8Model

    model = stem_net()
    rewritten, plain = build(model, 32, tmp_path), build(model, 32, tmp_path, space_to_depth=False)
    proto = onnx.load(str(rewritten.path))
    weights = [i for i in proto.graph.initializer if numpy_helper.to_array(i).ndim == 4 and numpy_helper.to_array(i).shape[1] == 12]
    w = numpy_helper.to_array(weights[0]).copy()
    w[:, 3:6], w[:, 6:9] = w[:, 6:9].copy(), w[:, 3:6].copy()  # pixel (0, 1) <-> (1, 0)
    weights[0].CopyFrom(numpy_helper.from_array(w, weights[0].name))
    onnx.save(proto, str(tmp_path / "broken.onnx"))
    broken = OnnxRuntimeInt8Model(tmp_path / "broken.onnx")
    x = images(32, 5)
    assert not np.allclose(broken(x).numpy(), plain(x).numpy(), atol=1e-3)


def test_stems_it_does_not_pay_for_are_left_alone(tmp_path):
    # 3x3/2: the rounded-up 2x2 kernel over 12 channels adds 78% multiply-adds (MobileNetV2's stem)
    model = stem_net(kernel=3, padding=1)
    deployed = build(model, 32, tmp_path)
    assert not any("space-to-depth" in r["source"] for r in deployed.report)
    assert "SpaceToDepth" not in {n.op_type for n in onnx.load(str(deployed.path)).graph.node}
