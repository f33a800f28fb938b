"""The pruner: config_list → (collect data → score blocks → allocate sparsity) → masks.

A concrete pruner is mostly a choice of importance scorer and default granularity; see
``pruners.py``. Schedules (AGP, linear, lottery ticket) drive a pruner repeatedly.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from torchslim.compression.base import CompressResult, Compressor
from torchslim.config import resolve_config
from torchslim.config.checks import check_pruning_targets, no_mask_reason
from torchslim.config.schema import Validator
from torchslim.errors import ConfigError
from torchslim.masking import MaskKeeper, attach_masks, get_masks as module_masks, masked_targets, strip_masks
from torchslim.pruning.allocation import Candidate, allocate
from torchslim.compression.granularity import block_sizes, channel_dim, expand_mask, is_structured
from torchslim.pruning.importance import ScoreContext, Scorer, get_importance
from torchslim.utils.legacy import NNIBoundary

Masks = dict[str, dict[str, torch.Tensor]]


class LayerInfo:
    """What a v1/v2 custom pruner's ``calc_mask(wrapper, config)`` receives."""

    def __init__(self, name: str, module: nn.Module) -> None:
        self.name = name
        self.module = module
        self.type = type(module).__name__

    @property
    def weight_mask(self) -> torch.Tensor:
        masks = module_masks(self.module)
        return masks.get("weight", torch.ones_like(self.module.weight))


