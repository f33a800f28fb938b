"""Config fuzzer: thousands of random config_lists in NNI's v2 and 3.0 dialects.

Every piece the generator writes is valid or invalid by construction, so an oracle knows
whether the list as a whole must be refused. The pruner must then raise ``ConfigError``
exactly for the refused ones (no other exception, ever) and accept the others: a refused
list that is accepted is "silently accepted nonsense", the bug this test exists for.
"""
from __future__ import annotations

import copy
import random
import warnings

import pytest

from torchslim.errors import ConfigError
from torchslim.models import LeNet5
from torchslim.pruning import L1NormPruner

N_LISTS = 5000
LAYERS = ("conv1", "conv2", "fc1", "fc2", "fc3")
TYPES = {"conv1": "Conv2d", "conv2": "Conv2d", "fc1": "Linear", "fc2": "Linear", "fc3": "Linear"}
SELECTORS = {  # valid selectors and the layers they pick
    "op_types=Conv2d": ({"op_types": ["Conv2d"]}, {"conv1", "conv2"}),
    "op_types=Linear": ({"op_types": ["Linear"]}, {"fc1", "fc2", "fc3"}),
    "op_types=default": ({"op_types": ["default"]}, set(LAYERS)),
    "op_names_re=fc": ({"op_names_re": ["fc.*"]}, {"fc1", "fc2", "fc3"}),
    **{f"op_names={n}": ({"op_names": [n]}, {n}) for n in LAYERS},
}
BAD_SELECTORS = [{"op_types": ["Conv9d"]}, {"op_types": "Conv2d"}, {"op_names": ["nope"]},
                 {"op_names_re": ["("]}, {}, {"op_names": ["relu1"]}]  # ReLU has no weight
BAD_RATIOS = [1.5, -0.1, "0.5", None, True, [0.5], float("nan")]


