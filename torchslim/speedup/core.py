"""ModelSpeedup: masks → a physically smaller model, checked against the masked one.

Steps: fold the masks into the weights → the *reference*: outputs of the user's model as
given (masks folded, nothing else touched) on several inputs → trace (fx, falling back to
submodules) → channel analysis (coupling, dead channels, barriers) → shrink modules in place →
compare outputs relative to their spread across inputs; on mismatch the model is restored and
:class:`~torchslim.errors.SpeedupError` names the first layer whose output differs.

The analysis takes a pruned channel to be zero after a per-channel module (BatchNorm,
depthwise conv, GroupNorm); pruners mask those modules' weight and bias with the channel, so
this holds. Where the user's model holds a non-zero value there instead, removing the channel
changes the output: the difference and its cause are reported (``strict=True`` raises), and
the shrunk model is checked against the model with those values zeroed.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from torchslim.errors import SpeedupError
from torchslim.graph.engine import Context, analyze_part, no_gc
from torchslim.graph.trace import call_model, trace_model
from torchslim.speedup.channel_map import ChannelMap, record_channel_map
from torchslim.speedup.report import LayerRow, SpeedupReport
from torchslim.speedup.literals import literal_spec, rewrite_literals, undo_literals
from torchslim.speedup import narrow
from torchslim.speedup.masks import RestorePoint, validate_masks
from torchslim.speedup.serialize import record_spec
from torchslim.speedup.shrink import SHRINKERS
from torchslim.speedup.verify import (CheckResult, OutputRecorder, Zero, chan_kept, check_inputs, compare_outputs,
                                     describe_zeros, first_divergence, run_outputs, unmasked_zeros, zeroed)

Masks = Mapping[str, Mapping[str, torch.Tensor]]
_NNI_OPTIONS = {"confidence", "batch_dim", "batch_size", "map_location", "logger", "garbage_collect_values",
                "customized_mask_updaters", "customized_replacers", "customized_replace_func", "graph_module"}


class ModelSpeedup:
    """Replace masked channels by physically smaller modules, in place.

    Parameters
    ----------
    model: the pruned model (masks attached by a pruner, or plain with ``masks`` given).
    dummy_input: a tensor, a tuple of positional inputs, or a dict of keyword inputs.
    masks: ``{module_name: {'weight': mask, 'bias': mask}}``, a path to a ``torch.save``-d
        masks file (NNI v2), or None to use the masks attached to ``model``.
    strict: raise :class:`SpeedupError` naming the node at the first op without a channel
        rule, instead of keeping it whole (a barrier) and reporting it; and when removing the
        pruned channels must change the output (a norm layer's shift left unmasked on them).
    round_to: keep a multiple of this many channels per layer (8/16 suit vector units).
    leaf_modules: module classes, class names or module paths not to trace into.
    autowrap_functions: functions recorded as single graph nodes (``torch.fx.wrap`` style).
    time_limit: seconds; the analysis stops with an error naming the node it reached.
    progress: True for a progress bar, or a callable ``(index, total, node_name)``.
    check: compare shrunk and masked outputs (on by default; never returns a wrong model).
    rtol: tolerance of that comparison, relative to how much each output varies across the
        check inputs; atol: an extra absolute tolerance (default 0).
    check_inputs: how many inputs the check uses: ``dummy_input`` and random inputs like it.
    narrow_normalized: narrow LayerNorm'd residual streams too (ViT, Swin, ConvNeXt; as
        Torch-Pruning does): the LayerNorms lose the removed channels from their statistics,
        weight and bias, and the stream's parameters (class token, position embedding, layer
        scale) are cut with them. Outputs then differ from the masked model:
        ``report.deviation`` says by how much (``strict=True`` raises instead), and the check
        compares with the masked model narrowed the same way (status ``"narrowed"``). Off by
        default: the stream is kept whole and speedup is exact. Give the same flag to
        ``auto_set_dependency_group_ids`` so the pruner masks the stream's layers together.
    """

    def __init__(self, model: nn.Module, dummy_input: Any, masks: Masks | str | Path | None = None, *,
                 strict: bool = False, round_to: int = 1, leaf_modules: Iterable[type | str] = (),
                 autowrap_functions: Iterable[Callable] = (), time_limit: float | None = None,
                 progress: bool | Callable[[int, int, str], None] = False, check: bool = True,
                 rtol: float = 1e-3, atol: float = 0.0, check_inputs: int = 4, narrow_normalized: bool = False,
                 **nni_options: Any) -> None:
        unknown = set(nni_options) - _NNI_OPTIONS
        if unknown:
            raise TypeError(f"ModelSpeedup got unexpected arguments: {', '.join(sorted(unknown))}")
        if nni_options:
            warnings.warn(f"ModelSpeedup ignores NNI options {sorted(nni_options)}: not needed here", stacklevel=2)
        if round_to < 1:
            raise ValueError(f"round_to must be >= 1, got {round_to}")
        self.model = model
        self.dummy_input = dummy_input
        self.masks = _load_masks(model, masks)
        self.strict = strict
        self.narrow_normalized = bool(narrow_normalized)
        self.round_to = round_to
        self.leaf_modules = tuple(leaf_modules)
        self.autowrap_functions = tuple(autowrap_functions)
        self.time_limit = time_limit
        self.progress = progress
        self.check = check
        self.rtol, self.atol = rtol, atol
        self.check_inputs = check_inputs
        self.report: SpeedupReport | None = None
        # after speedup_model: {layer: {slot: kept original indices}} and {layer: module kind}
        self.kept: dict[str, dict[str, torch.Tensor]] = {}
        self.kinds: dict[str, str] = {}
        self._literal_undo: list = []
        self._narrowing = narrow.Narrowing([], [])
        self._inputs: list[Any] = []
        self._reference_out: list[list[torch.Tensor]] = []
        self.channel_map: ChannelMap | None = None  # after speedup_model(): what every shrunk layer kept

    @property
    def node_infos(self) -> dict[Any, Any]:
        """NNI's view of :attr:`channel_map`: ``node_infos[node].output_masks / param_masks``."""
        if self.channel_map is None:
            raise RuntimeError("node_infos exist after speedup_model()")
        return self.channel_map.node_infos()

    def speedup_model(self) -> nn.Module:
        """Shrink the model in place and return it (raises SpeedupError if it would be wrong)."""
        model = self.model
        was_training = model.training
        model.eval()
        report = SpeedupReport()
        restore_point = RestorePoint(model)
        try:
            with no_gc():
                self._run(model, report)
        except BaseException:
            # whatever failed, the model and the masks its pruner attached are as they were
            restore_point.restore()
            raise
        finally:
            model.train(was_training)
        self.report = report
        return model

    # --- steps -------------------------------------------------------------------------------
    def _run(self, model: nn.Module, report: SpeedupReport) -> None:
        t0 = time.perf_counter()
        _fold_masks(model, self.masks)
        given = self._reference(model)
        t_ref = time.perf_counter() - t0
        traced = trace_model(model, self.dummy_input, leaf_modules=self.leaf_modules,
                             autowrap_functions=self.autowrap_functions)
        report.untraced = traced.untraced
        report.trace_s = time.perf_counter() - t0 - t_ref
        ctx = Context(self.masks, strict=self.strict, time_limit=self.time_limit, progress=_progress(self.progress),
                      narrow_normalized=self.narrow_normalized)
        for part in traced.parts:
            analyze_part(ctx, part)
        report.barriers = ctx.barriers
        ctx.space.resolve()
        keep = _keep_indices(ctx, self.round_to)
        report.analysis_s = time.perf_counter() - t0 - t_ref - report.trace_s

        shrinkable = {n: u for n, u in ctx.uses.items() if n in keep}
        channel_map = ChannelMap.from_keep(shrinkable, keep)
        t1 = time.perf_counter()
        zeros = unmasked_zeros(model, ctx.zeros, lambda name, n: _kept_out(ctx, name, n))
        narrowing = narrow.plan(ctx, keep)
        self._narrowing = narrowing
        self._reference_out = self._deviation(model, given, zeros, report) if zeros or narrowing else given
        t_ref += time.perf_counter() - t1
        t1 = time.perf_counter()
        backup = _snapshot([u.module for u in shrinkable.values()] + narrow.owners(model, narrowing))
        replaced: list[tuple[nn.Module, str, nn.Module]] = []
        for name, use in shrinkable.items():
            new = SHRINKERS[use.kind](use.module, keep[name])
            if isinstance(new, nn.Module) and new is not use.module:
                replaced += replace_module(model, use.module, new)
            report.layers.append(_row(name, use, keep[name], self.masks.get(name, {})))
        narrow.cut_params(model, narrowing)
        report.layers += [LayerRow(p.path, "Parameter", {"out": (p.ids.numel(), int(k.numel()))}, None)
                          for p, k in narrowing.params]
        report.layers += _unchanged_rows(model, ctx, keep, self.masks)
        self._literal_undo = rewrite_literals(model, ctx.literals, ctx.space, ctx.shuffles, ctx.chunks)
        record_spec(model, {**{n: (u.kind, {s: int(i.numel()) for s, i in keep[n].items()}, u.groups)
                               for n, u in shrinkable.items()}, **narrow.spec_entries(narrowing)},
                    literal_spec(ctx.literals, ctx.space, ctx.shuffles, ctx.chunks))
        report.shrink_s = time.perf_counter() - t1
        if self.check:
            t1 = time.perf_counter()
            self._verify(model, ctx, shrinkable, backup, zeros, report, replaced)
            t_ref += time.perf_counter() - t1
        report.check_s = t_ref
        self.channel_map = channel_map
        record_channel_map(model, channel_map)
        self.kept = {n: keep[n] for n in shrinkable}
        self.kinds = {n: u.kind for n, u in shrinkable.items()}
        report.total_s = time.perf_counter() - t0

    def verify(self, model: nn.Module | None = None) -> CheckResult:
        """Compare ``model`` (default: the shrunk model) with the reference taken by
        :meth:`speedup_model`, on the same check inputs."""
        if not self._inputs:
            raise RuntimeError("verify() needs speedup_model() to have run with check=True")
        model = self.model if model is None else model
        was_training = model.training
        model.eval()
        try:
            return compare_outputs(self._reference_out, run_outputs(lambda x: call_model(model, x), self._inputs),
                                   self.rtol, self.atol)
        finally:
            model.train(was_training)

    def _reference(self, model: nn.Module) -> list[list[torch.Tensor]]:
        if not self.check:
            return []
        self._inputs = check_inputs(self.dummy_input, self.check_inputs)
        return run_outputs(lambda x: call_model(model, x), self._inputs)

    def _deviation(self, model: nn.Module, given: list[list[torch.Tensor]], zeros: list[Zero],
                   report: SpeedupReport) -> list[list[torch.Tensor]]:
        """Removing channels that are not zero in the user's model changes it: measure, report
        (or raise when strict), and return the reference speedup can match."""
        narrowing = self._narrowing
        cause = "; ".join(c for c in (describe_zeros(model, zeros) if zeros else "",
                                      narrowing.describe() if narrowing else "") if c)
        if not self.check:
            report.deviation = {"cause": cause}
            return given
        with zeroed(model, zeros), narrow.narrowed_reference(model, narrowing):
            removed = run_outputs(lambda x: call_model(model, x), self._inputs)
        result = compare_outputs(given, removed, self.rtol, self.atol)
        if result.status != "differs":
            return given
        report.deviation = {**result.to_dict(), "cause": cause, "narrowed_layernorms": len(narrowing.norms)}
        advice = ("narrow_normalized=True changes the model by design: fine-tune after speedup, or leave it off "
                  "to keep LayerNorm'd streams whole" if narrowing and not zeros else
                  "Mask the norm layers with their channels (torchslim pruners do by default) or fine-tune "
                  "after speedup")
        message = (f"removing the pruned channels changes the model: its output moves by up to "
                   f"{result.max_abs_diff:.3g} ({result.relative:.3g} x its spread across inputs), because {cause}. "
                   + advice)
        if self.strict:
            raise SpeedupError(message + ".")
        warnings.warn(message + "; the shrunk model is checked against the model with those values zeroed.",
                      stacklevel=4)
        return removed

    @torch.inference_mode()
    def _verify(self, model: nn.Module, ctx: Context, uses: Mapping[str, Any], backup: list,
                zeros: list[Zero], report: SpeedupReport,
                replaced: list[tuple[nn.Module, str, nn.Module]]) -> None:
        try:
            result = self.verify(model)
            if result.status == "equal" and self._narrowing and report.deviation:
                # equal to the narrowed reference, not to the masked model: do not call it equal
                result.status = "narrowed"
                result.detail = (f"equal to the masked model with its LayerNorm'd stream narrowed; the masked model "
                                 f"itself differs by {report.deviation['relative']:.3g} x its spread "
                                 "(report.deviation)")
            report.check = result
            report.max_abs_diff = result.max_abs_diff
            problem = None if result.passed else f"outputs differ: {result}"
        except Exception as exc:  # the shrunk model does not even run
            problem = f"the shrunk model fails: {type(exc).__name__}: {exc}"
        if problem is None:
            if result.status == "unverified":
                warnings.warn(f"speedup could not verify the shrunk model: {result.detail}. "
                              "Give a dummy_input the output depends on (trained or calibrated weights).",
                              stacklevel=5)
            return
        # locate the first differing layer: record both models layer by layer, then restore
        modules = {n: u.module for n, u in uses.items()}
        shrunk = _record(model, self.dummy_input, modules)
        _restore(backup)
        undo_literals(model, self._literal_undo)
        for parent, attr, old in replaced:
            setattr(parent, attr, old)
        with zeroed(model, zeros), narrow.narrowed_reference(model, self._narrowing):
            ref = _record(model, self.dummy_input, modules)
        order = list(ref)

        def kept_of(name: str) -> torch.Tensor | None:
            outputs = ctx.uses[name].outputs
            return chan_kept(ctx.space, outputs[0]) if outputs else None

        where = first_divergence(order, ref, shrunk, kept_of, self.rtol, self.atol)
        layer = f"; first layer that differs: '{where[0]}' ({where[1]})" if where else ""
        raise SpeedupError(f"speedup result does not match the masked model: {problem}{layer}. "
                           "The model was restored to its masked state.")


