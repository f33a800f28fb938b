"""Small reference models used by the demo, tests and benchmarks."""
from torchslim.models.lenet import LeNet, LeNet5

__all__ = ["LeNet", "LeNet5"]
