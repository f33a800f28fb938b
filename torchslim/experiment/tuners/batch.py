"""NNI's ``BatchTuner``: run a given list of configurations, each once, in order."""
from __future__ import annotations

from typing import Any, Mapping

from torchslim.errors import ConfigError
from torchslim.experiment.tuners.base import NoMoreTrials, Tuner

KEY = "combine_params"


class BatchTuner(Tuner):
    """The search space is ``{"combine_params": {"_type": "choice", "_value": [cfg, ...]}}``;
    trial ``i`` gets ``cfg[i]`` itself as its parameters (as NNI does)."""

    dedup = False  # every proposal runs as scheduled

    name = "Batch"

    def __init__(self, search_space: Any, optimize_mode: str = "maximize",
                 seed: int | None = None) -> None:
        spec = dict(search_space.spec if hasattr(search_space, "spec") else search_space)
        inner = spec.get(KEY)
        if set(spec) != {KEY} or not isinstance(inner, Mapping) or inner.get("_type") != "choice":
            raise ConfigError(f"the Batch tuner needs the search space {{{KEY!r}: {{'_type': "
                              f"'choice', '_value': [config, ...]}}}}; got keys {sorted(spec)}")
        self.values = list(inner.get("_value") or [])
        super().__init__({KEY: {"_type": "choice", "_value": list(range(len(self.values)))}},
                         optimize_mode, seed)
        self.used: set[int] = set()

    def observe(self, sequence: int, raw: Mapping[str, Any]) -> dict[str, Any]:
        self.used.add(int(raw[KEY]))
        self.pending[sequence] = dict(raw)
        return self.values[int(raw[KEY])]

    def _propose(self, sequence: int) -> tuple[dict[str, Any], dict[str, Any]]:
        for i, value in enumerate(self.values):
            if i not in self.used:
                self.used.add(i)
                params = value if isinstance(value, Mapping) else {KEY: value}
                return dict(params), {KEY: i}
        raise NoMoreTrials(f"all {len(self.values)} batch configurations were tried")
