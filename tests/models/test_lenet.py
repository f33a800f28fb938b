"""The MNIST nets have the documented structure and parameter counts."""
import torch

from torchslim.models import LeNet, LeNet5
from torchslim.utils.metrics import count_params


def test_lenet_structure():
    model = LeNet()
    assert (model.conv1.in_channels, model.conv1.out_channels, model.conv2.out_channels) == (1, 20, 50)
    assert (model.fc1.in_features, model.fc1.out_features, model.fc2.out_features) == (800, 500, 10)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_lenet5_matches_the_seeds():
    model = LeNet5()
    assert count_params(model) == 44_426
    assert {"relu1", "relu2", "maxpool"} <= {n for n, _ in model.named_modules()}
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
