"""``LayerChoice`` (one of several modules) and ``InputChoice`` (some of several tensors)."""
from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from torchslim.errors import ConfigError
from torchslim.experiment.searchspace import Categorical
from torchslim.nas.nn.base import UNLABELLED, Mutable

__all__ = ["LayerChoice", "InputChoice", "ChosenInputs", "reduce_inputs"]

_REDUCTIONS = ("sum", "mean", "concat", "none")


class LayerChoice(Mutable):
    """One of ``candidates`` (a list: values are indices; a dict: values are its keys)."""

    def __init__(self, candidates: Sequence[nn.Module] | Mapping[str, nn.Module], *,
                 label: str | None = None) -> None:
        super().__init__()
        if isinstance(candidates, Mapping):
            names = [str(k) for k in candidates]
            modules = list(candidates.values())
            values: list[Any] = names
        else:
            modules = list(candidates)
            names = [str(i) for i in range(len(modules))]
            values = list(range(len(modules)))
        if not modules or not all(isinstance(m, nn.Module) for m in modules):
            raise ConfigError(f"LayerChoice{'' if label is None else f' {label!r}'} needs a "
                              f"non-empty list or dict of nn.Module candidates")
        self.names = names
        for name, m in zip(names, modules):
            self.add_module(name, m)
        self.choice = Categorical(values, label or UNLABELLED)
        self.auto_label = label is None

    @property
    def label(self) -> str:
        return self.choice.label

    @property
    def candidates(self) -> list[nn.Module]:
        return [self._modules[n] for n in self.names]

    def decisions(self) -> list[Categorical]:
        return [self.choice]

    def index_of(self, value: Any) -> int:
        return self.choice.options.index(value)

    def freeze(self, sample: Mapping[str, Any]) -> nn.Module:
        return self.candidates[self.index_of(sample[self.label])]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.candidates[self.index_of(self.value(self.choice))](*args, **kwargs)

    def extra_repr(self) -> str:
        return f"label={self.label!r}"


def reduce_inputs(tensors: list[torch.Tensor], reduction: str) -> Any:
    """Combine chosen inputs as InputChoice's ``reduction`` says."""
    if reduction == "none":
        return tensors
    if len(tensors) == 1:
        return tensors[0]
    if reduction == "concat":
        return torch.cat(tensors, dim=1)
    total = torch.stack(tensors).sum(0)
    return total / len(tensors) if reduction == "mean" else total


class InputChoice(Mutable):
    """Choose ``n_chosen`` of ``n_candidates`` inputs (a value is an index, or a list of them)."""

    def __init__(self, n_candidates: int, n_chosen: int | None = 1, reduction: str = "sum", *,
                 label: str | None = None) -> None:
        super().__init__()
        n_chosen = 1 if n_chosen is None else n_chosen
        if not (isinstance(n_candidates, int) and n_candidates >= 1
                and isinstance(n_chosen, int) and 1 <= n_chosen <= n_candidates):
            raise ConfigError(f"InputChoice needs 1 <= n_chosen <= n_candidates, got "
                              f"n_candidates={n_candidates!r}, n_chosen={n_chosen!r}")
        if reduction not in _REDUCTIONS:
            raise ConfigError(f"InputChoice reduction is {reduction!r}; allowed: {_REDUCTIONS}")
        self.n_candidates, self.n_chosen, self.reduction = n_candidates, n_chosen, reduction
        combos = itertools.combinations(range(n_candidates), n_chosen)
        values: list[Any] = (list(range(n_candidates)) if n_chosen == 1 else
                             [list(c) for c in combos])
        self.choice = Categorical(values, label or UNLABELLED)
        self.auto_label = label is None

    @property
    def label(self) -> str:
        return self.choice.label

    def decisions(self) -> list[Categorical]:
        return [self.choice]

    def chosen(self, value: Any = None) -> list[int]:
        value = self.value(self.choice) if value is None else value
        return [value] if isinstance(value, int) else list(value)

    def freeze(self, sample: Mapping[str, Any]) -> nn.Module:
        return ChosenInputs(self.chosen(sample[self.label]), self.reduction)

    def forward(self, candidate_inputs: list[torch.Tensor]) -> Any:
        return reduce_inputs([candidate_inputs[i] for i in self.chosen()], self.reduction)

    def extra_repr(self) -> str:
        return (f"n_candidates={self.n_candidates}, n_chosen={self.n_chosen}, "
                f"reduction={self.reduction!r}, label={self.label!r}")


class ChosenInputs(nn.Module):
    """A frozen InputChoice: picks fixed inputs from the list it is given."""

    def __init__(self, chosen: list[int], reduction: str) -> None:
        super().__init__()
        self.chosen_indices, self.reduction = list(chosen), reduction

    def chosen(self, value: Any = None) -> list[int]:
        return self.chosen_indices

    def forward(self, candidate_inputs: list[torch.Tensor]) -> Any:
        return reduce_inputs([candidate_inputs[i] for i in self.chosen_indices], self.reduction)

    def extra_repr(self) -> str:
        return f"chosen={self.chosen_indices}, reduction={self.reduction!r}"
