"""Multi-fidelity tuners (Hyperband, BOHB) vs TPE and Random at equal total compute.

Trials receive a budget (``TRIAL_BUDGET``); a trial with budget b costs b units. Part
``hartmann``: a noisy low-fidelity Hartmann-6, where a trial with budget b sees
f(x) + noise·√(R/b − 1)·ε(x, b) (ε a fixed pseudo-random value in [−1, 1) per point and
budget); Random and TPE run every trial at b = R. The best-found value is the *true* f of the
best configuration evaluated at the full budget R. For each run the compute spent until the
best-found first reaches a target is recorded; a run that never does counts as "more than the
whole budget", so the median is honest about failures. Seeds: 20 by default.

Part ``lenet``: real learning curves. ``fidelity_table.py`` trained LeNet5 for 9 epochs under
each of 384 SGD configurations (lr, momentum, batch size, weight decay) and stored the
validation accuracy after every epoch; a trial with budget b (epochs) reads it after b epochs
and costs b epochs (a promoted configuration trains again from scratch, as NNI's Hyperband
trials do without a checkpoint). R = 9, eta = 3; maximised.

Writes benchmarks/results/tuners_fidelity.json, renders tuners_fidelity.md and draws
tuners_fidelity.png (best-found vs compute, mean ± sd band; share of runs at the target vs
compute) from it.

    python benchmarks/tuners_fidelity.py [--seeds 20] [--render-only]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fidelity_table import PATH as TABLE_PATH  # noqa: E402
from fidelity_table import SPACE as TABLE_SPACE  # noqa: E402
from fidelity_table import key as table_key  # noqa: E402
from results_io import RESULTS, load, machine, save  # noqa: E402
from tuners import HARTMANN_SPACE, hartmann6  # noqa: E402

from torchslim.experiment.tuners import create_tuner  # noqa: E402

R, ETA = 27, 3
NOISES = (0.05, 0.2, 0.6)  # how misleading a low budget is: the error at b=1 spans ±noise·√26
TARGETS = (-2.5, -3.0, -3.2)  # optimum -3.32237
FULL_TRIALS = 60  # total compute = this many full-budget trials
TUNERS = ("Random", "TPE", "Hyperband", "BOHB")
LENET_R, LENET_FULL_TRIALS = 9, 30
LENET_TARGETS = (95.0, 95.6, 96.2)  # validation %: the best 11 %, 5 %, 1 % of the 384 configurations


def _pseudo_noise(p: dict, budget: float) -> float:
    key = json.dumps({k: round(v, 9) for k, v in p.items() if k != "TRIAL_BUDGET"}, sort_keys=True)
    h = hashlib.sha256(f"{key}|{budget}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2 ** 64 * 2 - 1  # deterministic, in [-1, 1)


def low_fidelity(p: dict, budget: float, noise: float) -> float:
    return hartmann6(p) + noise * math.sqrt(R / budget - 1) * _pseudo_noise(p, budget)


def drive(tuner: str, seed: int, space: dict, full: float, compute: float, observe, truth,
          maximize: bool) -> dict:
    """Spend ``compute`` units with ``tuner``; a trial with budget b costs b and reports
    ``observe(params, b)``. The trace holds (units spent, best ``truth`` so far) after every
    trial that ran at the full budget; ``pick`` is the best full-budget configuration."""
    args = {"R": full, "eta": ETA} if tuner in ("Hyperband", "BOHB") else {}
    mode = "maximize" if maximize else "minimize"
    t = create_tuner(tuner, space, {"optimize_mode": mode, "seed": seed, **args})
    sign = -1 if maximize else 1
    spent, best, pick, seq, trace = 0.0, math.inf, None, 0, []
    while spent < compute:
        proposal = t.generate(seq)
        if proposal is None:
            raise RuntimeError(f"{tuner} waits with no trial running")
        params = proposal[0]
        budget = params.get("TRIAL_BUDGET", full)
        spent += budget
        t.receive(seq, observe(params, budget))
        if budget >= full and sign * truth(params) < best:
            best, pick = sign * truth(params), params
        if budget >= full:
            trace.append((spent, sign * best))
        seq += 1
    return {"trace": trace, "trials": seq, "pick": {k: v for k, v in (pick or {}).items() if k != "TRIAL_BUDGET"}}


def run_hartmann(tuner: str, seed: int, compute: float, noise: float) -> dict:
    return drive(tuner, seed, HARTMANN_SPACE, R, compute,
                 lambda p, b: low_fidelity(p, b, noise) if b < R else hartmann6(p), hartmann6, maximize=False)


def run_lenet(tuner: str, seed: int, compute: float, table: dict) -> dict:
    run = drive(tuner, seed, TABLE_SPACE, LENET_R, compute, lambda p, b: table[table_key(p)]["val"][int(b) - 1],
                lambda p: table[table_key(p)]["val"][-1], maximize=True)
    run["test"] = table[table_key(run["pick"])]["test"] if run["pick"] else None
    return run


# ---- statistics ----------------------------------------------------------------------------------

def best_at(run: dict, units: float) -> float:
    """Best-found after ``units`` of compute (nan before the first full-budget result)."""
    best = math.nan
    for spent, value in run["trace"]:
        if spent > units:
            break
        best = value
    return best


def reached(run: dict, target: float, maximize: bool = False) -> float:
    """Units spent when the best-found first reached ``target`` (inf: never)."""
    return next((spent for spent, value in run["trace"] if (value >= target if maximize else value <= target)),
                math.inf)


def _median_cell(values: list[float], compute: float) -> str:
    med = statistics.median(values)
    got = sum(v < math.inf for v in values)
    return (f"{med:.0f}" if med < math.inf else f"> {compute:g}") + f" ({got}/{len(values)})"


def _mean_sd(values: list[float], digits: int = 3) -> str:
    finite = [v for v in values if not math.isnan(v)]
    if len(finite) < len(values):
        return f"– ({len(values) - len(finite)} runs without a full-budget result)"
    return f"{statistics.mean(finite):.{digits}f} ± {statistics.stdev(finite):.2f}"


def _table(tuners: dict, compute: float, targets: tuple, maximize: bool, digits: int) -> list[str]:
    sign = "≥" if maximize else "≤"
    lines = ["| tuner | best @25 % | best @50 % | best @100 % | "
             + " | ".join(f"compute to {sign} {t} (median)" for t in targets) + " | trials run |"
             + (" pick's test % |" if maximize else ""),
             "|---" * (5 + len(targets) + maximize) + "|"]
    for tuner, runs in tuners.items():
        cells = [_mean_sd([best_at(r, share * compute) for r in runs], digits) for share in (0.25, 0.5, 1.0)]
        cells += [_median_cell([reached(r, t, maximize) for r in runs], compute) for t in targets]
        cells.append(f"{statistics.mean(r['trials'] for r in runs):.0f}")
        if maximize:
            cells.append(_mean_sd([r["test"] for r in runs], 2))
        lines.append(f"| {tuner} | " + " | ".join(cells) + " |")
    return lines + [""]


def _verdict(tuners: dict, compute: float, targets: tuple, maximize: bool) -> str:
    """BOHB's and Hyperband's median compute to each target next to TPE's (rendered, not typed)."""
    cells = []
    for t in targets:
        med = {name: statistics.median(reached(r, t, maximize) for r in tuners[name])
               for name in ("TPE", "Hyperband", "BOHB") if name in tuners}
        shown = {n: (f"{m:.0f}" if m < math.inf else f"> {compute:g}") for n, m in med.items()}
        if "TPE" not in med:
            continue
        wins = [n for n in ("Hyperband", "BOHB") if n in med and med[n] <= med["TPE"] and med[n] < math.inf]
        cells.append(f"{'≥' if maximize else '≤'} {t}: " + ", ".join(f"{n} {v}" for n, v in shown.items())
                     + (f" ({' and '.join(wins)} ≤ TPE)" if wins else
                        " (none got there in half the runs)" if all(m == math.inf for m in med.values())
                        else " (TPE less compute)"))
    return "Median compute to target — " + "; ".join(cells) + "."


