"""Figures from raw measurements: percentiles of latency histograms, medians and tables.

A table shows, per server, the median over runs with the spread (min - max) in
parentheses, then one ratio column per peer: presenced's median divided by the peer's
(so for latency, CPU and memory below 1 is better for presenced; for rates above 1 is).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

__all__ = ["Metric", "percentile", "table"]


def percentile(hist: Sequence[tuple[float, int]], q: float) -> float:
    """The ``q`` quantile (0..1) of a sorted (value, count) histogram; NaN when empty."""
    total = sum(c for _, c in hist)
    if total == 0:
        return math.nan
    rank = max(1, math.ceil(q * total))
    seen = 0
    for value, count in hist:
        seen += count
        if seen >= rank:
            return float(value)
    return float(hist[-1][0])


class Metric:
    """One row of a table: the result key, its label and its number format."""

    def __init__(self, key: str, label: str, fmt: str = "{:.1f}") -> None:
        self.key = key
        self.label = label
        self.fmt = fmt

    def show(self, value: float) -> str:
        """The value formatted, or "n/a" for NaN."""
        return "n/a" if math.isnan(value) else self.fmt.format(value)


def _values(runs: list[dict[str, Any]], server: str, key: str) -> list[float]:
    out = []
    for r in runs:
        if r.get("server") == server and key in r and r[key] is not None:
            out.append(float(r[key]))
    return out


def table(
    runs: list[dict[str, Any]], servers: list[str], metrics: list[Metric], base: str = "presenced"
) -> str:
    """Markdown table: median (min - max) per server, then ``base`` / peer ratios."""
    peers = [s for s in servers if s != base]
    cols = [*servers, *(f"{base} / {p}" for p in peers if base in servers)]
    lines = ["| Metric | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for m in metrics:
        cells: list[str] = []
        medians: dict[str, float] = {}
        for s in servers:
            vals = [v for v in _values(runs, s, m.key) if not math.isnan(v)]
            if not vals:
                cells.append("n/a")
                medians[s] = math.nan
                continue
            med = statistics.median(vals)
            medians[s] = med
            spread = f" ({m.show(min(vals))} - {m.show(max(vals))})" if len(vals) > 1 else ""
            cells.append(m.show(med) + spread)
        if base in servers:
            for p in peers:
                b, v = medians[base], medians[p]
                ok = not (math.isnan(b) or math.isnan(v)) and v != 0
                cells.append(f"{b / v:.2f}" if ok else "n/a")
        lines.append(f"| {m.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
