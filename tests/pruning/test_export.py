"""export_model: weights with masks folded in, masks, and an ONNX graph onnxruntime runs."""
import numpy as np
import pytest
import torch

from torchslim.models import LeNet
from torchslim.pruning import L1NormPruner


def test_export_model_writes_weights_masks_and_onnx(tmp_path):
    model = LeNet().eval()
    pruner = L1NormPruner(model, [{"op_types": ["Conv2d", "Linear"], "exclude_op_names": ["fc2"], "sparse_ratio": 0.5}])
    pruner.compress()
    pruner.export_model(tmp_path / "model.pth", tmp_path / "mask.pth", tmp_path / "model.onnx", input_shape=[1, 1, 28, 28])

    state = torch.load(tmp_path / "model.pth")
    assert set(state) == set(LeNet().state_dict())  # plain keys, no mask buffers
    masks = torch.load(tmp_path / "mask.pth")
    assert torch.count_nonzero(state["conv1.weight"] * (1 - masks["conv1"]["weight"])) == 0

    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    x = torch.randn(4, 1, 28, 28)
    (onnx_out,) = session.run(None, {"input": x.numpy()})
    np.testing.assert_allclose(onnx_out, model(x).detach().numpy(), rtol=1e-4, atol=1e-4)
    # the user's model is still masked and usable after export
    assert pruner.get_masks().keys() == masks.keys()


def test_export_onnx_needs_a_shape(tmp_path):
    pruner = L1NormPruner(LeNet(), [{"op_types": ["Conv2d"], "sparse_ratio": 0.5}])
    pruner.compress()
    with pytest.raises(ValueError, match="input_shape"):
        pruner.export_model(tmp_path / "m.pth", onnx_path=tmp_path / "m.onnx")
