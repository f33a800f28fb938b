"""The quantization family's NNI boundary: legacy names, call forms and the v2 custom-gradient form.

The core :class:`~torchslim.quantization.base.Quantizer` keeps one typed constructor::

    Quantizer(model, config_list, evaluator=None, quant_start_step=0, *, optimizer=None, dummy_input=None,
              bn_folding=False)

and its metaclass sends each call here first (:func:`quantizer_call`). v2's ``(model, config_list,
optimizer, dummy_input)`` and v1's ``QAT_Quantizer`` are translated with one ``DeprecationWarning``
naming the modern form. Kept import-light: the package ``__init__`` reads :data:`ALIASES`.
"""
from __future__ import annotations

import inspect
from typing import Any

from torchslim.utils.legacy import deprecated, first_arg_unwrapped

# renamed public names: old -> (module, modern name)
ALIASES: dict[str, tuple[str, str]] = {
    "QAT_Quantizer": ("torchslim.quantization.quantizers", "QATQuantizer"),
}

# renamed attributes of a quantizer object: old -> modern
ATTRIBUTES = {"bound_model": "model"}

_MODERN_ARGS = "(model, config_list, TorchEvaluator(training_func, optimizer, training_step), quant_start_step)"


def quantizer_call(cls: type, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
    """Translate a call of a quantizer class to its typed signature."""
    import torch

    args, kwargs = first_arg_unwrapped(args, kwargs)
    evaluator = args[2] if len(args) > 2 else kwargs.get("evaluator")
    if isinstance(evaluator, torch.optim.Optimizer):
        deprecated(f"{cls.__name__}(model, config_list, optimizer, ...)",
                   f"{cls.__name__}{_MODERN_ARGS}, or optimizer= to train it yourself")
        if len(args) > 2:
            args[2] = None
        else:
            kwargs["evaluator"] = None
        kwargs["optimizer"] = evaluator
    step = args[3] if len(args) > 3 else None
    if isinstance(step, torch.Tensor):
        deprecated(f"{cls.__name__}(model, config_list, optimizer, dummy_input)",
                   f"{cls.__name__}(model, config_list, evaluator, dummy_input=dummy_input)")
        kwargs["dummy_input"] = args.pop(3)
    return tuple(args), kwargs


def quant_grad(grad: type) -> type:
    """A :class:`QuantGrad` subclass whose ``quant_backward`` has v1's 3 arguments
    ``(tensor, grad_output, quant_type)`` becomes one with the 7 the core passes."""
    method = inspect.getattr_static(grad, "quant_backward", None)
    func = method.__func__ if isinstance(method, (staticmethod, classmethod)) else method
    if func is None:
        return grad
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return grad
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if isinstance(method, classmethod):
        positional = positional[1:]
    if len(positional) != 3 or any(p.kind is p.VAR_POSITIONAL for p in params):
        return grad
    deprecated(f"{grad.__name__}.quant_backward(tensor, grad_output, quant_type)",
               "quant_backward(tensor, grad_output, quant_type, scale, zero_point, qmin, qmax)")
    legacy = grad.quant_backward

    def quant_backward(tensor, grad_output, quant_type, scale, zero_point, qmin, qmax):  # noqa: ANN001
        return legacy(tensor, grad_output, quant_type)

    return type(grad.__name__, (grad,), {"quant_backward": staticmethod(quant_backward),
                                         "__doc__": grad.__doc__, "__module__": grad.__module__})


__all__ = ["ALIASES", "ATTRIBUTES", "quant_grad", "quantizer_call"]
