"""timm models (structure only, random init): pruned 30% dependency-aware, shrunk == masked."""
import pytest
import torch

from torchslim.pruning import L1NormPruner, auto_set_dependency_group_ids
from torchslim.speedup import ModelSpeedup
from torchslim.utils.metrics import count_params

timm = pytest.importorskip("timm")


@pytest.mark.parametrize("name, kept", [("resnet18", 0.6), ("efficientnet_b0", 0.65), ("regnety_002", 0.65)])
def test_timm_model_shrinks(name, kept):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    last = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))][-1]
    config = [{"op_types": ["Conv2d", "Linear"], "sparse_ratio": 0.3}, {"op_names": [last], "exclude": True}]
    _, masks = L1NormPruner(model, auto_set_dependency_group_ids(model, config, x)).compress()
    before = count_params(model)
    speedup = ModelSpeedup(model, x, masks)
    speedup.speedup_model()  # checked against the masked model
    assert count_params(model) < kept * before
    assert model(x).shape == (1, 10)