def _record(model: nn.Module, dummy_input: Any, modules: dict[str, nn.Module]) -> dict[str, Any]:
    recorder = OutputRecorder(modules)
    with recorder:
        try:
            call_model(model, dummy_input)
        except Exception:  # layers before the failure are recorded
            pass
    return recorder.outputs


# --- helpers ---------------------------------------------------------------------------------------------
def _load_masks(model: nn.Module, masks: Masks | str | Path | None) -> dict[str, dict[str, torch.Tensor]]:
    if masks is None:
        from torchslim.masking import get_masks

        masks = {n: get_masks(m) for n, m in model.named_modules() if get_masks(m)}
    elif isinstance(masks, (str, Path)):
        masks = torch.load(masks, map_location="cpu", weights_only=True)
    return validate_masks(model, masks)  # before anything is touched


@torch.no_grad()
def _fold_masks(model: nn.Module, masks: Masks) -> None:
    from torchslim.masking import masked_targets, detach_masks

    modules = dict(model.named_modules())
    for module in modules.values():
        if masked_targets(module):
            detach_masks(module, fold=False)  # the masks given below are folded instead
    for name, targets in masks.items():
        for target, mask in targets.items():
            tensor = getattr(modules[name], target, None)
            if isinstance(tensor, torch.Tensor):
                tensor.mul_(mask.to(tensor.device, tensor.dtype))


