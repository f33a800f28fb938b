"""One-shot strategies: train one weight-sharing supernet, then read architectures off it.

- :class:`DARTS`: every LayerChoice / InputChoice becomes a softmax-weighted mix of its
  candidates; architecture weights (one set per label) learn on validation batches while
  the network weights learn on training batches (first-order DARTS).
- :class:`RandomOneShot` (single-path, uniform sampling) and :class:`ENAS` (a REINFORCE
  controller picks the path; reward = validation-batch accuracy) train one sampled path per
  step; afterwards candidate architectures are ranked with the shared weights.

Both take data, epochs and optimiser from a :class:`~torchslim.nas.evaluator.Classification`.
"""
from __future__ import annotations

import copy
import heapq
import itertools
import math
from typing import Any, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchslim.errors import ConfigError
from torchslim.experiment.searchspace import SearchSpace
from torchslim.nas.evaluator import Classification, accuracy
from torchslim.nas.nn.base import ModelSpace, iter_mutables
from torchslim.nas.nn.choice import InputChoice, LayerChoice, reduce_inputs
from torchslim.nas.strategy.base import Strategy
from torchslim.nas.strategy.tuners import DedupRandomTuner, PolicyTuner

__all__ = ["DARTS", "RandomOneShot", "ENAS"]


def _check_evaluator(evaluator: Any, name: str) -> Classification:
    if not isinstance(evaluator, Classification):
        raise ConfigError(f"{name} trains a supernet and needs a Classification evaluator "
                          f"(train_dataloaders, val_dataloaders, max_epochs), got "
                          f"{type(evaluator).__name__}")
    return evaluator


def _cycle(loader: Any) -> Iterator[Any]:
    while True:
        yield from loader


class _MixedOp(nn.Module):
    """DARTS' continuous relaxation of a LayerChoice."""

    def __init__(self, choice: LayerChoice, alpha: nn.Parameter) -> None:
        super().__init__()
        self.candidates = nn.ModuleList(choice.candidates)
        self.alpha = [alpha]  # a list: shared per label, registered once by the strategy

    def forward(self, *args: Any) -> torch.Tensor:
        w = F.softmax(self.alpha[0], dim=-1)
        return sum(wi * op(*args) for wi, op in zip(w, self.candidates))


class _MixedInput(nn.Module):
    """DARTS' relaxation of an InputChoice with one chosen input."""

    def __init__(self, choice: InputChoice, alpha: nn.Parameter) -> None:
        super().__init__()
        self.n, self.reduction = choice.n_candidates, choice.reduction
        self.alpha = [alpha]

    def chosen(self, value: Any = None) -> list[int]:
        return list(range(self.n))

    def forward(self, candidate_inputs: list[torch.Tensor]) -> torch.Tensor:
        w = F.softmax(self.alpha[0], dim=-1)
        return reduce_inputs([sum(wi * x for wi, x in zip(w, candidate_inputs[:self.n]))],
                             self.reduction)


def _replace(module: nn.Module, fn: Any) -> nn.Module:
    new = fn(module)
    if new is not None:
        return new
    for name, child in list(module.named_children()):
        replaced = _replace(child, fn)
        if replaced is not child:
            setattr(module, name, replaced)
    return module


class DARTS(Strategy):
    """Differentiable architecture search (Liu et al. 2019), first order.

    Supports LayerChoice, InputChoice (one chosen) and Cell; other choices (Mutable* sizes,
    Repeat) raise ConfigError: use RandomOneShot for those.
    """

    def __init__(self, arc_learning_rate: float = 3e-4, arc_weight_decay: float = 1e-3,
                 gradient_clip_val: float = 5.0, seed: int = 0) -> None:
        self.arc_learning_rate, self.arc_weight_decay = arc_learning_rate, arc_weight_decay
        self.gradient_clip_val, self.seed = gradient_clip_val, seed
        self.alphas: dict[str, list[float]] = {}
        self._options: dict[str, list[Any]] = {}

    def run(self, space: ModelSpace, evaluator: Any) -> None:
        ev = _check_evaluator(evaluator, "DARTS")
        torch.manual_seed(self.seed)
        decisions = space.simplify()
        unsupported = [f"{name} ({type(m).__name__})" for name, m in iter_mutables(space)
                       if not isinstance(m, (LayerChoice, InputChoice))
                       or (isinstance(m, InputChoice) and m.n_chosen != 1)]
        if unsupported:
            raise ConfigError(f"DARTS supports LayerChoice, InputChoice(n_chosen=1) and Cell; "
                              f"not {unsupported}; use RandomOneShot() for those")
        alphas = {label: nn.Parameter(1e-3 * torch.randn(len(c.options)))
                  for label, c in decisions.items()}

        def relax(m: nn.Module) -> nn.Module | None:
            if isinstance(m, LayerChoice):
                return _MixedOp(m, alphas[m.label])
            if isinstance(m, InputChoice):
                return _MixedInput(m, alphas[m.label])
            return None

        supernet = _replace(copy.deepcopy(space), relax)
        weights = list(supernet.parameters())
        w_opt = ev.optimizer(weights, lr=ev.learning_rate, weight_decay=ev.weight_decay)
        a_opt = torch.optim.Adam(alphas.values(), lr=self.arc_learning_rate, betas=(0.5, 0.999),
                                 weight_decay=self.arc_weight_decay)
        val = _cycle(ev.val_dataloaders)
        for _ in range(ev.max_epochs):
            supernet.train()
            for x, y in ev.train_dataloaders:
                xv, yv = next(val)
                a_opt.zero_grad()
                ev.criterion(supernet(xv), yv).backward()
                a_opt.step()
                w_opt.zero_grad()
                ev.criterion(supernet(x), y).backward()
                nn.utils.clip_grad_norm_(weights, self.gradient_clip_val)
                w_opt.step()
        self.alphas = {label: F.softmax(a.detach(), -1).tolist() for label, a in alphas.items()}
        self._options = {label: list(c.options) for label, c in decisions.items()}

    def export_top_models(self, top_k: int = 1) -> list[dict[str, Any]]:
        """The ``top_k`` most probable architectures under the learnt softmaxes."""
        if not self.alphas:
            raise ConfigError("DARTS has not run yet: call NasExperiment.run() first")
        labels = list(self.alphas)
        logp = {label: [math.log(max(p, 1e-12)) for p in self.alphas[label]] for label in labels}
        # labels are independent terms of the log-probability, so a beam of width top_k over
        # the labels keeps exactly the top_k architectures
        beam: list[tuple[float, tuple[int, ...]]] = [(0.0, ())]
        for label in labels:
            beam = heapq.nlargest(top_k, ((score + lp, combo + (i,)) for score, combo in beam
                                          for i, lp in enumerate(logp[label])),
                                  key=lambda item: item[0])
        combos = [combo for _, combo in beam]
        return [{lb: self._options[lb][i] for lb, i in zip(labels, c)} for c in combos]


