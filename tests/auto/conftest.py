import pytest
import torch

from torchslim.auto.mnist import mnist_splits
from torchslim.models import LeNet5
from torchslim.utils.training import train_epochs


@pytest.fixture(scope="package")
def mnist_small():
    """A 1,600/400 train/validation split of the embedded MNIST training part, and the test split."""
    return mnist_splits(seed=0, limit=2000)


@pytest.fixture(scope="package")
def trained_lenet5(mnist_small):
    torch.manual_seed(0)
    model = LeNet5()
    train_epochs(model, mnist_small[0], 2, lr=2e-3, seed=0)
    return model.eval()
