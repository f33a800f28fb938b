"""Search spaces in NNI's JSON form: validation, sampling and grid enumeration.

A search space maps a parameter name to ``{"_type": ..., "_value": [...]}``. ``choice``
options may be nested dicts carrying a ``_name`` whose other keys are parameters again (or
plain constant values).

Tuners never see the JSON: they answer the questions a :class:`Suggester` is asked while
:meth:`SearchSpace.sample` walks the tree (which option? which float in [low, high]?).
Every question is keyed by a flat *path* such as ``prune_method[level].conv0_sparsity``, so
a conditional space flattens naturally (Optuna's define-by-run API works the same way), and
the answers (the *raw* point) replay a sample exactly.

Stdlib only: the helpers are re-exported by the light top-level ``torchslim`` module.
"""
from __future__ import annotations

import itertools
import json
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any, Iterator, Mapping, Protocol, Sequence

from torchslim.errors import ConfigError

__all__ = [
    "Categorical", "SearchSpace", "Suggester", "RandomSuggester", "FixedSuggester",
    "load_search_space",
    "choice", "randint", "uniform", "quniform", "loguniform", "qloguniform",
    "normal", "qnormal", "lognormal", "qlognormal",
]

# _type -> (number of _value items, names of those items) for the numeric types
_NUMERIC_ARITY: dict[str, tuple[str, ...]] = {
    "randint": ("lower", "upper"),
    "uniform": ("low", "high"),
    "quniform": ("low", "high", "q"),
    "loguniform": ("low", "high"),
    "qloguniform": ("low", "high", "q"),
    "normal": ("mu", "sigma"),
    "qnormal": ("mu", "sigma", "q"),
    "lognormal": ("mu", "sigma"),
    "qlognormal": ("mu", "sigma", "q"),
}
TYPES = ("choice", *_NUMERIC_ARITY)
_CONSTANT = "constant"  # a plain value inside a nested choice option

# normal-family parameters are sampled as a probability u and mapped through the inverse
# CDF, so every tuner only ever needs bounded floats; clipping u keeps the tails finite
_U_EPS = 1e-6
_STD_NORMAL = NormalDist()


class Suggester(Protocol):
    """Answers the questions asked while sampling one point (keyed by parameter path)."""

    def categorical(self, path: str, n: int) -> int:
        """Index of the chosen option among ``n``."""

    def floating(self, path: str, low: float, high: float, log: bool = False) -> float:
        """A float in ``[low, high]`` (log-scaled when ``log``)."""

    def integer(self, path: str, low: int, high: int) -> int:
        """An int in ``[low, high]`` (both inclusive)."""


