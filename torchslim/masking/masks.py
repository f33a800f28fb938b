"""Attach 0/1 masks to a module's tensors without changing the module.

Design (why not parametrize or wrappers): the user's module keeps its class, its
``weight`` Parameter object and its ``state_dict`` keys, so an optimizer built before
compression, ``torch.save`` and ``load_state_dict`` keep working. Masks live in
non-persistent buffers ``<target>_mask`` and are multiplied into the tensor in place:

* by a picklable forward pre-hook, whenever the tensor changed since the last masking
  (tracked with the tensor's version counter, so a module called twice in one forward is
  not re-masked while autograd holds its weight);
* after every optimizer step (a torch optimizer post-step hook held by :class:`MaskKeeper`),
  so masked entries are exactly zero between steps too, whatever the optimizer's momentum.
"""
from __future__ import annotations

import weakref
from typing import Iterable, Mapping

import torch
import torch.optim.optimizer as torch_optimizer
from torch import nn

_TARGETS_ATTR = "_torchslim_mask_targets"
_HOOK_ATTR = "_torchslim_mask_hook_id"
_VERSIONS_ATTR = "_torchslim_mask_versions"


def mask_name(target: str) -> str:
    return f"{target}_mask"


def masked_targets(module: nn.Module) -> tuple[str, ...]:
    return getattr(module, _TARGETS_ATTR, ())


@torch.no_grad()
def apply_masks(module: nn.Module, force: bool = False) -> None:
    """Multiply masks into their tensors in place (skipped when nothing changed)."""
    versions = getattr(module, _VERSIONS_ATTR, None)
    if versions is None:
        return
    for target in masked_targets(module):
        tensor = getattr(module, target)
        if tensor is None:
            continue
        if force or versions.get(target) != tensor._version:
            tensor.mul_(getattr(module, mask_name(target)))
            versions[target] = tensor._version


class MaskHook:
    """Forward pre-hook applying a module's masks; a plain class so models stay picklable."""

    def __call__(self, module: nn.Module, args: tuple) -> None:
        apply_masks(module)


def attach_masks(module: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Attach (or replace) masks on ``module``; masked entries become zero immediately."""
    targets = list(masked_targets(module))
    for target, mask in masks.items():
        tensor = getattr(module, target, None)
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{type(module).__name__} has no tensor {target!r} to mask")
        if tuple(mask.shape) != tuple(tensor.shape):
            raise ValueError(
                f"mask for {target!r} has shape {tuple(mask.shape)}, expected {tuple(tensor.shape)}"
            )
        mask = mask.detach().to(device=tensor.device, dtype=tensor.dtype)
        name = mask_name(target)
        if name in module._buffers:
            module._buffers[name] = mask
        else:
            module.register_buffer(name, mask, persistent=False)
        if target not in targets:
            targets.append(target)
    setattr(module, _TARGETS_ATTR, tuple(targets))
    if not hasattr(module, _HOOK_ATTR):
        handle = module.register_forward_pre_hook(MaskHook())
        setattr(module, _HOOK_ATTR, handle.id)
    setattr(module, _VERSIONS_ATTR, {})
    apply_masks(module, force=True)


def get_masks(module: nn.Module) -> dict[str, torch.Tensor]:
    return {t: getattr(module, mask_name(t)) for t in masked_targets(module)}


def detach_masks(module: nn.Module, fold: bool = True) -> None:
    """Remove masks and the hook; with ``fold`` the zeros stay in the weights."""
    if fold:
        apply_masks(module, force=True)
    hook_id = getattr(module, _HOOK_ATTR, None)
    if hook_id is not None:
        module._forward_pre_hooks.pop(hook_id, None)
    for target in masked_targets(module):
        module._buffers.pop(mask_name(target), None)
        module._non_persistent_buffers_set.discard(mask_name(target))
    for attr in (_TARGETS_ATTR, _HOOK_ATTR, _VERSIONS_ATTR):
        if hasattr(module, attr):
            delattr(module, attr)


def strip_masks(model: nn.Module) -> nn.Module:
    """Detach every mask in ``model`` (folding zeros in); returns ``model``."""
    for module in model.modules():
        if masked_targets(module):
            detach_masks(module, fold=True)
    return model


class MaskKeeper:
    """Re-applies masks after every optimizer step, for the modules it was given.

    Registered through torch's optimizer post-step hook, so optimizers created before or
    after compression are covered. Modules are held weakly; :meth:`close` unregisters.
    """

    def __init__(self, modules: Iterable[nn.Module] = ()) -> None:
        self._modules: weakref.WeakSet[nn.Module] = weakref.WeakSet(modules)
        keeper = weakref.ref(self)

        def after_step(optimizer, args, kwargs) -> None:
            alive = keeper()
            if alive is not None:
                alive.apply()

        _remove_dead_hooks()
        self._handle = torch_optimizer.register_optimizer_step_post_hook(after_step)
        # A keeper may be garbage-collected while torch iterates over its global hooks (inside
        # optimizer.step()); removing the hook right then would mutate that dict mid-iteration.
        # The dead hook is a no-op, so it is only queued and removed at the next safe point.
        self._finalizer = weakref.finalize(self, _DEAD_HOOKS.append, self._handle)

    def add(self, module: nn.Module) -> None:
        self._modules.add(module)

    def apply(self) -> None:
        for module in list(self._modules):
            apply_masks(module)

    def close(self) -> None:
        self._finalizer()
        _remove_dead_hooks()
        self._modules = weakref.WeakSet()


_DEAD_HOOKS: list = []  # handles of collected keepers, removed outside optimizer.step()


def _remove_dead_hooks() -> None:
    while _DEAD_HOOKS:
        _DEAD_HOOKS.pop().remove()