def _kept_out(ctx: Context, name: str, n: int) -> torch.Tensor | None:
    use = ctx.uses.get(name)
    ids = use.slots.get("out") if use is not None else None
    return ctx.space.kept(ids) if ids is not None and ids.numel() == n else None


def _keep_indices(ctx: Context, round_to: int) -> dict[str, dict[str, torch.Tensor]]:
    """Kept positions per module slot: never empty, equal per group of a grouped conv,
    optionally a multiple of ``round_to``. Extra channels are kept (they hold masked zeros),
    which can unbalance another slot, hence the fixed-point loop."""
    space = ctx.space
    for _ in range(20):
        changed = False
        for use in ctx.uses.values():
            for slot, ids in use.slots.items():
                # rounding is for channel widths; head counts stay as pruned
                changed |= _top_up(space, ids, use.groups, 1 if slot == "heads" else round_to)
        for ids, groups in ctx.balanced:
            changed |= _top_up(space, ids, groups, 1)
        if not changed:
            break
    keep: dict[str, dict[str, torch.Tensor]] = {}
    for name, use in ctx.uses.items():
        idx = {slot: torch.nonzero(space.kept(ids)).reshape(-1) for slot, ids in use.slots.items()}
        if any(i.numel() < use.slots[s].numel() for s, i in idx.items()):
            keep[name] = idx
    return keep


