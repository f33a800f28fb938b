"""Embedded datasets (no download at run time)."""
from torchslim.datasets.mnist import MNIST_MEAN, MNIST_STD, load_mnist, mnist_loaders

__all__ = ["MNIST_MEAN", "MNIST_STD", "load_mnist", "mnist_loaders"]
