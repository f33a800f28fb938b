"""Moved to :mod:`torchslim.compression.granularity` (quantization shares it); kept importable here."""
from torchslim.compression.granularity import block_sizes, channel_dim, expand_mask, is_structured, to_units

__all__ = ["block_sizes", "channel_dim", "expand_mask", "is_structured", "to_units"]
