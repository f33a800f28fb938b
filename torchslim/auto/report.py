"""The result of an auto-compression run: the model, what was searched, tables and plots."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn


@dataclass
class AutoCompressResult:
    """What :func:`torchslim.auto.compress` produced.

    ``model`` is the shrunk (and fine-tuned) model; ``int8_model`` its int8 deployment when
    asked for. ``units`` lists each pruned unit's channels before/after; ``rounds`` the
    predicted vs measured costs of every build; ``history`` every candidate the search scored.
    """

    model: nn.Module
    units: list[dict[str, Any]]
    config_list: list[dict[str, Any]]
    target: str
    bounds: list[dict[str, Any]]
    dense: dict[str, Any]
    compressed: dict[str, Any]
    rounds: list[dict[str, Any]]
    history: list[dict[str, Any]]
    algorithm: str
    proxy: str
    seconds: float
    int8_model: Any = None
    sensitivity: dict[str, Any] | None = None
    speedup: dict[str, Any] | None = None
    latency_table: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool:
        """Whether every budget is met by the measured model (latency: as a share of dense)."""
        return all(self.ratio(b["metric"]) <= self.budget_ratio(b["metric"]) * 1.10 + 1e-9
                   if b["metric"] == "latency" else self.compressed[b["metric"]] <= b["value"] + 1e-9
                   for b in self.bounds)

    def ratio(self, metric: str) -> float:
        if metric == "latency":
            return self.compressed["latency"] / self.compressed["dense_latency"]
        return self.compressed[metric] / self.dense[metric]

    def budget_ratio(self, metric: str) -> float:
        bound = next(b for b in self.bounds if b["metric"] == metric)
        return bound["value"] / self.dense[metric]

    def headline(self) -> str:
        parts = [f"{m}: {self.ratio(m):.1%} of dense" for m in ("params", "macs")]
        if "latency" in self.compressed:
            parts.append(f"latency {self.compressed['latency']:.2f} ms vs {self.compressed['dense_latency']:.2f} ms "
                         f"({self.ratio('latency'):.1%})")
        if self.compressed.get("score") is not None:
            parts.append(f"score {self.dense['score']:.2f} → {self.compressed['score']:.2f}")
        return f"{'met' if self.met else 'MISSED'} {self.target}: " + "; ".join(parts) + f" ({self.seconds:.0f} s)"

    def summary(self) -> str:
        """Markdown: the budget, dense vs compressed, and the per-unit table."""
        lines = [f"**Target**: {self.target} — {'met' if self.met else 'missed'} "
                 f"({self.algorithm}, proxy {self.proxy}, {self.seconds:.0f} s)", "",
                 "| | dense | compressed | ratio |", "|---|---|---|---|"]
        for metric, fmt in (("params", "{:,.0f}"), ("macs", "{:,.0f}")):
            lines.append(f"| {metric} | {fmt.format(self.dense[metric])} | {fmt.format(self.compressed[metric])} "
                         f"| {self.ratio(metric):.3f} |")
        if "latency" in self.compressed:
            lines.append(f"| latency ms (same run) | {self.compressed['dense_latency']:.2f} | "
                         f"{self.compressed['latency']:.2f} | {self.ratio('latency'):.3f} |")
        if self.compressed.get("score") is not None:
            before = self.compressed.get("score_before_finetune")
            lines.append(f"| score | {self.dense['score']:.2f} | {self.compressed['score']:.2f} "
                         f"(before fine-tuning {before:.2f}) | |")
        lines += ["", "| unit | layers | channels | kept | sparsity |", "|---|---|---|---|---|"]
        for u in self.units:
            lines.append(f"| {u['unit']} | {', '.join(u['members'])} | {u['channels']} | {u['kept']} | "
                         f"{u['sparsity']:.0%} |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return _finite({
            "target": self.target, "met": self.met, "bounds": self.bounds, "dense": self.dense,
            "compressed": self.compressed, "units": self.units, "config_list": self.config_list,
            "rounds": self.rounds, "history": self.history, "algorithm": self.algorithm, "proxy": self.proxy,
            "seconds": self.seconds, "sensitivity": self.sensitivity, "speedup": self.speedup,
            "latency_table": self.latency_table, **self.extra})

    def plot(self, path: str | Path) -> Path:
        """Two panels: per-unit sparsity, and the search's score vs cost trade-off."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        metric = self.bounds[0]["metric"]
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        names = [u["unit"] for u in self.units]
        left.barh(range(len(names)), [u["sparsity"] for u in self.units], color="#4c72b0")
        left.set_yticks(range(len(names)), names, fontsize=7)
        left.invert_yaxis()
        left.set_xlim(0, 1)
        left.set_xlabel("sparsity (share of output channels removed)")
        left.set_title("per-layer sparsity found")
        points = [(h[metric], h["score"], h["source"]) for h in self.history if metric in h]
        for source in sorted({p[2] for p in points}):
            xs = [p[0] for p in points if p[2] == source]
            ys = [p[1] for p in points if p[2] == source]
            right.scatter(xs, ys, s=14, label=source, alpha=0.7)
        budget = self.bounds[0]["value"]
        right.axvline(budget, color="k", linestyle="--", linewidth=1, label="budget")
        right.set_xlabel(f"predicted {metric}")
        right.set_ylabel(f"{self.proxy} score")
        right.set_title("candidates scored by the search")
        right.legend(fontsize=7)
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
        plt.close(fig)
        return out

    def save(self, directory: str | Path) -> Path:
        """Write ``model.pt`` (loadable by :func:`torchslim.speedup.load`), ``report.json``,
        ``report.md`` and ``report.png`` into ``directory``."""
        from torchslim.speedup import save

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        save(self.model, out / "model.pt")
        (out / "report.json").write_text(json.dumps(self.to_dict(), indent=1))
        (out / "report.md").write_text(self.summary() + "\n\n![report](report.png)\n")
        try:
            self.plot(out / "report.png")
        except ImportError:  # matplotlib is an extra: the tables are still there
            pass
        return out


def _finite(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


__all__ = ["AutoCompressResult"]
