"""``compress()``: from a model and a budget to a verified, smaller, faster model.

Steps: units and cost model → (latency table) → (sensitivity analysis) → search of per-unit
sparsities → prune + :class:`~torchslim.speedup.ModelSpeedup` (outputs checked) → measure
the built model; a latency budget that the measurement misses re-calibrates the table and
searches again → fine-tune (``train_fn``) → optional int8 → :class:`AutoCompressResult`.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from torchslim.auto.report import AutoCompressResult
from torchslim.auto.search import Problem, get_search
from torchslim.auto.sensitivity import estimate, sensitivity_analysis, weights_hash
from torchslim.auto.target import Target
from torchslim.auto.units import DEFAULT_OP_TYPES, CostModel
from torchslim.errors import ConfigError
from torchslim.utils.metrics import count_macs, count_params, measure_latency

if TYPE_CHECKING:
    from torchslim.auto.experiment import CompressExperiment

PRUNERS = {"l1": "L1NormPruner", "l2": "L2NormPruner", "fpgm": "FPGMPruner"}
PROXIES = ("evaluate", "sensitivity", "magnitude")
Progress = Callable[[str], None]


def compress(model: nn.Module, example_input: Any, evaluate_fn: Callable[[nn.Module], float] | None = None,
             target: Mapping[str, Any] | None = None, train_fn: Callable[[nn.Module], Any] | None = None, *,
             algorithm: str = "tuner", algorithm_options: Mapping[str, Any] | None = None,
             proxy: str | None = None, short_term_fn: Callable[[nn.Module], Any] | None = None,
             pruner: str = "l1", op_types: Sequence[str] = DEFAULT_OP_TYPES,
             exclude: Iterable[str] = (), max_sparsity: float = 0.9, latency_input: Any = None,
             threads: int = 2, latency_rounds: int = 3, tolerance: float = 0.05, max_rounds: int = 3,
             quantize: bool = False, calibration_data: Iterable[Any] | None = None,
             cache_dir: str | Path | None = None, progress: bool | Progress = False,
             seed: int = 0, experiment: "CompressExperiment | None" = None,
             ray: bool | str | None = None) -> AutoCompressResult:
    """Search per-layer sparsities that meet ``target``, then prune, speed up and fine-tune.

    Parameters
    ----------
    model: the dense model (not modified: the result is a new model).
    example_input: an input for tracing and shape propagation (its batch does not matter).
    evaluate_fn: ``fn(model) -> score`` (higher is better, e.g. validation accuracy); None for
        structure-only runs (the search then uses a weight-magnitude proxy).
    target: budgets, e.g. ``{'latency_ms': '0.5x'}``, ``{'params': 2421}``, ``{'macs': '25%'}``.
    train_fn: ``fn(model)`` fine-tunes the shrunk model in place (optional).
    algorithm: 'tuner' (AMC-style, on the experiment tuners; ``algorithm_options={'tuner_name':
        'TPE', 'trials': 30, 'concurrency': 1}``; the default: it beat uniform sparsity in benchmarks/auto_compress.py),
        'netadapt' (greedy), 'anneal' or 'uniform'.
    proxy: how candidates are scored: 'evaluate' (``evaluate_fn`` on the masked model; the
        default when it is given), 'sensitivity' (single-layer drops added up) or 'magnitude'.
    short_term_fn: ``fn(masked_model)``, a short fine-tuning run before each candidate is
        evaluated (NetAdapt's short-term fine-tune): slower, and far better at telling which
        layers can shrink, since a masked model's accuracy before any training misleads.
    latency_input: the input latency is about (e.g. a batch of 32); default ``example_input``.
    tolerance: a measured latency may exceed its budget by this share before a re-search.
    quantize: deploy the result as real int8 (needs ``calibration_data``: an iterable of inputs
        or ``(input, target)`` batches).
    cache_dir: where latency tables and sensitivity analyses are cached.
    progress: True prints stage lines; or a callable receiving them.
    experiment: a :class:`~torchslim.auto.experiment.CompressExperiment`: every candidate is a
        trial in its store (web UI, ``torchslim experiment status``); candidates already stored
        are read back, not evaluated again, so a killed run resumes where it stopped. Caches
        go to its folder unless ``cache_dir`` is given; the result is saved there too.
    ray: evaluate candidates as Ray tasks (True: a local Ray or the one ``ray.init`` found;
        a string: the cluster address); needs ``pip install 'torchslim[ray]'``.
    """
    arguments = dict(locals())  # exactly the call's arguments (the experiment run below repeats the call)
    say = _reporter(progress)
    t_start = time.perf_counter()
    if target is None:
        raise ConfigError("compress() needs a target, e.g. {'params': 2421} or {'latency_ms': '0.5x'}")
    spec = Target(target)
    proxy = proxy or ("evaluate" if evaluate_fn is not None else "magnitude")
    if proxy not in PROXIES:
        raise ConfigError(f"proxy {proxy!r} is unknown; allowed: {', '.join(PROXIES)}")
    if proxy in ("evaluate", "sensitivity") and evaluate_fn is None:
        raise ConfigError(f"proxy {proxy!r} needs evaluate_fn")
    if pruner not in PRUNERS:
        raise ConfigError(f"pruner {pruner!r} is unknown; allowed: {', '.join(PRUNERS)}")
    if not 0.0 < max_sparsity < 1.0:
        raise ConfigError(f"max_sparsity must be between 0 and 1, got {max_sparsity!r}")
    if quantize and calibration_data is None:
        raise ConfigError("quantize=True needs calibration_data (an iterable of input batches)")
    search = get_search(algorithm)
    latency_input = example_input if latency_input is None else latency_input
    if experiment is not None and cache_dir is None:
        cache_dir = experiment.folder / "cache"
    cache = Path(cache_dir) if cache_dir is not None else None
    if experiment is not None and experiment.store is None:
        with experiment:  # holds the experiment's lock and records its status
            return compress(**{**arguments, "cache_dir": cache})

    dense = copy.deepcopy(model).eval()
    say("analysing the model (units, cost model)")
    cost = CostModel(dense, example_input, op_types=op_types, exclude=exclude)
    dense_stats = {"params": float(count_params(dense)), "macs": float(count_macs(dense, example_input))}
    table = None
    if "latency" in spec.metrics:
        say(f"timing {len(cost.modules)} layers for the latency table ({threads} threads)")
        from torchslim.auto.latency import LatencyTable

        table = LatencyTable(dense, latency_input, cost, threads=threads, cache_dir=cache)
        dense_stats["latency"] = table.dense_ms
    bounds = spec.resolve(dense_stats).bounds
    say(f"{len(cost.units)} prunable units; budget: " + ", ".join(f"{b.metric} ≤ {b.value:,.4g}" for b in bounds))

    def costs(s: np.ndarray) -> dict[str, float]:
        out = {"params": cost.evaluate("params", s), "macs": cost.evaluate("macs", s)}
        if table is not None:
            out["latency"] = table.predict(s)
        return out

    score_masked = (masked_scorer(dense, cost, pruner, evaluate_fn, short_term_fn)
                    if evaluate_fn is not None else None)
    remote = None
    if ray and score_masked is not None:
        from torchslim.auto.remote import RayScorer

        say("evaluating candidates on Ray")
        score_masked = remote = RayScorer(score_masked, None if ray is True else str(ray))
    sens = None
    if proxy == "sensitivity":
        say("sensitivity analysis (one unit at a time)")
        key = weights_hash(dense, [u.members for u in cost.units], pruner)
        sens = sensitivity_analysis(len(cost.units), score_masked,
                                    cache=cache / f"sensitivity-{key}.json" if cache is not None else None)
        score: Callable[[np.ndarray], float] = lambda s: estimate(sens, s)  # noqa: E731
    elif proxy == "evaluate":
        score = score_masked
    else:
        score = _magnitude_scorer(dense, cost)

    problem = Problem(len(cost.units), costs, bounds, score, max_sparsity, key=lambda s: tuple(cost.keep_fractions(s)))
    if remote is not None and proxy == "evaluate":
        problem.submit = remote.submit
    options = dict(algorithm_options or {})
    options.setdefault("seed", seed)
    options.setdefault("widths", [u.channels for u in cost.units])
    if experiment is not None:
        metrics = [b.metric for b in bounds] + [m for m in costs(np.zeros(len(cost.units))) if m not in spec.metrics]
        experiment.bind([u.name for u in cost.units], problem.key, "accuracy" if proxy == "evaluate" else "score",
                        list(dict.fromkeys(metrics)), max_sparsity,
                        options.get("tuner_name", "TPE") if search.__name__ == "tuner" else search.__name__)
        problem.record, problem.stored = experiment.score, experiment.has
        experiment.say = say
        say(f"experiment {experiment.id}: {len(experiment.known)} candidates stored before "
            f"(read back, not evaluated again); web UI: torchslim experiment view {experiment.id}")
    rounds: list[dict[str, Any]] = []
    built: list[tuple[nn.Module, dict[str, Any] | None, np.ndarray]] = []
    try:
        for round_index in range(max_rounds):
            say(f"search ({algorithm}, round {round_index + 1})")
            sparsity = search(problem, **options)
            predicted = costs(sparsity)
            say("pruning and speeding up: " + ", ".join(f"{d['unit']} {d['channels']}→{d['kept']}"
                                                        for d in cost.describe(sparsity)))
            slim, speedup_report = _build(dense, cost, sparsity, pruner, example_input)
            measured = {"params": float(count_params(slim)), "macs": float(count_macs(slim, example_input))}
            if table is not None:
                dense_ms, slim_ms = _paired_latency(dense, slim, latency_input, threads, latency_rounds)
                measured["latency"] = slim_ms
                measured["dense_latency"] = dense_ms
            rounds.append({"sparsity": [float(v) for v in sparsity], "predicted": predicted, "measured": measured})
            built.append((slim, speedup_report, sparsity))
            over, under = _check(bounds, measured, tolerance, table.dense_ms if table is not None else None)
            if table is None or not (over or under) or round_index == max_rounds - 1:
                break
            say(f"measured {', '.join(over + under)}: re-calibrating the latency table and searching again")
            table.calibrate(sparsity, measured["latency"] / measured["dense_latency"])
    finally:
        if remote is not None:
            remote.close()
    chosen = _best_round(rounds, bounds, tolerance, table.dense_ms if table is not None else None)
    slim, speedup_report, sparsity = built[chosen]
    rounds[chosen]["chosen"] = True

    score_before = evaluate_fn(slim) if evaluate_fn is not None else None
    if train_fn is not None:
        say("fine-tuning the shrunk model")
        returned = train_fn(slim)
        slim = returned if isinstance(returned, nn.Module) else slim
    slim.eval()
    score_after = evaluate_fn(slim) if evaluate_fn is not None else None
    int8 = None
    if quantize:
        say("quantizing to int8")
        int8 = _int8(slim, calibration_data, example_input)
    result = AutoCompressResult(
        model=slim, int8_model=int8, units=cost.describe(sparsity), config_list=cost.config_list(sparsity),
        target=spec.describe(), bounds=[{"metric": b.metric, "value": b.value} for b in bounds],
        dense={**dense_stats, "score": evaluate_fn(dense) if evaluate_fn is not None else None},
        compressed={**rounds[chosen]["measured"], "score_before_finetune": score_before, "score": score_after},
        rounds=rounds, history=problem.history, sensitivity=sens, speedup=speedup_report,
        latency_table=table.to_dict() if table is not None else None, algorithm=algorithm, proxy=proxy,
        seconds=time.perf_counter() - t_start)
    say(result.headline())
    if experiment is not None:
        experiment.finish(result)
    return result


# --- helpers ------------------------------------------------------------------------------------------
def _reporter(progress: bool | Progress) -> Progress:
    if callable(progress):
        return progress
    if progress:
        return lambda line: print(f"[torchslim compress] {line}", flush=True)
    return lambda line: None


def _pruner_class(pruner: str) -> type:
    import torchslim.pruning as pruning

    return getattr(pruning, PRUNERS[pruner])


def _attach(model: nn.Module, cost: CostModel, sparsity: np.ndarray, pruner: str) -> tuple[Any, dict[str, Any]]:
    """Mask ``model`` to ``sparsity`` (masks stay attached); ``(pruner, masks)``, or ``(None, {})``."""
    config_list = cost.config_list(sparsity)
    if not config_list:
        return None, {}
    instance = _pruner_class(pruner)(model, config_list)
    _, masks = instance.compress()
    return instance, masks


def _prune(model: nn.Module, cost: CostModel, sparsity: np.ndarray, pruner: str) -> dict[str, Any]:
    instance, masks = _attach(model, cost, sparsity, pruner)
    if instance is not None:
        instance.unwrap_model()
    return masks


def masked_scorer(dense: nn.Module, cost: CostModel, pruner: str, evaluate_fn: Callable[[nn.Module], float],
                  short_term_fn: Callable[[nn.Module], Any] | None = None) -> Callable[[np.ndarray], float]:
    """Score of the masked model at a sparsity; with ``short_term_fn``, after that short
    fine-tuning (NetAdapt's short-term fine-tune: masks stay on while it trains)."""
    def score(s: np.ndarray) -> float:
        candidate = copy.deepcopy(dense)
        _attach(candidate, cost, s, pruner)
        if short_term_fn is not None:
            short_term_fn(candidate)
        candidate.eval()
        return float(evaluate_fn(candidate))
    return score


def _magnitude_scorer(dense: nn.Module, cost: CostModel) -> Callable[[np.ndarray], float]:
    """Share of each unit's output-channel L1 mass that survives, weighted by the unit's MACs."""
    modules = dict(dense.named_modules())
    curves, weights = [], []
    macs_io, _, _ = cost.coefficients("macs")
    names = [c.name for c in cost.modules]
    for unit in cost.units:
        norms = sum(modules[m].weight.detach().abs().reshape(modules[m].weight.shape[0], -1).sum(1)
                    for m in unit.members)
        ranked = torch.sort(norms, descending=True).values
        curves.append(torch.cumsum(ranked, 0).numpy() / max(float(ranked.sum()), 1e-12))
        weights.append(sum(macs_io[names.index(m)] for m in unit.members if m in names) + 1.0)
    w = np.array(weights) / sum(weights)

    def score(s: np.ndarray) -> float:
        keep = cost.keep_fractions(s)
        kept = [curve[max(int(round(k * len(curve))), 1) - 1] for curve, k in zip(curves, keep)]
        return float(100.0 * (w @ np.array(kept)))
    return score


def _build(dense: nn.Module, cost: CostModel, sparsity: np.ndarray, pruner: str,
           example_input: Any) -> tuple[nn.Module, dict[str, Any] | None]:
    from torchslim.speedup import ModelSpeedup

    slim = copy.deepcopy(dense)
    masks = _prune(slim, cost, sparsity, pruner)
    if not masks:
        return slim.eval(), None
    speedup = ModelSpeedup(slim, example_input, masks)
    speedup.speedup_model()
    return slim.eval(), speedup.report.to_dict() if speedup.report is not None else None


def _paired_latency(dense: nn.Module, slim: nn.Module, example: Any, threads: int, rounds: int) -> tuple[float, float]:
    """Median latencies of the dense and the shrunk model, timed in alternating rounds."""
    d, s = [], []
    for _ in range(rounds):
        d.append(measure_latency(dense, example, threads=threads, warmup=2, repeats=8))
        s.append(measure_latency(slim, example, threads=threads, warmup=2, repeats=8))
    return float(np.median(d)), float(np.median(s))


def _check(bounds: Sequence[Any], measured: Mapping[str, float], tolerance: float,
           dense_table_ms: float | None) -> tuple[list[str], list[str]]:
    """Budgets the built model misses, and latency budgets it undershoots by far (pruned more
    than needed); latency compared as a share of dense timed in the same run."""
    over, under = [], []
    for b in bounds:
        value = measured[b.metric]
        if b.metric == "latency":
            share, budget = value / measured["dense_latency"], b.value / dense_table_ms
            if share > budget * (1 + tolerance):
                over.append(f"latency {share:.1%} of dense, over the budget of {budget:.1%}")
            elif share < budget * (1 - 2 * tolerance):
                under.append(f"latency {share:.1%} of dense, well under the budget of {budget:.1%}")
        elif value > b.value * (1 + 1e-9):
            over.append(f"{b.metric} {value:,.0f} (budget {b.value:,.0f})")
    return over, under


def _best_round(rounds: Sequence[Mapping[str, Any]], bounds: Sequence[Any], tolerance: float,
                dense_table_ms: float | None) -> int:
    """The build to keep: the one whose measured latency share is closest to its budget among
    those within ``2 * tolerance`` of it and meeting every other budget; else, among those that
    meet every budget, the one that removed least; else the one that came closest."""
    def share(r: Mapping[str, Any]) -> float:
        m = r["measured"]
        return m["latency"] / m["dense_latency"] if "latency" in m else 0.0
    meeting = [i for i, r in enumerate(rounds) if not _check(bounds, r["measured"], tolerance, dense_table_ms)[0]]
    latency = next((b for b in bounds if b.metric == "latency"), None)
    if latency is not None and dense_table_ms:
        budget = latency.value / dense_table_ms
        near = [i for i, r in enumerate(rounds) if abs(share(r) / budget - 1) <= 2 * tolerance
                and not _check([b for b in bounds if b is not latency], r["measured"], tolerance, dense_table_ms)[0]]
        if near:
            return min(near, key=lambda i: abs(share(rounds[i]) / budget - 1))
    if meeting:
        return max(meeting, key=lambda i: share(rounds[i]))
    over = [i for i, r in enumerate(rounds) if "latency" in r["measured"]]
    return min(over, key=lambda i: share(rounds[i])) if over else len(rounds) - 1


def _int8(model: nn.Module, data: Iterable[Any], example_input: Any) -> Any:
    from torchslim.quantization.demo import INT8_CONFIG
    from torchslim.quantization.int8 import deploy
    from torchslim.quantization.quantizers import PtqQuantizer

    fake = copy.deepcopy(model).eval()
    batches = [b[0] if isinstance(b, (tuple, list)) else b for _, b in zip(range(8), data)]
    _, calibration = PtqQuantizer(fake, INT8_CONFIG).compress(batches, max_steps=len(batches))
    return deploy(fake, calibration, batches[0])


__all__ = ["PRUNERS", "PROXIES", "compress"]
