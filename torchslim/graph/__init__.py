"""Channel dependency graphs from torch.fx traces: coupling rules, groups, barriers."""
from torchslim.graph.engine import Barrier, Context, ModuleUse, analyze_part
from torchslim.graph.groups import analyze, channel_groups
from torchslim.graph.idspace import PIN, Chan, Space
from torchslim.graph.kinds import ModuleKind, get_kind, module_kinds, register_module_kind, unregister_module_kind
from torchslim.graph.module_rules import module_rule, register_module_rule
from torchslim.graph.rules import function_rule, method_rule, register_function_rule
from torchslim.graph.trace import SlimTracer, TraceResult, TracedPart, trace_model

__all__ = [
    "PIN", "Barrier", "Chan", "Context", "ModuleKind", "ModuleUse", "SlimTracer", "Space", "TraceResult", "TracedPart",
    "get_kind", "module_kinds", "register_module_kind", "unregister_module_kind",
    "analyze", "analyze_part", "channel_groups", "function_rule", "method_rule", "module_rule",
    "register_function_rule", "register_module_rule", "trace_model",
]