class Gen:
    """One random config_list, with the oracle's verdict."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.bad: list[str] = []  # why it must be refused
        self.only_align = True

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def config_list(self) -> object:
        rng = self.rng
        if self.chance(0.01):
            self.bad.append("not a list")
            return rng.choice(["sparsity", 0.5, None])
        if self.chance(0.005):
            self.bad.append("empty")
            return []
        dialect = rng.choice(("v2", "v3"))
        entries, selected, merged = [], set(), {}
        for i in range(rng.randint(1, 3)):
            if i and self.chance(0.2):
                entries.append(self.exclusion(selected, merged))
            elif self.chance(0.01):
                self.bad.append("entry not a dict")
                entries.append(["op_types", "Conv2d"])
            else:
                entries.append(self.entry(dialect, selected, merged))
        if not selected:
            self.bad.append("selects no layer")
        for (name, target), s in merged.items():
            if name in selected and s.get("min", 0) > s.get("max", 1):
                self.bad.append(f"merged min > max on {name}")
        return entries

    def exclusion(self, selected: set, merged: dict) -> dict:
        name = self.rng.choice(LAYERS)
        if self.chance(0.1):
            self.bad.append("exclude not a bool")
            return {"op_names": [name], "exclude": "yes"}
        selected.discard(name)
        for key in [k for k in merged if k[0] == name]:
            del merged[key]
        return {"op_names": [name], "exclude": True}

    def entry(self, dialect: str, selected: set, merged: dict) -> dict:
        rng = self.rng
        if self.chance(0.06):
            return self.align_entry(selected)
        self.only_align = False
        if self.chance(0.1):
            self.bad.append("bad selector")
            entry, layers = dict(rng.choice(BAD_SELECTORS)), set()
        else:
            entry, layers = copy.deepcopy(SELECTORS[rng.choice(list(SELECTORS))])
        settings: dict = {}
        key = "sparse_ratio" if dialect == "v3" else rng.choice(
            ["sparsity", "sparsity_per_layer", "total_sparsity"])
        if self.chance(0.9):
            value = round(rng.uniform(0, 0.95), 3)
            if self.chance(0.08):
                self.bad.append(f"bad {key}")
                value = rng.choice(BAD_RATIOS)
            entry[key] = value
            if self.chance(0.03):  # the same setting in both dialects
                self.bad.append("two spellings of one key")
                entry["sparse_ratio" if key != "sparse_ratio" else "sparsity"] = 0.5
        else:
            self.bad.append("no sparsity")
        self.extras(entry, dialect, settings, key)
        targets = ["weight"]
        if self.chance(0.15):
            targets = self.targets(entry)
        for name in layers:
            selected.add(name)
            for target in targets:
                merged.setdefault((name, target), {}).update(settings)
        return entry

    def extras(self, entry: dict, dialect: str, settings: dict, key: str) -> None:
        rng = self.rng
        if self.chance(0.2):
            max_key = "max_sparse_ratio" if dialect == "v3" else "max_sparsity_per_layer"
            value = round(rng.uniform(0, 1), 3)
            if self.chance(0.1):
                self.bad.append("bad max")
                value = rng.choice([1.5, "x", -1])
            else:
                settings["max"] = value
            entry[max_key] = value
        if self.chance(0.2):
            value = round(rng.uniform(0, 0.99), 3)
            if self.chance(0.1):
                self.bad.append("bad min")
                value = rng.choice([-1, 1.0, "0.1"])
            else:
                settings["min"] = value
            entry["min_sparse_ratio"] = value
        if settings.get("min", 0) > settings.get("max", 1):
            self.bad.append("min > max")
        options = {
            "granularity": (["fine", "out_channel", "in_channel", "default", "per_channel"],
                            ["channel", [0], 3, None]),
            "global_group_id": (["g", 1], [1.5, [1], None]),
            "dependency_group_id": (["d", 2], [{}, 0.5]),
            "internal_metric_block": ([1, 2, 4], [0, -1, "x", True]),
            "apply_method": (["mul"], ["junk", "add", 1]),
            "align": ([], ["junk", {"target_name": 5}, {"module_name": "nope", "target_name": "weight"},
                           {"target_name": "weight", "dims": "0"}, {"targetname": "weight"}]),
            "sparsityy": ([], [0.5]),  # a typo'd key
        }
        for name, (good, bad) in options.items():
            if not self.chance(0.08):
                continue
            if good and (not bad or self.chance(0.7)):
                entry[name] = rng.choice(good)
            else:
                self.bad.append(f"bad {name}")
                entry[name] = rng.choice(bad)

    def targets(self, entry: dict) -> list:
        good = [["weight"], ["weight", "bias"], ["bias"]]
        bad = [["wieght"], ["_input_7"], ["_input_"], "weight", []]
        if self.chance(0.6):
            entry["target_names"] = self.rng.choice(good)
            return entry["target_names"]
        self.bad.append("bad target_names")
        entry["target_names"] = self.rng.choice(bad)
        return []

    def align_entry(self, selected: set) -> dict:
        """NNI's BatchNorm form (LeNet5 has no BN): a conv's output aligned with its own
        weight's output channels (``module_name`` None means the same module)."""
        conv = self.rng.choice(["conv1", "conv2"])
        align = {"module_name": self.rng.choice([conv, None]), "target_name": "weight", "dims": [0]}
        if self.chance(0.3):
            self.bad.append("bad align target")
            align = dict(align, target_name=self.rng.choice(["wieght", "bias2"]), dims=[0])
            if self.chance(0.5):
                align = {"module_name": conv, "target_name": "weight", "dims": [7]}
        selected.add(conv)
        return {"op_names": [conv], "target_names": ["_output_"],
                "target_settings": {"_output_": {"align": align, "granularity": "per_channel"}}}


def verdict(model, gen: Gen) -> tuple[str, object, object]:
    """('ok' | what went wrong, the config_list, the pruner or exception) for one list."""
    config = gen.config_list()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruner = L1NormPruner(model, config)
    except ConfigError as exc:
        return ("ok" if gen.bad else "a valid config_list was refused"), config, exc
    except Exception as exc:  # noqa: BLE001 - the point of the check
        return f"{type(exc).__name__} (not ConfigError): {exc}", config, exc
    return ("ok" if not gen.bad else f"silently accepted ({gen.bad})"), config, pruner


def test_config_fuzz_only_config_errors_and_no_silent_nonsense():
    rng = random.Random(20261128)
    model = LeNet5()
    refused = accepted = compressed = 0
    for i in range(N_LISTS):
        gen = Gen(rng)
        outcome, config, result = verdict(model, gen)
        assert outcome == "ok", f"#{i}: {outcome}: {config!r}"
        if isinstance(result, ConfigError):
            refused += 1
            continue
        accepted += 1
        if accepted % 40 == 0 or gen.only_align:  # compress a sample: still only ConfigError
            fresh = LeNet5()
            try:
                masks = L1NormPruner(fresh, config).compress()[1]
                assert masks and not gen.only_align, f"#{i}: no mask: {config!r}"
            except ConfigError as exc:
                assert gen.only_align and "produced no mask" in str(exc), (config, exc)
            compressed += 1
    assert refused + accepted == N_LISTS
    # both outcomes are well represented (the generator is not trivially one-sided)
    assert refused > 0.25 * N_LISTS and accepted > 0.25 * N_LISTS, (refused, accepted)
    assert compressed > 20