def _top_up(space: Any, ids: torch.Tensor, groups: int, round_to: int) -> bool:
    kept = space.kept(ids).reshape(groups, -1)
    per_group = kept.shape[1]
    want = max(int(kept.sum(1).max()), 1)
    if round_to > 1:
        want = min(per_group, -(-want * groups // round_to) * round_to // groups or per_group)
        want = per_group if want * groups % round_to and want < per_group else want
    changed = False
    for g in range(groups):
        n = int(kept[g].sum())
        if n < want:
            local = ids.reshape(groups, -1)[g]
            space.add_keep_and_refresh(local[~kept[g]][: want - n])
            changed = True
    return changed


def replace_module(model: nn.Module, old: nn.Module, new: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """Point every attribute holding ``old`` at ``new``; returns what to undo."""
    done = []
    for parent in model.modules():
        for attr, child in list(parent._modules.items()):
            if child is old:
                parent._modules[attr] = new
                done.append((parent, attr, old))
    return done


def _snapshot(modules: Iterable[nn.Module]) -> list[tuple[nn.Module, dict, dict, dict]]:
    """Shallow state of modules (and their children): shrinking swaps tensors, never edits them."""
    return [(m, dict(m.__dict__), dict(m._parameters), dict(m._buffers))
            for module in modules for m in module.modules()]


def _restore(snapshot: list[tuple[nn.Module, dict, dict, dict]]) -> None:
    for module, attrs, params, buffers in snapshot:
        module.__dict__.clear()
        module.__dict__.update(attrs)
        module._parameters.clear()
        module._parameters.update(params)
        module._buffers.clear()
        module._buffers.update(buffers)


def _row(name: str, use: Any, keep: dict[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> LayerRow:
    sizes = {slot: (ids.numel(), int(keep[slot].numel())) for slot, ids in use.slots.items()}
    return LayerRow(name, type(use.module).__name__, sizes, use.requested)


def _unchanged_rows(model: nn.Module, ctx: Context, keep: Mapping[str, Any], masks: Masks) -> list[LayerRow]:
    """Rows of layers whose masks asked for channels to go but that stayed whole."""
    rows = []
    for name, use in ctx.uses.items():
        if name not in keep and use.requested:
            rows.append(_row(name, use, {s: torch.arange(ids.numel()) for s, ids in use.slots.items()}, {}))
    modules = dict(model.named_modules())
    for name, targets in masks.items():
        weight = targets.get("weight")
        if name in ctx.uses or weight is None or weight.dim() == 0:
            continue
        dead = weight.reshape(weight.shape[0], -1).abs().amax(1) == 0
        if bool(dead.any()):  # masked, but the analysis never saw it as a shrinkable layer
            rows.append(LayerRow(name, type(modules[name]).__name__, {}, float(dead.float().mean())))
    return rows


def _progress(progress: bool | Callable[[int, int, str], None]) -> Callable[[int, int, str], None] | None:
    if callable(progress):
        return progress
    if not progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    bar = {"bar": None}

    def update(index: int, total: int, name: str) -> None:
        if bar["bar"] is None or bar["bar"].total != total:
            bar["bar"] = tqdm(total=total, desc="speedup analysis", leave=False)
        bar["bar"].update(1)
        bar["bar"].set_postfix_str(name[:30])
    return update
