"""Model-space building blocks (NNI's ``nni.nas.nn.pytorch``)."""
from torchslim.nas.nn.base import ModelSpace, Mutable
from torchslim.nas.nn.cell import Cell
from torchslim.nas.nn.choice import InputChoice, LayerChoice
from torchslim.nas.nn.layers import (
    MutableBatchNorm2d, MutableConv2d, MutableDropout, MutableLayerNorm, MutableLinear,
)
from torchslim.nas.nn.repeat import Repeat

__all__ = ["ModelSpace", "Mutable", "LayerChoice", "InputChoice", "Repeat", "Cell",
           "MutableLinear", "MutableConv2d", "MutableDropout", "MutableBatchNorm2d",
           "MutableLayerNorm"]
