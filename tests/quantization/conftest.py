import copy

import pytest
import torch
from torch.utils.data import Subset

from torchslim.datasets import load_mnist
from torchslim.models import LeNet5
from torchslim.utils.training import train_epochs


@pytest.fixture(scope="session")
def mnist():
    return load_mnist()


@pytest.fixture(scope="session")
def _trained_lenet5(mnist):
    torch.manual_seed(0)
    model = LeNet5()
    train_epochs(model, Subset(mnist[0], range(4000)), 1, lr=3e-3, batch_size=32)  # ~92% in a few seconds
    return model.eval()


@pytest.fixture
def trained_lenet5(_trained_lenet5):
    """A LeNet5 trained briefly on the shipped MNIST split (a fresh copy per test)."""
    return copy.deepcopy(_trained_lenet5)
