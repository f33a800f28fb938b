"""Before/after tables and plots for compression results (markdown, terminal, PNG)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from torchslim.utils.metrics import count_macs, count_nonzero_params, count_params, measure_latency, state_dict_bytes


@dataclass
class Row:
    """One model variant: what it costs and how well it does."""

    stage: str
    params: int
    nonzero_params: int
    macs: int
    accuracy: float
    latency_ms: float
    size_kb: float
    note: str = ""
    batch_latency_ms: float | None = None  # at BATCH_SIZE: where pruning's throughput gain shows
    extra: dict[str, Any] = field(default_factory=dict)


def measure_row(
    stage: str,
    model: nn.Module | Any,
    example: torch.Tensor,
    accuracy: float,
    *,
    note: str = "",
    size_bytes: int | None = None,
    macs: int | None = None,
    params: int | None = None,
    nonzero: int | None = None,
) -> Row:
    """Measure a model (or an int8 deployment, passing sizes explicitly) into a :class:`Row`.

    Latency is taken at ``example``'s batch size and at :data:`BATCH_SIZE` (``example`` repeated).
    """
    is_module = isinstance(model, nn.Module)
    batch = example.repeat(BATCH_SIZE, *([1] * (example.dim() - 1)))
    return Row(
        stage=stage,
        params=params if params is not None else count_params(model),
        nonzero_params=nonzero if nonzero is not None else count_nonzero_params(model),
        macs=macs if macs is not None else (count_macs(model, example) if is_module else 0),
        accuracy=accuracy,
        latency_ms=measure_latency(model if is_module else (lambda: model(example)), example),
        size_kb=(size_bytes if size_bytes is not None else state_dict_bytes(model)) / 1024,
        note=note,
        batch_latency_ms=measure_latency(model if is_module else (lambda: model(batch)), batch, repeats=12),
    )


BATCH_SIZE = 64
_COLUMNS = ("stage", "params", "non-zero", "MACs", "accuracy %", "latency ms", f"ms / batch of {BATCH_SIZE}", "size KB",
            "note")


def _cells(row: Row) -> list[str]:
    return [
        row.stage, f"{row.params:,}", f"{row.nonzero_params:,}", _si(row.macs), f"{row.accuracy:.2f}",
        f"{row.latency_ms:.3f}", "" if row.batch_latency_ms is None else f"{row.batch_latency_ms:.2f}",
        f"{row.size_kb:.1f}", row.note,
    ]


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def markdown_table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def print_table(rows: Sequence[Row], title: str = "torchslim") -> None:
    """A rich table when rich is installed, markdown otherwise."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(markdown_table(rows))
        return
    table = Table(title=title)
    for column in _COLUMNS:
        table.add_column(column, justify="left" if column in ("stage", "note") else "right")
    for row in rows:
        table.add_row(*_cells(row))
    console = Console()
    if not console.is_terminal:  # logs and CI: don't squeeze the table into 80 columns
        console = Console(width=160)
    console.print(table)


def save_rows(rows: Sequence[Row], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "results.md"
    md.write_text(markdown_table(rows) + "\n")
    js = out_dir / "results.json"
    js.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return [md, js]


def plot_layer_sparsity(per_stage: dict[str, dict[str, float]], path: Path, title: str = "per-layer sparsity") -> Path | None:
    """Grouped bar chart of each layer's sparsity (0..1) per stage; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    layers = list(dict.fromkeys(layer for values in per_stage.values() for layer in values))
    width = 0.8 / max(len(per_stage), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(layers)), 4))
    for i, (stage, values) in enumerate(per_stage.items()):
        xs = [j + i * width for j in range(len(layers))]
        bars = ax.bar(xs, [values.get(layer, 0.0) for layer in layers], width, label=stage)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks([j + width * (len(per_stage) - 1) / 2 for j in range(len(layers))], layers)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of weights zero / removed")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def layer_sparsity(model: nn.Module, types: tuple[type, ...] = (nn.Conv2d, nn.Linear)) -> dict[str, float]:
    """Share of zero weights per layer."""
    return {
        name: 1.0 - float(torch.count_nonzero(m.weight)) / m.weight.numel()
        for name, m in model.named_modules()
        if isinstance(m, types)
    }


def layer_removed(model: nn.Module, original_sizes: dict[str, int]) -> dict[str, float]:
    """Share of each layer's original weights that a (sped-up) model no longer has."""
    modules = dict(model.named_modules())
    return {name: 1.0 - modules[name].weight.numel() / size for name, size in original_sizes.items() if name in modules}


def layer_sizes(model: nn.Module, types: tuple[type, ...] = (nn.Conv2d, nn.Linear)) -> dict[str, int]:
    return {name: m.weight.numel() for name, m in model.named_modules() if isinstance(m, types)}
