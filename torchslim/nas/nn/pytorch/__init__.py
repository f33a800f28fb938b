"""Alias of :mod:`torchslim.nas.nn`, so ``nni.nas.nn.pytorch`` imports map one to one."""
from torchslim.nas.nn import *  # noqa: F401,F403
from torchslim.nas.nn import __all__  # noqa: F401
