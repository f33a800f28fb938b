"""Speedup: turn masks into a physically smaller, faster model (checked against the masked one)."""
from torchslim.speedup import attention as _attention  # noqa: F401  (registers head shrinkers)
from torchslim.speedup.attention import SlimMultiheadAttention
from torchslim.speedup.channel_map import ChannelMap, LayerChannels, model_channel_map
from torchslim.graph.kinds import ModuleKind, register_module_kind
from torchslim.speedup.core import ModelSpeedup
from torchslim.speedup.report import LayerRow, SpeedupReport
from torchslim.speedup.serialize import apply_spec, load, save
from torchslim.speedup.shrink import register_shrinker

__all__ = ["ChannelMap", "LayerChannels", "LayerRow", "ModelSpeedup", "ModuleKind", "register_module_kind", "SlimMultiheadAttention", "SpeedupReport", "apply_spec", "load", "model_channel_map",
           "register_shrinker", "save"]