def render(raw: dict) -> str:
    part = raw["hartmann"]
    compute = part["compute"]
    seeds = len(next(iter(next(iter(part["noise"].values())).values())))
    lines = ["## Multi-fidelity: Hyperband and BOHB vs TPE at equal compute", "",
             f"`python benchmarks/tuners_fidelity.py` — {raw['machine']} (results do not depend on it). "
             "Trials receive a budget (`TRIAL_BUDGET`) and cost it; Random and TPE run "
             "every trial at the full budget R. Best-found = the true value of the best configuration evaluated at "
             "the full budget. **Compute to target: the median over seeds of the units spent until the best-found "
             "first reached it; a run that never did counts as more than the whole compute** (runs that got there "
             "in brackets).", "",
             "![best-found vs compute](tuners_fidelity.png)", ""]
    lenet = raw.get("lenet")
    if lenet:
        table = lenet["table"]
        lines += [f"### LeNet5 learning curves: budget = epochs (R = {LENET_R}, eta = {ETA}; higher is better)", "",
                  f"`benchmarks/fidelity_table.py` trained LeNet5 with SGD for {table['epochs']} epochs on "
                  f"{table['train_images']:,} MNIST images under each of {table['configs']} configurations "
                  f"({', '.join(table['grid'])}) and stored the validation accuracy (1,000 images) after every epoch "
                  f"({table['machine']}); the best configuration reaches {table['best']:.1f} %. "
                  "A trial with budget b reads the curve after b epochs and costs b epochs (a promoted "
                  "configuration trains again from scratch). Rank correlation with the 9-epoch accuracy: "
                  f"{table['spearman'][0]:.2f} after 1 epoch, {table['spearman'][1]:.2f} after 3. "
                  f"Total compute {lenet['compute']:g} epochs ({lenet['compute'] / LENET_R:g} full trials); "
                  f"{len(next(iter(lenet['runs'].values())))} seeds per tuner. The "
                  "pick (best full-budget configuration) is tested once (2,000 test images).", ""]
        lines += _table(lenet["runs"], lenet["compute"], LENET_TARGETS, True, 2)
        lines += [_verdict(lenet["runs"], lenet["compute"], LENET_TARGETS, True), ""]
    lines += [f"### Hartmann-6 with a noisy low budget (R = {R}, eta = {ETA}; lower is better, optimum −3.322)", "",
              "A trial with budget b sees f(x) + noise·√(R/b − 1)·ε(x, b), ε a fixed pseudo-random value in "
              f"[−1, 1). Total compute {compute:g} units ({compute / R:g} full-budget trials); {seeds} seeds per "
              "tuner. Noise 0.05: low "
              "budgets informative; 0.2: the b = 1 error (±1.0) is as large as the spread of f over random points; "
              "0.6: misleading.", ""]
    for noise, tuners in part["noise"].items():
        lines += [f"noise {noise}:", ""] + _table(tuners, compute, TARGETS, False, 3)
        lines += [_verdict(tuners, compute, TARGETS, False), ""]
    if raw.get("notes"):
        lines += [raw["notes"], ""]
    return "\n".join(lines)


