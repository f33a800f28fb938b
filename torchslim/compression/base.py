"""What every compressor family (pruners, quantizers, distillers) shares.

* :class:`CompressResult`: the ``(model, result)`` pair ``compress()`` returns.
* :class:`Compressor`: the model, the evaluator, and the *chain* built with
  ``X.from_compressor(other, new_config_list, ...)``: compressors stacked on one model that
  train together in one ``compress()`` and are unwrapped together by ``unwrap_model()`` on
  the last of them.

A compressor that follows training steps (a schedule, movement pruning, QAT, a distiller)
implements ``start()`` (hook into the evaluator's training, without training) and
``finish()`` (unhook; optionally ``abort()``: unhook when training failed); the last compressor of a chain starts every earlier one, trains once
and finishes them, so the user's loop runs once for the whole schedule. One-shot
compressors earlier in the chain (an L1 pruner without masks yet) compress first.

Hook order on a module, whatever order the chain was built in: pruning masks are applied
first (the quantizer's pre-hook applies pending masks before quantizing), then fake
quantization, then distillation targets are read (distillers hook in at ``start()``, after
every other compressor attached its hooks) — see ``docs/fusion.md``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from torchslim.utils.inputs import example_input


class CompressResult(tuple):
    """``(model, masks)`` as NNI 3.0 returns; also usable as the model itself, as v2 code does
    (``model = pruner.compress(); model(x)``)."""

    def __new__(cls, model: nn.Module, masks: Any):
        return super().__new__(cls, (model, masks))

    def __getnewargs__(self) -> tuple[nn.Module, Any]:  # copy / deepcopy / pickle
        return tuple(self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self[0], name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self[0](*args, **kwargs)


def is_evaluator(obj: Any) -> bool:
    """Duck-typed check for a torchslim evaluator (``train`` + ``bind_model``)."""
    return hasattr(obj, "train") and hasattr(obj, "bind_model")


def shares_training(compressor: Any, evaluator: Any) -> bool:
    """Whether ``compressor`` can follow a training run driven through ``evaluator``."""
    return (hasattr(compressor, "start") and hasattr(compressor, "finish")
            and getattr(compressor, "evaluator", None) is evaluator)


class Compressor:
    """Mixin of the shared compressor protocol; concrete families set ``model``, ``evaluator``.

    ``previous`` is the compressor this one was chained after (``from_compressor``), or None.
    """

    model: nn.Module
    evaluator: Any = None
    previous: Any = None
    _previous_done: bool = False

    @classmethod
    def from_compressor(cls, compressor: Any, new_config_list: Sequence[Mapping[str, Any]], *args: Any,
                        evaluator: Any = None, **kwargs: Any) -> Any:
        """Chain a new compressor of this class after ``compressor``, on the same model and evaluator.

        The remaining arguments are this class's own after ``(model, config_list, evaluator)``,
        e.g. ``QATQuantizer.from_compressor(pruner, q_config, quant_start_step=100)`` or
        ``DynamicLayerwiseDistiller.from_compressor(quantizer, d_config, teacher, teacher_predict, 0.1)``.
        """
        evaluator = evaluator if evaluator is not None else getattr(compressor, "evaluator", None)
        new = cls(compressor.model, new_config_list, evaluator, *args, **kwargs)
        new.previous = compressor
        return new

    def chain(self) -> list[Any]:
        """The compressors of this chain, first built first, ending with ``self``."""
        out, node = [], self
        while node is not None:
            out.append(node)
            node = getattr(node, "previous", None)
        return out[::-1]

    def bind_evaluator(self) -> None:
        """Tell the evaluator which model its training function receives."""
        if self.evaluator is not None:
            self.evaluator.bind_model(self.model)

    # --- one training run for the whole chain ------------------------------------------------
    def prepare_previous(self, trains: bool) -> list[Any]:
        """Get the earlier compressors ready for this one's training run (once).

        With ``trains``, each earlier compressor that can follow the evaluator's training is
        started (and returned, to be finished after training); the others that have produced
        nothing yet (a one-shot pruner without masks) compress now.
        """
        if self._previous_done:
            return []
        self._previous_done = True
        started = []
        for comp in self.chain()[:-1]:
            if trains and shares_training(comp, self.evaluator):
                comp.start()
                started.append(comp)
            else:
                get_masks = getattr(comp, "get_masks", None)
                if get_masks is not None and not get_masks():
                    comp.compress()
        return started

    def train_chain(self, max_steps: int | None, max_epochs: int | None,
                    start: Callable[[], None], finish: Callable[[], None] = lambda: None) -> None:
        """One run of the user's loop for the whole chain: ``start`` this compressor after the
        earlier ones (so its hooks come after theirs), train, then finish in reverse order."""
        started = self.prepare_previous(trains=True)
        self.bind_evaluator()
        start()
        self.model.train()
        try:
            self.evaluator.train(max_steps, max_epochs)
        except BaseException:
            finish()
            for comp in reversed(started):  # unhook without completing (no final pruning step)
                getattr(comp, "abort", comp.finish)()
            raise
        finish()
        for comp in reversed(started):
            comp.finish()

    def unwrap_previous(self) -> None:
        """Unwrap the compressors this one was chained after (``unwrap_model`` on the last unwraps all)."""
        if self.previous is not None:
            self.previous.unwrap_model()

    # --- export skeleton ---------------------------------------------------------------------------
    def export_files(self, model_path: str | Path | None, state: Any, state_path: str | Path | None,
                     onnx_path: str | Path | None, input_shape: Sequence[int] | None, device: Any,
                     dummy_input: Any, plain: nn.Module | None = None,
                     onnx_export: Callable[[nn.Module, Any, Any], None] | None = None) -> Any:
        """Save the weights of ``plain`` (default: the model), ``state`` (masks, calibration config...)
        and, with ``onnx_path``, an ONNX graph written by ``onnx_export(model, dummy_input, path)``."""
        plain = self.model if plain is None else plain
        if model_path is not None:
            torch.save(plain.state_dict(), model_path)
        if state_path is not None:
            torch.save(state, state_path)
        if onnx_path is not None:
            if onnx_export is None:
                from torchslim.utils.onnx_export import export_onnx as onnx_export
            fallback = getattr(self, "dummy_input", None)
            dummy_input = example_input(dummy_input if dummy_input is not None else fallback, input_shape, device)
            if device is not None and plain is not self.model:  # never move the user's model
                plain = plain.to(device)
            onnx_export(plain, dummy_input, onnx_path)
        return state


__all__ = ["CompressResult", "Compressor", "is_evaluator", "shares_training"]
