"""NNI's ``PBTTuner``: population-based training (Jaderberg et al., 2017).

A population of ``population_size`` members trains in generations; each generation is one
trial per member. Every trial's parameters carry ``save_checkpoint_dir`` (where it must save
its state) and ``load_checkpoint_dir`` (where to resume from; absent in the first
generation), as NNI's PBT does; :func:`torchslim.experiment.trial.save_checkpoint` /
``load_checkpoint`` use them. After a generation, the worst ``fraction`` of the members copy
a top member's checkpoint (exploit) and perturb its hyper-parameters by ``1 ± factor`` or
resample them with ``resample_probability`` (explore).
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any, Mapping

from torchslim.errors import ConfigError
from torchslim.experiment.searchspace import RandomSuggester, SearchSpace
from torchslim.experiment.tuners.base import Tuner
from torchslim.experiment.tuners.mutation import NeighbourSuggester

SAVE_KEY, LOAD_KEY = "save_checkpoint_dir", "load_checkpoint_dir"


class PBTTuner(Tuner):
    """See the module docstring. ``all_checkpoint_dir`` defaults to the experiment's
    ``checkpoints`` folder."""

    dedup = False  # every proposal runs as scheduled

    name = "PBT"

    def __init__(self, search_space: SearchSpace | Mapping[str, Any],
                 optimize_mode: str = "maximize", seed: int | None = None,
                 all_checkpoint_dir: str | None = None, population_size: int = 10,
                 factor: float = 0.2, resample_probability: float = 0.25,
                 fraction: float = 0.2, workdir: str | Path | None = None) -> None:
        super().__init__(search_space, optimize_mode, seed)
        if int(population_size) < 2:
            raise ConfigError(f"tuner.classArgs.population_size is {population_size!r}; "
                              f"allowed: an integer >= 2")
        if not 0 < float(fraction) <= 0.5:
            raise ConfigError(f"tuner.classArgs.fraction is {fraction!r}; allowed: (0, 0.5]")
        base = all_checkpoint_dir or (Path(workdir) / "checkpoints" if workdir else
                                      tempfile.mkdtemp(prefix="torchslim-pbt-"))
        self.root = Path(base).expanduser().resolve()
        self.population_size = int(population_size)
        self.factor = float(factor)
        self.resample_probability = float(resample_probability)
        self.fraction = float(fraction)
        self.generation = 0
        # per member: (raw point, checkpoint to load or None)
        self.members: list[tuple[dict[str, Any], str | None]] = [
            (self._sample(RandomSuggester(self.rng))[1], None) for _ in range(self.population_size)]
        self.issued = 0
        self.results: dict[int, float | None] = {}  # member -> loss this generation
        self.member_of: dict[int, int] = {}  # trial sequence -> member

    def _save_dir(self, member: int, generation: int) -> str:
        return str(self.root / f"member_{member:03d}" / f"generation_{generation:03d}")

    def _propose(self, sequence: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
        if self.issued >= self.population_size:
            return None  # the generation is out; the next one needs all its results
        member = self.issued
        self.issued += 1
        self.member_of[sequence] = member
        raw, load = self.members[member]
        save = self._save_dir(member, self.generation)
        Path(save).mkdir(parents=True, exist_ok=True)
        params = self.space.realize(raw)
        params[SAVE_KEY] = save
        if load is not None:
            params[LOAD_KEY] = load
        return params, {**raw, SAVE_KEY: save, **({LOAD_KEY: load} if load else {})}

    def receive(self, sequence: int, value: float | None) -> None:
        self.pending.pop(sequence, None)
        member = self.member_of.pop(sequence, None)
        if member is None:
            return
        self.results[member] = None if value is None else self.loss(value)
        if len(self.results) == self.population_size:
            self._next_generation()

    def _next_generation(self) -> None:
        worst_first = sorted(range(self.population_size),
                             key=lambda m: -math.inf if self.results[m] is None else -self.results[m])
        ranked = worst_first[::-1]  # best first (failed members rank last)
        cut = max(int(round(self.population_size * self.fraction)), 1)
        top, bottom = ranked[:cut], set(ranked[-cut:])
        members = []
        for m in range(self.population_size):
            raw = self.members[m][0]
            load = self._save_dir(m, self.generation)
            if m in bottom:
                donor = self.rng.choice(top)
                load = self._save_dir(donor, self.generation)
                raw = self._explore(self.members[donor][0])
            members.append((raw, load))
        self.members = members
        self.generation += 1
        self.issued = 0
        self.results = {}

    def _explore(self, raw: dict[str, Any]) -> dict[str, Any]:
        if self.rng.random() < self.resample_probability:
            return self._sample(RandomSuggester(self.rng))[1]
        out = {}
        for path, value in raw.items():
            if isinstance(value, float):
                value = value * (1 + self.factor if self.rng.random() < 0.5 else 1 - self.factor)
            out[path] = value
        # clamp into the space (and fill anything the walk asks that the point lacks)
        return self._sample(NeighbourSuggester(out, self.rng, scale=0.0))[1]
