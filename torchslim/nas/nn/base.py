"""What a model space is: a module tree whose mutable parts share labelled decisions.

A *sample* (an architecture) is a plain dict ``{label: value}``: JSON-able, what tuners
propose and what ``export_top_models(formatter='dict')`` returns. Modules that take the same
label (the seed's ``feature`` sizes ``fc1`` and ``fc2``) read the same entry, so one label is
one decision.
"""
from __future__ import annotations

import copy
import json
import random
from typing import Any, Iterator, Mapping

import torch.nn as nn

from torchslim.errors import ConfigError
from torchslim.experiment.searchspace import Categorical

__all__ = ["Mutable", "ModelSpace", "Sample", "iter_mutables", "simplify", "check_sample",
           "freeze", "activate"]

Sample = dict[str, Any]
UNLABELLED = "__unlabelled__"


class Mutable(nn.Module):
    """A module with decisions: it lists its :class:`Categorical` s and can be frozen.

    Unfrozen, it runs as one member of the space (the *active* sample, set by
    :func:`activate`; the first value of every decision until then), which is what
    weight-sharing (one-shot) strategies train.
    """

    def decisions(self) -> list[Categorical]:
        """The labelled decisions this module reads (children list their own)."""
        raise NotImplementedError

    def freeze(self, sample: Mapping[str, Any]) -> nn.Module:
        """A plain module for ``sample`` (its children may still be mutable)."""
        raise NotImplementedError

    def activate(self, sample: Mapping[str, Any]) -> None:
        """Run as ``sample`` from now on (weight-sharing mode)."""
        self.active = {c.label: sample[c.label] for c in self.decisions()}

    def value(self, decision: Any) -> Any:
        """The active value of ``decision`` (a Categorical or a constant)."""
        if not isinstance(decision, Categorical):
            return decision
        active = getattr(self, "active", None) or {}
        return active.get(decision.label, decision.options[0])


def iter_mutables(module: nn.Module) -> Iterator[tuple[str, Mutable]]:
    """Every mutable module under ``module`` (pre-order), with its qualified name."""
    for name, sub in module.named_modules():
        if isinstance(sub, Mutable):
            yield name, sub


def simplify(module: nn.Module) -> dict[str, Categorical]:
    """``{label: Categorical}`` of every decision under ``module``, in declaration order.

    Raises ConfigError when one label is declared with two different value lists.
    """
    found: dict[str, Categorical] = {}
    where: dict[str, str] = {}
    for name, mut in iter_mutables(module):
        if getattr(mut, "auto_label", False) and mut.choice.label == UNLABELLED:
            # an unlabelled choice is named by its place ("." is not allowed in HPO names)
            mut.choice.label = (name or "root").replace(".", "/")
        for c in mut.decisions():
            if c.label in found and found[c.label].options != c.options:
                raise ConfigError(
                    f"label {c.label!r} is used with values {found[c.label].options} "
                    f"(in {where[c.label] or 'the space'}) and {c.options} (in {name}); "
                    f"one label is one decision: give the other a different label")
            found.setdefault(c.label, c)
            where.setdefault(c.label, name)
    return found


def _same(a: Any, b: Any) -> bool:
    # samples travel through JSON: tuples come back as lists, ints may come back as floats
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True) or a == b


def check_sample(space: Mapping[str, Categorical], sample: Mapping[str, Any]) -> Sample:
    """``sample`` restricted to ``space``'s labels, with values as declared; or ConfigError."""
    if not isinstance(sample, Mapping):
        raise ConfigError(f"an architecture sample is a dict {{label: value}}, got "
                          f"{type(sample).__name__}")
    missing = [label for label in space if label not in sample]
    if missing:
        raise ConfigError(f"architecture sample {dict(sample)} has no value for label(s) "
                          f"{missing}; the space's labels: {list(space)}")
    unknown = sorted(set(sample) - set(space))
    if unknown:
        raise ConfigError(f"architecture sample has unknown label(s) {unknown}; "
                          f"the space's labels: {list(space)}")
    out: Sample = {}
    for label, cat in space.items():
        match = [v for v in cat.options if _same(v, sample[label])]
        if not match:
            raise ConfigError(f"architecture sample has {label}={sample[label]!r}; "
                              f"allowed: {cat.options}")
        out[label] = match[0]
    return out


def _freeze_tree(module: nn.Module, sample: Mapping[str, Any]) -> nn.Module:
    if isinstance(module, Mutable):
        return _freeze_tree(module.freeze(sample), sample)
    for name, child in list(module.named_children()):
        new = _freeze_tree(child, sample)
        if new is not child:
            setattr(module, name, new)
    return module


def freeze(module: nn.Module, sample: Mapping[str, Any]) -> nn.Module:
    """A copy of ``module`` with every mutable replaced by its choice in ``sample``."""
    sample = check_sample(simplify(module), sample)
    frozen = _freeze_tree(copy.deepcopy(module), sample)
    if isinstance(frozen, ModelSpace):
        frozen.frozen_sample = dict(sample)
    return frozen


def activate(module: nn.Module, sample: Mapping[str, Any]) -> None:
    """Make every mutable under ``module`` run as ``sample`` (in place, weights shared)."""
    sample = check_sample(simplify(module), sample)
    for _, mut in iter_mutables(module):
        mut.activate(sample)


class ModelSpace(nn.Module):
    """Base class of a model space (NNI's ``nni.nas.nn.pytorch.ModelSpace``).

    Write ``__init__`` / ``forward`` as for a normal module, using :class:`LayerChoice`,
    ``Mutable*`` layers with ``torchslim.choice(label, values)`` and so on. Then
    ``space.freeze({'conv2': 0, ...})`` is a normal module of one architecture.
    """

    frozen_sample: Sample | None = None

    def simplify(self) -> dict[str, Categorical]:
        """``{label: Categorical}``: the decisions of this space."""
        return simplify(self)

    def search_space(self) -> dict[str, dict[str, Any]]:
        """The space in NNI's HPO JSON form ``{label: {'_type': 'choice', '_value': [...]}}``."""
        return {label: {"_type": "choice", "_value": list(c.options)}
                for label, c in self.simplify().items()}

    def check_sample(self, sample: Mapping[str, Any]) -> Sample:
        """``sample`` validated against this space (ConfigError naming the label if not)."""
        return check_sample(self.simplify(), sample)

    def freeze(self, sample: Mapping[str, Any]) -> nn.Module:
        """A plain module (a copy, this space is untouched) for architecture ``sample``."""
        return freeze(self, sample)

    def activate(self, sample: Mapping[str, Any]) -> None:
        """Run this space as ``sample`` (weight-sharing mode; in place)."""
        activate(self, sample)

    def random_sample(self, seed: int | None = None) -> Sample:
        """A uniformly random architecture as a dict."""
        rng = random.Random(seed)
        return {label: rng.choice(c.options) for label, c in self.simplify().items()}

    def random(self, seed: int | None = None) -> nn.Module:
        """A random architecture, frozen (NNI's ``space.random()``)."""
        return self.freeze(self.random_sample(seed))

    def default_sample(self) -> Sample:
        """The first value of every decision (what the unfrozen space runs by default)."""
        return {label: c.options[0] for label, c in self.simplify().items()}

    def grid(self) -> list[Sample]:
        """Every architecture of the space (mind the size)."""
        import itertools

        space = self.simplify()
        return [dict(zip(space, values))
                for values in itertools.product(*(c.options for c in space.values()))]

    def size(self) -> int:
        """The number of architectures in the space."""
        n = 1
        for c in self.simplify().values():
            n *= len(c.options)
        return n