def plot(raw: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = []  # (title, runs by tuner, compute, target, optimum, maximize)
    if raw.get("lenet"):
        lenet = raw["lenet"]
        panels.append(("LeNet5 epochs", lenet["runs"], lenet["compute"], LENET_TARGETS[1], lenet["table"]["best"],
                       True))
    for noise, tuners in raw["hartmann"]["noise"].items():
        panels.append((f"Hartmann-6, noise {noise}", tuners, raw["hartmann"]["compute"], TARGETS[1], -3.32237, False))
    fig, axes = plt.subplots(2, len(panels), figsize=(4.8 * len(panels), 7.5), squeeze=False)
    for col, (title, tuners, compute, target, optimum, maximize) in enumerate(panels):
        grid = np.linspace(compute / 40, compute, 80)
        for tuner, runs in tuners.items():
            curves = np.array([[best_at(r, u) for u in grid] for r in runs])
            ok = ~np.isnan(curves).any(axis=0)
            mean, sd = curves[:, ok].mean(0), curves[:, ok].std(0)
            line, = axes[0][col].plot(grid[ok], mean, label=tuner)
            axes[0][col].fill_between(grid[ok], mean - sd, mean + sd, alpha=0.15, color=line.get_color())
            hits = np.array([reached(r, target, maximize) for r in runs])
            axes[1][col].step(grid, [(hits <= u).mean() for u in grid], where="post", label=tuner,
                              color=line.get_color())
        unit = "epochs" if maximize else "units"
        axes[0][col].set(title=f"{title}: best-found, mean ± sd", xlabel=f"compute ({unit})",
                         ylabel="best full-budget value")
        axes[0][col].axhline(optimum, color="grey", lw=0.8, ls=":")
        if maximize:  # the first full-budget results spread widely; the race is near the top
            axes[0][col].set_ylim(optimum - 5, optimum + 0.5)
        axes[1][col].set(title=f"{title}: runs at {'≥' if maximize else '≤'} {target}", xlabel=f"compute ({unit})",
                         ylabel="share of seeds", ylim=(0, 1.02))
        axes[0][col].legend(fontsize=8)
        axes[1][col].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def lenet_table() -> tuple[dict, dict]:
    """The stored learning curves by configuration, and what the report says about them."""
    import numpy as np

    stored = json.loads(TABLE_PATH.read_text())
    table = {table_key(r["config"]): r for r in stored["rows"]}
    final = np.array([r["val"][-1] for r in stored["rows"]])

    def rank(a):
        return np.argsort(np.argsort(a))
    spearman = [float(np.corrcoef(rank([r["val"][b - 1] for r in stored["rows"]]), rank(final))[0, 1]) for b in (1, 3)]
    about = {"configs": len(table), "epochs": stored["epochs"], "train_images": stored["train_images"],
             "grid": list(stored["grid"]), "machine": stored["machine"], "best": float(final.max()),
             "spearman": spearman}
    return table, about


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--lenet-seeds", type=int, default=50, help="the LeNet part reads a table: cheap")
    parser.add_argument("--part", choices=["all", "hartmann", "lenet"], default="all")
    parser.add_argument("--tuners", default=",".join(TUNERS))
    parser.add_argument("--quick", action="store_true", help="3 seeds, a smoke run (not saved)")
    parser.add_argument("--dry-run", action="store_true", help="print the table, save nothing")
    parser.add_argument("--note", default="", help="recorded with the results")
    parser.add_argument("--render-only", action="store_true", help="re-render the .md and .png from the JSON")
    args = parser.parse_args()
    raw = load("tuners_fidelity") or {}
    if not args.render_only:
        import torch

        torch.set_num_threads(1)
        seeds = list(range(3 if args.quick else args.seeds))
        raw.update({"machine": machine(shared=True), "notes": args.note})
        if args.part in ("all", "lenet"):
            table, about = lenet_table()
            compute = LENET_FULL_TRIALS * LENET_R
            raw["lenet"] = {"compute": compute, "table": about, "runs": {}}
            lenet_seeds = list(range(3 if args.quick else args.lenet_seeds))
            for tuner in args.tuners.split(","):
                runs = raw["lenet"]["runs"][tuner] = [run_lenet(tuner, s, compute, table) for s in lenet_seeds]
                hits = [reached(r, LENET_TARGETS[1], True) for r in runs]
                print(f"lenet {tuner:10s} best {statistics.mean(r['trace'][-1][1] for r in runs):.2f} to "
                      f"{LENET_TARGETS[1]}: {_median_cell(hits, compute)}", flush=True)
        if args.part in ("all", "hartmann"):
            compute = FULL_TRIALS * R
            raw["hartmann"] = {"compute": compute, "noise": {}}
            for noise in NOISES:
                table = raw["hartmann"]["noise"][str(noise)] = {}
                for tuner in args.tuners.split(","):
                    t0 = time.perf_counter()
                    table[tuner] = [run_hartmann(tuner, s, compute, noise) for s in seeds]
                    finals = [r["trace"][-1][1] for r in table[tuner]]
                    print(f"noise {noise} {tuner:10s} best {statistics.mean(finals):.3f} "
                          f"to -3.0: {_median_cell([reached(r, -3.0) for r in table[tuner]], compute)} "
                          f"{time.perf_counter() - t0:.1f}s", flush=True)
        if args.quick or args.dry_run:
            print(render(raw))
            return
    save("tuners_fidelity", raw, render(raw))
    plot(raw, RESULTS / "tuners_fidelity.png")
    print(render(raw))


if __name__ == "__main__":
    main()