class RandomSuggester:
    """Draws every answer uniformly at random (log-uniformly where asked)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def categorical(self, path: str, n: int) -> int:
        return self.rng.randrange(n)

    def floating(self, path: str, low: float, high: float, log: bool = False) -> float:
        if log:
            return math.exp(self.rng.uniform(math.log(low), math.log(high)))
        return self.rng.uniform(low, high)

    def integer(self, path: str, low: int, high: int) -> int:
        return self.rng.randint(low, high)


class FixedSuggester:
    """Replays a raw point; paths missing from it are delegated to ``fallback``."""

    def __init__(self, raw: Mapping[str, Any], fallback: Suggester | None = None) -> None:
        self.raw = raw
        self.fallback = fallback

    def _get(self, path: str, method: str, *args: Any) -> Any:
        if path in self.raw:
            return self.raw[path]
        if self.fallback is None:
            raise KeyError(f"raw point has no value for parameter {path!r}")
        return getattr(self.fallback, method)(path, *args)

    def categorical(self, path: str, n: int) -> int:
        return min(max(int(self._get(path, "categorical", n)), 0), n - 1)

    def floating(self, path: str, low: float, high: float, log: bool = False) -> float:
        return min(max(float(self._get(path, "floating", low, high, log)), low), high)

    def integer(self, path: str, low: int, high: int) -> int:
        return min(max(int(self._get(path, "integer", low, high)), low), high)


@dataclass(frozen=True)
class Param:
    """One validated parameter: its path, NNI type and arguments."""

    path: str
    type: str
    args: tuple[float, ...] = ()
    # for choice: the options; a nested option is (name, [Param, ...]), a constant is (None, value)
    options: tuple[tuple[str | None, Any], ...] = ()

    @property
    def q(self) -> float | None:
        return self.args[2] if len(self.args) == 3 else None

    def sample(self, s: Suggester) -> tuple[Any, dict[str, Any]]:
        """Ask ``s`` for this parameter; return (value, raw answers)."""
        if self.type == "choice":
            idx = s.categorical(self.path, len(self.options))
            name, content = self.options[idx]
            raw: dict[str, Any] = {self.path: idx}
            if name is None:
                return content, raw
            value, sub_raw = _sample_params(content, s)
            raw.update(sub_raw)
            return {"_name": name, **value}, raw
        if self.type == _CONSTANT:
            return self.options[0][1], {}
        if self.type == "randint":
            lower, upper = int(self.args[0]), int(self.args[1])
            n = s.integer(self.path, lower, upper - 1)
            return n, {self.path: n}
        if self.type in ("uniform", "quniform", "loguniform", "qloguniform"):
            x = s.floating(self.path, self.args[0], self.args[1], log="log" in self.type)
            return self._quantize(x, clip=(self.args[0], self.args[1])), {self.path: x}
        # normal family: u in (0, 1) -> inverse CDF
        u = s.floating(self.path, _U_EPS, 1 - _U_EPS)
        x = self.args[0] + self.args[1] * _STD_NORMAL.inv_cdf(u)
        if "log" in self.type:
            x = math.exp(x)
        return self._quantize(x), {self.path: u}

    def _quantize(self, x: float, clip: tuple[float, float] | None = None) -> float:
        q = self.q
        if q is None:
            return x
        x = round(x / q) * q
        if clip is not None:
            x = min(max(x, clip[0]), clip[1])
        # a tidy float: 0.30000000000000004 -> 0.3 (decimals of q)
        return round(x, _decimals(q))

    def grid(self) -> list[dict[str, Any]]:
        """Every raw point of this parameter (discrete types only)."""
        if self.type == "choice":
            points: list[dict[str, Any]] = []
            for idx, (name, content) in enumerate(self.options):
                subs = [{}] if name is None else _grid_params(content)
                points.extend({self.path: idx, **sub} for sub in subs)
            return points
        if self.type == _CONSTANT:
            return [{}]
        if self.type == "randint":
            return [{self.path: n} for n in range(int(self.args[0]), int(self.args[1]))]
        if self.type == "quniform":
            low, high, q = self.args
            # the values quniform can produce: multiples of q inside, plus the clipped ends
            ks = range(math.floor(low / q), math.ceil(high / q) + 1)
            values = sorted({self._quantize(k * q, clip=(low, high)) for k in ks})
            return [{self.path: v} for v in values]
        raise ConfigError(
            f"GridSearch needs discrete parameters, but search space parameter {self.path!r} "
            f"has _type {self.type!r}; allowed for GridSearch: choice, randint, quniform"
        )


def _decimals(q: float) -> int:
    text = repr(float(q))
    if "e" in text:
        return 12
    return max(len(text.split(".")[1].rstrip("0")), 0) + 2 if "." in text else 2


def _sample_params(params: Sequence[Param], s: Suggester) -> tuple[dict[str, Any], dict[str, Any]]:
    values: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    for p in params:
        values[p.path.rsplit(".", 1)[-1]], r = p.sample(s)
        raw.update(r)
    return values, raw


def _grid_params(params: Sequence[Param]) -> list[dict[str, Any]]:
    combos: list[dict[str, Any]] = []
    for parts in itertools.product(*(p.grid() for p in params)):
        merged: dict[str, Any] = {}
        for part in parts:
            merged.update(part)
        combos.append(merged)
    return combos


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space; build it with :meth:`parse`."""

    params: tuple[Param, ...]
    spec: dict[str, Any] = field(compare=False)

    @classmethod
    def parse(cls, spec: Any) -> "SearchSpace":
        """Validate an NNI-style search space (dict, JSON text or SearchSpace)."""
        if isinstance(spec, SearchSpace):
            return spec
        if isinstance(spec, str):
            try:
                spec = json.loads(spec)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"search space is not valid JSON: {exc}") from exc
        return cls(tuple(_parse_params(spec, prefix="")), spec)

    def sample(self, suggester: Suggester) -> tuple[dict[str, Any], dict[str, Any]]:
        """Walk the space asking ``suggester``; return (parameters, raw point)."""
        return _sample_params(self.params, suggester)

    def realize(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters of a raw point (e.g. one stored or produced by a grid)."""
        return self.sample(FixedSuggester(raw))[0]

    def grid(self) -> list[dict[str, Any]]:
        """All raw points of a discrete space, in a stable order."""
        return _grid_params(self.params)

    def __len__(self) -> int:
        return len(self.params)


def load_search_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space JSON file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read search space file {str(p)!r}: {exc.strerror}") from exc
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        # NNI's own examples carry trailing commas ("...},\n}"): accept those, nothing else
        try:
            spec = json.loads(_TRAILING_COMMA.sub(r"\1", text))
        except json.JSONDecodeError:
            raise ConfigError(f"search space file {str(p)!r} is not valid JSON: {exc}") from exc
    return SearchSpace.parse(spec)


_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _parse_params(spec: Any, prefix: str) -> Iterator[Param]:
    where = f"at {prefix!r}" if prefix else "at the top level"
    if not isinstance(spec, Mapping):
        raise ConfigError(f"search space must be a dict of parameter name -> "
                          f"{{'_type': ..., '_value': [...]}} {where}, got {type(spec).__name__}")
    for name, sub in spec.items():
        if prefix and name == "_name":
            continue
        if not isinstance(name, str) or not name or "." in name or "[" in name:
            raise ConfigError(f"search space parameter name {name!r} {where} must be a non-empty "
                              f"string without '.' or '['")
        path = f"{prefix}.{name}" if prefix else name
        if prefix and not isinstance(sub, Mapping):
            yield Param(path, _CONSTANT, options=((None, sub),))  # fixed value in a branch
        else:
            yield _parse_param(sub, path)


def _parse_param(spec: Any, path: str) -> Param:
    if not isinstance(spec, Mapping) or "_type" not in spec or "_value" not in spec:
        raise ConfigError(f"search space parameter {path!r} must be a dict with '_type' and "
                          f"'_value', got {spec!r}")
    extra = sorted(set(spec) - {"_type", "_value"})
    if extra:
        raise ConfigError(f"search space parameter {path!r} has unknown key(s) {extra}; "
                          f"allowed keys: '_type', '_value'")
    ptype, value = spec["_type"], spec["_value"]
    if ptype not in TYPES:
        raise ConfigError(f"search space parameter {path!r} has _type {ptype!r}; "
                          f"allowed: {', '.join(TYPES)}")
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"search space parameter {path!r} ({ptype}) needs a list _value, "
                          f"got {value!r}")
    if ptype == "choice":
        return _parse_choice(path, list(value))
    names = _NUMERIC_ARITY[ptype]
    if len(value) != len(names) or not all(_is_number(v) for v in value):
        raise ConfigError(f"search space parameter {path!r} ({ptype}) needs _value "
                          f"[{', '.join(names)}] of {len(names)} numbers, got {list(value)!r}")
    args = tuple(value)
    _check_numeric(path, ptype, args)
    return Param(path, ptype, tuple(float(a) for a in args) if ptype != "randint" else args)


def _check_numeric(path: str, ptype: str, args: tuple[float, ...]) -> None:
    def bad(rule: str) -> ConfigError:
        return ConfigError(f"search space parameter {path!r} ({ptype}) has _value {list(args)!r}; "
                           f"{rule}")

    if ptype == "randint":
        if not all(float(a).is_integer() for a in args) or args[0] >= args[1]:
            raise bad("need integers lower < upper (upper is exclusive)")
    elif ptype in ("uniform", "quniform", "loguniform", "qloguniform"):
        if args[0] > args[1]:
            raise bad("need low <= high")
        if "log" in ptype and args[0] <= 0:
            raise bad("need 0 < low for a log scale")
    elif args[1] <= 0:
        raise bad("need sigma > 0")
    if len(args) == 3 and args[2] <= 0:
        raise bad("need q > 0")


def _parse_choice(path: str, options: list[Any]) -> Param:
    if not options:
        raise ConfigError(f"search space parameter {path!r} (choice) needs a non-empty _value list")
    parsed: list[tuple[str | None, Any]] = []
    seen: set[str] = set()
    for i, opt in enumerate(options):
        if not isinstance(opt, Mapping):
            parsed.append((None, opt))
            continue
        name = opt.get("_name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"search space parameter {path!r} (choice) option _value[{i}] is a "
                              f"dict, so it needs a non-empty string '_name' (nested search space)")
        if name in seen:
            raise ConfigError(f"search space parameter {path!r} (choice) has duplicate "
                              f"_name {name!r}; option names must be unique")
        seen.add(name)
        parsed.append((name, tuple(_parse_params(opt, prefix=f"{path}[{name}]"))))
    return Param(path, "choice", options=tuple(parsed))


# ---- Python helpers returning the JSON form (``torchslim.choice(...)`` etc.) -------------

def _spec(ptype: str, *values: Any) -> dict[str, Any]:
    return {"_type": ptype, "_value": list(values)}


class Categorical(dict):
    """A labelled choice (NNI 3.0's ``nni.choice(label, values)``).

    It *is* the JSON form ``{"_type": "choice", "_value": values}``, so it drops into an HPO
    search space as is, and it carries ``label`` so NAS modules that share the label share
    one decision (``torchslim.nas``).
    """

    def __init__(self, values: Sequence[Any], label: str) -> None:
        if not isinstance(label, str) or not label:
            raise ConfigError(f"choice label must be a non-empty string, got {label!r}")
        values = list(values)
        if not values:
            raise ConfigError(f"choice {label!r} needs at least one value")
        super().__init__(_type="choice", _value=values)
        self.label = label

    @property
    def options(self) -> list[Any]:
        """The values to choose from (``dict.values`` keeps its dict meaning)."""
        return self["_value"]

    def __repr__(self) -> str:
        return f"Categorical({self.options!r}, label={self.label!r})"


def choice(*options: Any, label: str | None = None, values: Sequence[Any] | None = None) -> Any:
    """A categorical parameter, in NNI 3.0's or NNI 2.x's call form.

    - ``choice('dropout', [0.25, 0.5])`` or ``choice(label=..., values=[...])`` (NNI 3.0):
      a labelled :class:`Categorical` for NAS modules and HPO search spaces alike;
    - ``choice('a', 'b')`` or ``choice(['a', 'b'])``: the plain JSON form of a choice of those
      options (dict options need a ``_name``).

    A string followed by one list is always read as NNI 3.0's ``(label, values)``; to choose
    between a string and a list, pass the options as one list.
    """
    if values is not None or label is not None:
        if options or values is None or label is None:
            raise ConfigError("choice(label=..., values=[...]) takes both keywords and no "
                              "positional options")
        return Categorical(values, label)
    if len(options) == 2 and isinstance(options[0], str) and isinstance(options[1], (list, tuple)):
        return Categorical(options[1], options[0])
    if len(options) == 1 and isinstance(options[0], (list, tuple)):
        options = tuple(options[0])
    return _spec("choice", *options)


def randint(lower: int, upper: int) -> dict[str, Any]:
    """An integer in ``[lower, upper)``."""
    return _spec("randint", lower, upper)


def uniform(low: float, high: float) -> dict[str, Any]:
    """A float uniformly in ``[low, high]``."""
    return _spec("uniform", low, high)


def quniform(low: float, high: float, q: float) -> dict[str, Any]:
    """``clip(round(uniform(low, high) / q) * q, low, high)``."""
    return _spec("quniform", low, high, q)


def loguniform(low: float, high: float) -> dict[str, Any]:
    """A float whose logarithm is uniform in ``[log(low), log(high)]``."""
    return _spec("loguniform", low, high)


def qloguniform(low: float, high: float, q: float) -> dict[str, Any]:
    """``clip(round(loguniform(low, high) / q) * q, low, high)``."""
    return _spec("qloguniform", low, high, q)


def normal(mu: float, sigma: float) -> dict[str, Any]:
    """A normally distributed float."""
    return _spec("normal", mu, sigma)


def qnormal(mu: float, sigma: float, q: float) -> dict[str, Any]:
    """``round(normal(mu, sigma) / q) * q``."""
    return _spec("qnormal", mu, sigma, q)


def lognormal(mu: float, sigma: float) -> dict[str, Any]:
    """``exp(normal(mu, sigma))``."""
    return _spec("lognormal", mu, sigma)


def qlognormal(mu: float, sigma: float, q: float) -> dict[str, Any]:
    """``round(exp(normal(mu, sigma)) / q) * q``."""
    return _spec("qlognormal", mu, sigma, q)
