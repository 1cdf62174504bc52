"""Medians, percentiles and the results table: pure functions, no lab needed (tests/test_bench.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


def median(values: Sequence[float]) -> float:
    """The middle value; the mean of the two middle ones for an even count."""
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value that at least `fraction` of the values do not exceed."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], not {fraction}")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass
class Row:
    """One line of the table: a measure, its samples, and the goal it is held against (if any)."""

    measure: str
    samples: list[float]
    unit: str  # "s", "ms", "MiB", "commands"
    goal: str = ""  # e.g. "< 0.90 s"
    met: bool | None = None  # None: no goal
    note: str = ""
    p95: bool = False  # also show the 95th percentile (mail latency)
    cap: float | None = None  # a run that waited this long was stopped: its sample is the cap, shown "> cap"
    extra: dict = field(default_factory=dict)

    @property
    def median(self) -> float:
        return median(self.samples)

    def as_json(self) -> dict:
        summary = {
            "measure": self.measure,
            "unit": self.unit,
            "runs": len(self.samples),
            "median": self.median,
            "min": min(self.samples),
            "max": max(self.samples),
            "samples": self.samples,
            "goal": self.goal or None,
            "met": self.met,
            "note": self.note or None,
            "cap": self.cap,
            **self.extra,
        }
        if self.p95:
            summary["p95"] = percentile(self.samples, 0.95)
        return summary


def number(value: float, unit: str) -> str:
    """A figure with as many digits as it deserves: 0.0213 s, 1.74 s, 96.4 s, 12 commands."""
    if unit == "commands":
        return f"{value:g}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def shown(value: float, unit: str, cap: float | None = None) -> str:
    """`number`, or "> cap" for a sample of a run stopped at its cap: its real figure is not known."""
    if cap is not None and value >= cap:
        return f"> {cap:g}"
    return number(value, unit)


def markdown_table(rows: Sequence[Row]) -> str:
    """The results as a markdown table: median, spread (min-max, and p95 where asked), goal."""
    lines = [
        "| measure | median | min .. max | runs | goal | met | note |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for row in rows:
        spread = f"{shown(min(row.samples), row.unit, row.cap)} .. {shown(max(row.samples), row.unit, row.cap)}"
        if row.p95:
            spread += f" (p95 {number(percentile(row.samples, 0.95), row.unit)})"
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(
            f"| {row.measure} | {shown(row.median, row.unit, row.cap)} {row.unit} | {spread} | {len(row.samples)} "
            f"| {row.goal} | {met} | {row.note} |"
        )
    return "\n".join(lines) + "\n"
