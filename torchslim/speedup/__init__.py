"""Speedup: turn masks into a physically smaller, faster model (checked against the masked one)."""
from torchslim.speedup import attention as _attention  # noqa: F401  (registers head shrinkers)
from torchslim.speedup.attention import SlimMultiheadAttention
from torchslim.speedup.core import ModelSpeedup
from torchslim.speedup.report import LayerRow, SpeedupReport
from torchslim.speedup.shrink import register_shrinker

__all__ = ["SlimMultiheadAttention", "LayerRow", "ModelSpeedup", "SpeedupReport", "register_shrinker"]
