"""What a speedup did: per-layer requested vs achieved, barriers, untraced parts, timings."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torchslim.graph.engine import Barrier


@dataclass
class LayerRow:
    name: str
    type: str
    sizes: dict[str, tuple[int, int]]  # slot -> (before, after)
    requested: float | None  # share of output channels the masks removed (None: not a mask target)

    @property
    def achieved(self) -> float:
        if not self.sizes:  # not shrinkable by the analysis (a barrier, an unknown module)
            return 0.0
        before, after = self.sizes.get("heads") or self.sizes.get("out") or next(iter(self.sizes.values()))
        return 1.0 - after / before if before else 0.0


@dataclass
class SpeedupReport:
    layers: list[LayerRow] = field(default_factory=list)
    barriers: list[Barrier] = field(default_factory=list)
    untraced: list[tuple[str, str]] = field(default_factory=list)
    max_abs_diff: float | None = None
    check: Any = None  # CheckResult of shrunk vs reference ("equal" / "unverified"), None unchecked
    deviation: dict[str, Any] | None = None  # how removing unmasked channels changes the user's model
    check_s: float = 0.0  # reference and check runs (not part of the other timings)
    trace_s: float = 0.0
    analysis_s: float = 0.0
    shrink_s: float = 0.0
    total_s: float = 0.0

    def shortfalls(self, tolerance: float = 1e-6) -> list[LayerRow]:
        """Layers where fewer channels went than the masks asked for (coupling or a barrier kept
        them), including layers that asked for channels to go but stayed unchanged."""
        return [r for r in self.layers if r.requested is not None and r.achieved + tolerance < r.requested]

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": [{"name": r.name, "type": r.type, "sizes": r.sizes, "requested": r.requested,
                        "achieved": r.achieved} for r in self.layers],
            "barriers": [vars(b) for b in self.barriers],
            "untraced": [{"module": m, "reason": r} for m, r in self.untraced],
            "max_abs_diff": self.max_abs_diff,
            "check": self.check.to_dict() if self.check is not None else None,
            "deviation": self.deviation,
            "seconds": {"trace": self.trace_s, "analysis": self.analysis_s, "shrink": self.shrink_s,
                        "check": self.check_s, "total": self.total_s},
        }

    def summary(self, max_rows: int = 40) -> str:
        lines = [f"speedup: {sum(any(b != a for b, a in r.sizes.values()) for r in self.layers)} layers shrunk in {self.total_s:.2f} s "
                 f"(trace {self.trace_s:.2f} s, analysis {self.analysis_s:.2f} s); "
                 f"check: {self.check if self.check is not None else 'not run'}"]
        if self.deviation:
            lines.append(f"differs from the model as given: {self.deviation.get('cause')} "
                         f"(output moves by {self.deviation.get('max_abs_diff', float('nan')):.3g})")
        lines.append(f"{'layer':40s} {'type':18s} {'in':>11s} {'out':>11s} {'requested':>9s} {'achieved':>9s}")
        for row in self.layers[:max_rows]:
            def size(slot: str) -> str:
                b, a = row.sizes.get(slot, (0, 0))
                return f"{b}->{a}" if slot in row.sizes else "-"
            req = f"{row.requested:.0%}" if row.requested is not None else "-"
            lines.append(f"{row.name[:40]:40s} {row.type[:18]:18s} {size('in'):>11s} {size('out'):>11s} "
                         f"{req:>9s} {row.achieved:>9.0%}")
        if len(self.layers) > max_rows:
            lines.append(f"... {len(self.layers) - max_rows} more layers")
        if self.barriers:
            lines.append(f"{len(self.barriers)} barrier(s) kept whole (channels on both sides kept):")
            lines += [f"  {b.node}: {b.target} - {b.reason}" for b in self.barriers[:max_rows]]
        if self.untraced:
            lines.append("not traceable as a whole (children traced separately, boundaries kept):")
            lines += [f"  {m}: {r}" for m, r in self.untraced[:max_rows]]
        short = self.shortfalls()
        if short:
            lines.append(f"{len(short)} layer(s) achieved less than requested (channels coupled to kept ones).")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()
