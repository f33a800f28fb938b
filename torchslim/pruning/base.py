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

from torchslim.config import resolve_config
from torchslim.config.schema import Validator
from torchslim.masking import MaskKeeper, attach_masks, get_masks as module_masks, masked_targets, strip_masks
from torchslim.pruning.allocation import Candidate, allocate
from torchslim.pruning.granularity import block_sizes, channel_dim, expand_mask, is_structured
from torchslim.pruning.importance import ScoreContext, Scorer, get_importance
from torchslim.utils.inputs import example_input

Masks = dict[str, dict[str, torch.Tensor]]


class CompressResult(tuple):
    """``(model, masks)`` as NNI 3.0 returns; also usable as the model itself, as v2 code does
    (``model = pruner.compress(); model(x)``)."""

    def __new__(cls, model: nn.Module, masks: Masks):
        return super().__new__(cls, (model, masks))

    def __getattr__(self, name: str) -> Any:
        return getattr(self[0], name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self[0](*args, **kwargs)


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


class Pruner:
    """Base class of all pruners.

    Parameters
    ----------
    model: the model to prune (modified in place: masks attach to its modules).
    config_list: NNI v2 or 3.0 style list of dicts choosing layers and sparsity.
    evaluator: a :class:`torchslim.TorchEvaluator` for pruners that need training data.
    importance: a registered scorer name or a function ``(ScoreContext) -> Tensor``.
    mode / dummy_input: v2's ``mode='dependency_aware'`` makes coupled layers (residual
        adds, concat) share channel choices, traced on ``dummy_input``.
    """

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
        self._modules = dict(model.named_modules())
        self._keeper: MaskKeeper | None = None

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
        return CompressResult(self.model, self.get_masks())

    def update_masks(self) -> Masks:
        """One pruning step at the current settings (schedules call this repeatedly)."""
        masks = self._custom_masks() if self._has_custom_calc_mask() else self.generate_masks(
            self.compute_scores(self.collect_data())
        )
        self.apply_masks(masks)
        return masks

    def apply_masks(self, masks: Masks) -> None:
        if self._keeper is None:
            self._keeper = MaskKeeper()
        for name, targets in masks.items():
            module = self._modules[name]
            attach_masks(module, targets)
            self._keeper.add(module)

    def get_masks(self) -> Masks:
        """``masks[module_name][target]``: 0/1 tensors of the target's shape (copies)."""
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
        """Fold masks into the weights and remove every hook: a plain model remains."""
        strip_masks(self.model)
        if self._keeper is not None:
            self._keeper.close()
            self._keeper = None
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
        torch.save(plain.state_dict(), model_path)
        if mask_path is not None:
            torch.save(self.get_masks(), mask_path)
        if onnx_path is not None:
            from torchslim.utils.onnx_export import export_onnx

            dummy_input = example_input(dummy_input, input_shape, device)
            export_onnx(plain.to(device) if device else plain, dummy_input, onnx_path)

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
        from torchslim.pruning.granularity import to_units

        return to_units(mask, block).amax(-1)

    @staticmethod
    def _is_out_channel(module: nn.Module, block: tuple[int, ...]) -> bool:
        dim = channel_dim(module, "weight", "out_channel")
        shape = module.weight.shape
        return len(shape) > 1 and block[dim] == 1 and all(
            b == s for d, (b, s) in enumerate(zip(block, shape)) if d != dim
        )

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
