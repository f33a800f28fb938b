"""Markdown summary of benchmarks/speedup_zoo_results.jsonl (written by speedup_zoo.py)."""
from __future__ import annotations

import json
from pathlib import Path

EXTRAS = Path(__file__).resolve().parent / "speedup_extras_results.md"


def _m(x: float | None, scale: float, digits: int = 2) -> str:
    return "-" if x is None else f"{x / scale:.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}"


def load_rows(raw: Path) -> list[dict]:
    rows = {}
    for line in raw.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[row["model"]] = row  # a re-run replaces the earlier row
    return sorted(rows.values(), key=lambda r: r["model"])


def zoo_tables(rows: list[dict]) -> list[str]:
    ran = [r for r in rows if "skipped" not in r]
    ours_ok = [r for r in ran if r.get("torchslim", {}).get("ok")]
    tp_ok = [r for r in ran if r.get("torch_pruning", {}).get("ok")]
    out = [
        f"Models run: {len(ran)} (skipped as too big: {', '.join(r['model'] for r in rows if 'skipped' in r) or 'none'}).",
        "",
        "| | torchslim | Torch-Pruning 1.6 |",
        "|---|---|---|",
        f"| success (pruned model runs, same output shape) | **{len(ours_ok)}/{len(ran)}** "
        f"({100 * len(ours_ok) / max(len(ran), 1):.0f}%) | {len(tp_ok)}/{len(ran)} |",
        "| output equals the masked model (checked) | every success | not checked (no masked reference) |",
    ]
    both = [r for r in ours_ok if r in tp_ok]
    if both:
        def total(key: str, side: str) -> float:
            return sum(r[side][key] for r in both)

        out.append(f"| params kept, sum over {len(both)} models both pruned | "
                   f"{100 * total('params', 'torchslim') / sum(r['params'] for r in both):.1f}% | "
                   f"{100 * total('params', 'torch_pruning') / sum(r['params'] for r in both):.1f}% |")
        out.append(f"| MACs kept, same models | {100 * total('macs', 'torchslim') / sum(r['macs'] for r in both):.1f}% | "
                   f"{100 * total('macs', 'torch_pruning') / sum(r['macs'] for r in both):.1f}% |")
        ours_t = sum(r["torchslim"]["groups_s"] + r["torchslim"]["speedup_s"] for r in both)
        tp_t = sum(r["torch_pruning"]["build_s"] + r["torch_pruning"]["prune_s"] for r in both)
        out.append(f"| tool time, sum over the same models (s) | {ours_t:.0f} (groups + speedup incl. check) | "
                   f"{tp_t:.0f} (graph build + prune) |")
    big = [r for r in ours_ok if r["model"] in ("densenet201", "convnext_large", "swin_b", "swin_v2_b", "maxvit_t",
                                                "vit_l_16", "regnet_y_32gf", "efficientnet_v2_l")]
    if big:
        out += ["", "Graph building on large models (s): torchslim's trace + channel analysis "
                "(`auto_set_dependency_group_ids`) vs Torch-Pruning's `MetaPruner(...)` graph build:", "",
                "| model | torchslim trace + analysis | Torch-Pruning graph build |", "|---|---|---|"]
        for r in big:
            tp = r.get("torch_pruning", {})
            tp_cell = f"{tp['build_s']:.1f}" if tp.get("ok") else f"failed ({tp.get('error', '')[:40]})"
            out.append(f"| {r['model']} | {r['torchslim']['groups_s']:.1f} | {tp_cell} |")
    out += ["", "Per model (params/MACs after pruning in millions / GMACs; latency ratio = dense / pruned, "
            "2 threads; times in s; `-`: not measured, see notes):", "",
            "| model | params M | GMACs | ts params | ts GMACs | ts lat b1 | ts lat b32 | ts time | "
            "TP params | TP GMACs | TP lat b1 | TP lat b32 | TP time |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r or "crashed" in r:
            why = r.get("skipped") or r.get("crashed")
            out.append(f"| {r['model']} | {'skipped: ' if 'skipped' in r else 'crashed: '}{why} |" + " |" * 11)
            continue
        ts, tp = r.get("torchslim", {}), r.get("torch_pruning", {})
        if "omp_wait_policy" not in r:  # measured with spinning OpenMP waits on shared cores: not reliable
            r = {k: v for k, v in r.items() if not k.startswith("dense_lat")}
        cells = [r["model"], _m(r["params"], 1e6), _m(r["macs"], 1e9)]
        if ts.get("ok"):
            cells += [_m(ts["params"], 1e6), _m(ts["macs"], 1e9), _ratio(r.get("dense_lat1_ms"), ts.get("lat1_ms")),
                      _ratio(r.get("dense_lat32_ms"), ts.get("lat32_ms")), f"{ts['groups_s'] + ts['speedup_s']:.1f}"]
        else:
            cells += ["FAIL"] + ["-"] * 4
        if tp.get("ok"):
            cells += [_m(tp["params"], 1e6), _m(tp["macs"], 1e9), _ratio(r.get("dense_lat1_ms"), tp.get("lat1_ms")),
                      _ratio(r.get("dense_lat32_ms"), tp.get("lat32_ms")), f"{tp['build_s'] + tp['prune_s']:.1f}"]
        else:
            cells += ["FAIL"] + ["-"] * 4
        out.append("| " + " | ".join(cells) + " |")
    failures = [(r["model"], "torchslim", r["torchslim"]["error"]) for r in ran if "torchslim" in r and not r["torchslim"]["ok"]]
    failures += [(r["model"], "crashed", r["crashed"]) for r in rows if "crashed" in r]
    tp_failures = [(r["model"], r["torch_pruning"]["error"]) for r in ran if "torch_pruning" in r
                   and not r["torch_pruning"]["ok"]]
    out += ["", "torchslim failures (every one, with its reason):", ""]
    out += [f"- {m}: {why}" for m, _, why in failures] or ["- none"]
    out += ["", "Torch-Pruning failures:", ""]
    out += [f"- {m}: {why}" for m, why in tp_failures] or ["- none"]
    barriers = sorted({b for r in ours_ok for b in r["torchslim"].get("barriers", [])})
    out += ["", "Ops kept whole as barriers somewhere in the zoo (channels around them kept): "
            + (", ".join(f"`{b}`" for b in barriers) or "none") + "."]
    return out


def write_report(raw: Path, target: Path) -> None:
    rows = load_rows(raw)
    lines = ["# Speedup: masks → smaller, faster models", "",
             "Written by `benchmarks/speedup_zoo.py` (zoo) and `benchmarks/speedup_extras.py` (ResNet-18 at 50%, "
             "transformers). Machine: 2 shared CPU cores, torch 2.14 CPU; random weights, 224x224 inputs.", "",
             "## torchvision classification zoo, 30% of output channels of every Conv2d/Linear but the classifier",
             ""]
    lines += zoo_tables(rows)
    if EXTRAS.exists():
        lines += ["", EXTRAS.read_text().strip()]
    notes = Path(__file__).resolve().parent / "speedup_notes.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    target.write_text("\n".join(lines) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    write_report(here / "speedup_zoo_results.jsonl", here / "results" / "speedup.md")
