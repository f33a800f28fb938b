"""Render ``benchmarks/results/nas.md`` from the NAS benchmarks' JSON (never typed by hand).

Inputs (each optional): ``nas_strategies.json`` (nas_strategies.py), ``nas_darts.json``
(nas_darts.py), ``nas_seed_example.json`` (nas_seed_example.py).
"""
from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def strategies_md(d: dict) -> list[str]:
    opt = d["optimum"]
    lines = [
        "### Multi-trial strategies on the tabular MNIST benchmark (known optimum)",
        "",
        f"108 architectures, each trained once (`benchmarks/nas_tabular_build.py`); optimum "
        f"validation accuracy **{opt['val']:.4f}** ({opt['arch']}). Budget {d['budget']} trials "
        f"per search, seeds {d['seeds'][0]}..{d['seeds'][-1]} ({len(d['seeds'])}), every "
        f"search through the full `NasExperiment` engine; {d['seconds']:.0f} s in total. "
        f"{d['machine']}.",
        "",
        "| strategy | best val acc (mean ± sd) | regret to optimum | optimum found "
        "| test acc of export |",
        "|---|---|---|---|---|",
    ]
    for name, s in d["summary"].items():
        lines.append(f"| {name} | {s['mean_best_val']:.4f} ± {s['sd_best_val']:.4f} | "
                     f"{s['mean_regret']:.4f} | {s['optimum_found']}/{len(d['seeds'])} | "
                     f"{s['mean_test_of_export']:.4f} |")
    rnd = d["summary"]["Random"]["mean_regret"]
    for name in ("RegularizedEvolution", "TPE"):
        ratio = d["summary"][name]["mean_regret"] / rnd if rnd else float("nan")
        lines.append(f"\n{name}: mean regret {ratio:.2f}x Random's "
                     f"({'beats' if ratio < 1 else 'does not beat'} Random).")
    if plot_regret(d):
        lines += ["", "![regret vs trials](nas_strategies.png)"]
    hw = d["hardware_aware"]
    ok = all(h["all_trials_within_budget"] and h["export_params"] <= d["param_budget"] for h in hw)
    lines += [
        "",
        f"### Hardware-aware: parameter budget {d['param_budget']:,}",
        "",
        "`Chain(RegularizedEvolution(), Filter(lambda s: NumParamsProfiler(space).profile(s) <= "
        "budget))`; the profiler freezes samples on the meta device (no weights).",
        "",
        f"Every trial and every export within budget, all {len(hw)} seeds: **{ok}**.",
        "",
    ]
    hits = sum(abs(h["export_val"] - h["budget_optimum_val"]) < 1e-12 for h in hw)
    lines.append(f"Largest exported model: {max(h['export_params'] for h in hw):,} parameters; "
                 f"the export is the best architecture under the budget in {hits}/{len(hw)} "
                 f"seeds (mean export val acc "
                 f"{sum(h['export_val'] for h in hw) / len(hw):.4f}, budget optimum "
                 f"{hw[0]['budget_optimum_val']:.4f}).")
    lat = d.get("latency")
    if lat:
        lines += ["", f"Latency budget {lat['budget_ms']:.3f} ms (median of the space; predicted "
                  f"{lat['min_ms']:.3f}..{lat['max_ms']:.3f} ms) from a `LatencyProfiler` table of "
                  f"{lat['table_entries']} layer measurements ({lat['table_seconds']:.1f} s to "
                  f"build, batch 1): TPE + Filter ran {lat['trials']} trials, all within budget: "
                  f"**{lat['all_trials_within_budget']}**; export {lat['export']} at "
                  f"{lat['export_ms']:.3f} ms, val acc {lat['export_val']:.4f}."]
    front = hw[0]["pareto_front"]
    lines += ["", "Pareto front (accuracy vs parameters) exported with "
              "`export_top_models(top_k=5, objectives={'params': profiler.profile})`, seed 0:",
              "", "| architecture | val acc | params |", "|---|---|---|"]
    lines += [f"| {p['arch']} | {p['val']:.4f} | {p['params']:,} |" for p in front]
    return lines


def plot_regret(d: dict) -> bool:
    """Mean regret-so-far against trials per strategy -> nas_strategies.png."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, runs in d["runs"].items():
        n = min(len(r["regret_curve"]) for r in runs)
        mean = [sum(r["regret_curve"][i] for r in runs) / len(runs) for i in range(n)]
        ax.plot(range(1, n + 1), mean, label=name)
    ax.set_xlabel("trials")
    ax.set_ylabel("regret (val accuracy)")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_title(f"mean over {len(d['seeds'])} seeds, tabular MNIST-108")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "nas_strategies.png", dpi=110)
    plt.close(fig)
    return True


def darts_md(d: dict) -> list[str]:
    return [
        "### DARTS on a small cell space (CPU)",
        "",
        "| search epochs | search time | retrain epochs | retrain time | params | test accuracy |",
        "|---|---|---|---|---|---|",
        f"| {d['search_epochs']} | {d['search_seconds']:.0f} s | {d['retrain_epochs']} | "
        f"{d['retrain_seconds']:.0f} s | {d['params']:,} | **{d['test_accuracy']:.4f}** |",
        "",
        f"One search and one retrain. Exported cell: `{d['architecture']}`. {d['machine']}.",
    ]


def seed_md(d: dict) -> list[str]:
    accs = ", ".join(f"{a:.4f}" for a in d["retrain_test_accuracy"])
    lines = [
        "### The seeds' NAS example (`examples/nas/hello_nas.py`)",
        "",
        f"Random, 3 trials of {d['search_epochs']} epoch(s), scored on a validation split; "
        f"search {d['search_seconds']:.0f} s. Trials:",
        "",
        "| architecture | status | val accuracy (%) |", "|---|---|---|",
    ]
    lines += [f"| {t['arch']} | {t['status']} | {t['val']} |" for t in d["trials"]]
    lines += ["", f"Top model `{d['top']}` frozen and retrained {d['retrain_epochs']} epochs "
              f"on 8,000 images: test accuracy "
              f"**{d['retrain_mean']:.4f} ± {d['retrain_sd']:.4f}** "
              f"({len(d['retrain_test_accuracy'])} seeds: {accs}). {d['machine']}."]
    return lines


def main() -> None:
    parts = [["## NAS", ""]]
    for name, render in (("nas_seed_example.json", seed_md), ("nas_strategies.json", strategies_md),
                         ("nas_darts.json", darts_md)):
        data = _load(name)
        if data is not None:
            parts.append(render(data) + [""])
    text = "\n".join(line for part in parts for line in part)
    (RESULTS / "nas.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