class RandomOneShot(Strategy):
    """Single-path one-shot (SPOS): a uniformly random path trains per step.

    Afterwards ``num_candidates`` distinct architectures (all of them for small spaces) are
    scored on ``eval_batches`` validation batches with the shared weights and ranked.
    """

    def __init__(self, num_candidates: int = 50, eval_batches: int = 4, seed: int = 0) -> None:
        self.num_candidates, self.eval_batches, self.seed = num_candidates, eval_batches, seed
        self.ranking: list[tuple[float, dict[str, Any]]] = []

    def _controller(self, space: SearchSpace) -> Any:
        return DedupRandomTuner(space, seed=self.seed, dedup=False)

    def _reward(self, supernet: nn.Module, batch: Any) -> float:
        x, y = batch
        supernet.eval()
        with torch.no_grad():
            acc = float((supernet(x).argmax(1) == y).float().mean())
        supernet.train()
        return acc

    def run(self, space: ModelSpace, evaluator: Any) -> None:
        ev = _check_evaluator(evaluator, type(self).__name__)
        torch.manual_seed(self.seed)
        supernet = copy.deepcopy(space)
        search = SearchSpace.parse(supernet.search_space())
        controller = self._controller(search)
        opt = ev.optimizer(supernet.parameters(), lr=ev.learning_rate,
                           weight_decay=ev.weight_decay)
        val = _cycle(ev.val_dataloaders)
        step = 0
        for _ in range(ev.max_epochs):
            supernet.train()
            for x, y in ev.train_dataloaders:
                sample, _ = controller.generate(step)
                supernet.activate(sample)
                opt.zero_grad()
                ev.criterion(supernet(x), y).backward()
                opt.step()
                controller.receive(step, self._reward(supernet, next(val))
                                   if isinstance(controller, PolicyTuner) else None)
                step += 1
        self.ranking = self._rank(supernet, ev)

    def _rank(self, supernet: ModelSpace, ev: Classification) -> list[tuple[float, dict[str, Any]]]:
        batches = list(itertools.islice(iter(ev.val_dataloaders), self.eval_batches))
        grid = supernet.grid() if supernet.size() <= self.num_candidates else None
        candidates = grid or []
        seen: set[str] = set()
        seed = self.seed
        while grid is None and len(candidates) < self.num_candidates:
            s = supernet.random_sample(seed)
            seed += 1
            if repr(s) not in seen:
                seen.add(repr(s))
                candidates.append(s)
        scored = []
        for s in candidates:
            supernet.activate(s)
            scored.append((accuracy(supernet, batches), s))
        scored.sort(key=lambda item: -item[0])
        return scored

    def export_top_models(self, top_k: int = 1) -> list[dict[str, Any]]:
        """The ``top_k`` architectures by shared-weight validation accuracy."""
        if not self.ranking:
            raise ConfigError(f"{type(self).__name__} has not run yet: call run() first")
        return [s for _, s in self.ranking[:top_k]]


class ENAS(RandomOneShot):
    """ENAS-style: a REINFORCE controller (as :class:`PolicyBasedRL`) picks each step's path,
    rewarded with the path's accuracy on a validation batch."""

    def __init__(self, num_candidates: int = 50, eval_batches: int = 4, seed: int = 0,
                 controller_lr: float = 0.1) -> None:
        super().__init__(num_candidates, eval_batches, seed)
        self.controller_lr = controller_lr

    def _controller(self, space: SearchSpace) -> Any:
        return PolicyTuner(space, seed=self.seed, learning_rate=self.controller_lr, dedup=False)
