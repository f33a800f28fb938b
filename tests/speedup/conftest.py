import torch
from torch import nn

from tests.graph.conftest import one_thread  # noqa: F401  (autouse: one thread per test)


def randomize_norms(model: nn.Module, input_shape: tuple | None = None, seed: int = 1) -> nn.Module:
    """Trained-like norm layers (non-trivial scales and shifts; BatchNorm statistics calibrated
    on random batches of ``input_shape`` when given) and no zero-initialised layer (ViT's head):
    outputs then depend on the input, so a wrong channel shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.3)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            if isinstance(m, nn.Linear) and not bool(m.weight.any()):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * m.in_features ** -0.5)
        if input_shape is not None:
            norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration batches
            was_training = model.training
            model.train()
            for _ in range(2):
                model(torch.randn(*input_shape, generator=g))
            model.train(was_training)
            for m in norms:
                m.momentum = 0.1
    return model