class Pruner(Compressor, NNIBoundary):
    """Base class of all pruners.

    Parameters
    ----------
    model: the model to prune (modified in place: masks attach to its modules).
    config_list: NNI v2 or 3.0 style list of dicts choosing layers and sparsity.
    evaluator: a :class:`torchslim.TorchEvaluator` for pruners that need training data.
    importance: a registered scorer name or a function ``(ScoreContext) -> Tensor``.
    mode / dummy_input: v2's ``mode='dependency_aware'`` makes coupled layers (residual
        adds, concat) share channel choices, traced on ``dummy_input``.
    mask_channel_path: also mask what only serves a pruned channel (the norm layer after it:
        BatchNorm, GroupNorm/InstanceNorm affine, depthwise convs), found by tracing the model
        on ``dummy_input`` (or the evaluator's, or one guessed from the first layer), so the
        masked model equals what speedup builds. NNI's ``align`` target settings also apply.
    """

    nni_adapter = "torchslim.pruning.nni:pruner_call"  # NNI's call forms are translated there first
    default_importance: str | Scorer = "l1"
    default_granularity: Any = "out_channel"
    # algorithm-specific config keys (name -> validator)
    extra_config_keys: Mapping[str, Validator] = {}

    def __init__(
        self,
        model: nn.Module,
        config_list: Sequence[Mapping[str, Any]],
        evaluator: Any = None,
        *,
        importance: str | Scorer | None = None,
        mode: str = "normal",
        dummy_input: Any = None,
        mask_channel_path: bool = True,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected arguments: {', '.join(kwargs)}")
        if mode not in ("normal", "dependency_aware"):
            from torchslim.errors import ConfigError

            raise ConfigError(f"invalid mode {mode!r}; allowed: 'normal', 'dependency_aware'")
        if mode == "dependency_aware":
            if dummy_input is None:
                raise ValueError("mode='dependency_aware' needs dummy_input to trace the model")
            from torchslim.pruning.dependency import auto_set_dependency_group_ids

            config_list = auto_set_dependency_group_ids(model, config_list, dummy_input)
        self.model = model
        self.config_list = config_list
        self.evaluator = evaluator
        self.dummy_input = dummy_input
        self.scorer: Scorer = get_importance(importance or self.default_importance)
        self.settings = resolve_config(model, config_list, "pruning", extra_keys=self.extra_config_keys)
        check_pruning_targets(self.settings)
        self._modules = dict(model.named_modules())
        self._keeper: MaskKeeper | None = None
        self._unwrapped_masks: Masks | None = None  # what get_masks() returns after unwrap_model()
        self.mask_channel_path = mask_channel_path
        self._path_input: Any = None  # the input that traced (guessed ones are kept for later rounds)
        self._path_failed = False

    # --- the three steps a pruner may override -------------------------------------------
    def collect_data(self) -> dict[tuple[str, str], Any]:
        """Gather what the scorer needs beyond weights (activations, gradients...)."""
        return {}

    def compute_scores(self, data: Mapping[tuple[str, str], Any]) -> list[Candidate]:
        candidates = []
        for name, targets in self.settings.items():
            module = self._modules[name]
            for target, settings in targets.items():
                if target.startswith("_") or "align" in settings:
                    continue
                block = self.block_of(name, target)
                ctx = ScoreContext(name, module, target, block, settings, data.get((name, target), {}))
                scores = self.scorer(ctx).detach().float()
                # blocks already pruned stay pruned: they must rank lowest
                old = module_masks(module).get(target)
                if old is not None:
                    floor = scores.min() - scores.abs().max() - 1.0
                    scores = torch.where(self._grid(old, block) > 0, scores, floor)
                candidates.append(Candidate((name, target), scores, _numel(block), settings, is_structured(block)))
        return candidates

    def generate_masks(self, candidates: list[Candidate]) -> Masks:
        masks: Masks = {}
        for (name, target), grid_mask in allocate(candidates).items():
            module = self._modules[name]
            block = self.block_of(name, target)
            full = expand_mask(grid_mask, block).to(getattr(module, target).dtype)
            masks.setdefault(name, {})[target] = full
            bias = getattr(module, "bias", None)
            if target == "weight" and isinstance(bias, torch.Tensor) and self._is_out_channel(module, block):
                masks[name]["bias"] = _channel_vector(full, channel_dim(module, "weight")).to(bias.dtype)
        return masks

    # --- public API -------------------------------------------------------------------------
    def compress(self) -> CompressResult:
        """Compute masks and attach them; returns ``(model, masks)``."""
        self.update_masks()
        masks = self.get_masks()
        if not masks:  # a config that prunes nothing is a mistake, not a result
            raise ConfigError(f"{type(self).__name__}.compress() produced no mask: "
                              f"{no_mask_reason(self.settings)}")
        return CompressResult(self.model, masks)

    def update_masks(self) -> Masks:
        """One pruning step at the current settings (schedules call this repeatedly)."""
        masks = self._custom_masks() if self._has_custom_calc_mask() else self.generate_masks(
            self.compute_scores(self.collect_data())
        )
        masks = self._complete_path(masks)
        self.apply_masks(masks)
        return masks

    def apply_masks(self, masks: Masks) -> None:
        if self._keeper is None:
            self._keeper = MaskKeeper()
        self._unwrapped_masks = None
        for name, targets in masks.items():
            module = self._modules[name]
            attach_masks(module, targets)
            self._keeper.add(module)

    def get_masks(self) -> Masks:
        """``masks[module_name][target]``: 0/1 tensors of the target's shape (copies); after
        :meth:`unwrap_model`, the masks the model had then (NNI's pipelines speed up with them)."""
        if self._unwrapped_masks is not None:
            return {name: {t: m.clone() for t, m in targets.items()} for name, targets in self._unwrapped_masks.items()}
        return {
            name: {t: m.detach().clone() for t, m in module_masks(module).items()}
            for name, module in self._modules.items()
            if masked_targets(module)
        }

    def forget_modules(self) -> None:
        """Re-read the model's modules after it was shrunk in place (masks are gone)."""
        # dropped, not closed: this may run inside an optimizer step hook, where closing
        # would remove a hook while torch iterates over them (a dropped keeper is removed later)
        self._keeper = None
        self._modules = dict(self.model.named_modules())

    def unwrap_model(self) -> nn.Module:
        """Fold masks into the weights and remove every hook: a plain model remains. Unwraps the
        compressors chained before this one too; :meth:`get_masks` still returns the masks."""
        masks = self.get_masks()
        if masks:
            self._unwrapped_masks = masks
        strip_masks(self.model)
        if self._keeper is not None:
            self._keeper.close()
            self._keeper = None
        self.unwrap_previous()
        return self.model

    def export_model(
        self,
        model_path: str | Path,
        mask_path: str | Path | None = None,
        onnx_path: str | Path | None = None,
        input_shape: Sequence[int] | None = None,
        device: str | torch.device | None = None,
        dummy_input: Any = None,
    ) -> None:
        """Save weights (masks folded in), masks and optionally an ONNX graph."""
        plain = strip_masks(copy.deepcopy(self.model))
        self.export_files(model_path, self.get_masks(), mask_path, onnx_path, input_shape, device, dummy_input,
                          plain=plain)

    def sparsity_report(self) -> list[dict[str, Any]]:
        """Per target: requested vs achieved sparsity (so a partial pruning never goes unseen)."""
        rows = []
        for name, targets in self.settings.items():
            module = self._modules[name]
            masks = module_masks(module)
            for target, settings in targets.items():
                mask = masks.get(target)
                achieved = 0.0 if mask is None else 1.0 - float(mask.mean())
                rows.append({"module": name, "type": type(module).__name__, "target": target,
                             "requested": settings.get("sparse_ratio"), "achieved": achieved})
        return rows

    # v2 compatibility: schedules call these; one-shot pruners need nothing
    def update_epoch(self, epoch: int) -> None:
        """Called at the start of each epoch by v2-style loops (no-op for one-shot pruners)."""

    def step(self) -> None:
        """Called after each mini-batch by v2-style loops (no-op for one-shot pruners)."""

    def calc_mask(self, wrapper: LayerInfo, config: dict[str, Any]) -> Any:
        """v1/v2 extension point: return the weight mask (or ``{'weight_mask': ...}``)."""
        raise NotImplementedError

    # --- helpers ------------------------------------------------------------------------------
    def block_of(self, name: str, target: str) -> tuple[int, ...]:
        settings = self.settings[name][target]
        granularity = settings.get("granularity", "default")
        if granularity == "default":
            granularity = self.default_granularity
        return block_sizes(self._modules[name], target, granularity)

    @staticmethod
    def _grid(mask: torch.Tensor, block: tuple[int, ...]) -> torch.Tensor:
        from torchslim.compression.granularity import to_units

        return to_units(mask, block).amax(-1)

    @staticmethod
    def _is_out_channel(module: nn.Module, block: tuple[int, ...]) -> bool:
        dim = channel_dim(module, "weight", "out_channel")
        shape = module.weight.shape
        return len(shape) > 1 and block[dim] == 1 and all(
            b == s for d, (b, s) in enumerate(zip(block, shape)) if d != dim
        )

    def _complete_path(self, masks: Masks) -> Masks:
        from torchslim.pruning import channel_path as path

        masks = path.align_masks(self.model, self.settings, masks)
        if not self.mask_channel_path or self._path_failed or not path.has_dead_channels(masks) \
                or not path.has_channel_modules(self.model):
            return masks
        dummy = self._path_input if self._path_input is not None else self.dummy_input
        if dummy is None and self.evaluator is not None and hasattr(self.evaluator, "get_dummy_input"):
            dummy = self.evaluator.get_dummy_input()
        masks, self._path_input, problem = path.complete_masks(self.model, masks, dummy)
        if problem is not None:
            self._path_failed = True  # warned once; later rounds do not retry
            path.warn_incomplete(problem)
        return masks

    def _has_custom_calc_mask(self) -> bool:
        return type(self).calc_mask is not Pruner.calc_mask

    def _custom_masks(self) -> Masks:
        masks: Masks = {}
        for name, targets in self.settings.items():
            module = self._modules[name]
            config = {"op_name": name, "op_type": type(module).__name__, **targets.get("weight", {})}
            config.setdefault("sparsity", config.get("sparse_ratio"))
            result = self.calc_mask(LayerInfo(name, module), config)
            if isinstance(result, torch.Tensor):
                result = {"weight": result}
            masks[name] = {key.removesuffix("_mask"): value.to(module.weight.dtype) for key, value in result.items()}
        return masks


def _numel(block: tuple[int, ...]) -> int:
    n = 1
    for b in block:
        n *= b
    return n


def _channel_vector(full_mask: torch.Tensor, dim: int) -> torch.Tensor:
    reduce = [d for d in range(full_mask.dim()) if d != dim]
    return full_mask.amax(dim=reduce) if reduce else full_mask


PrunerFactory = Callable[..., Pruner]
