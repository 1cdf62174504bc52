"""The scaling figure (hosts against seconds) as a small SVG, built as plain text: no plotting library.

A pure function (tests/test_bench.py): each series is a name and its (hosts, seconds) points, drawn
as a line with a dot per point, and named in a legend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

WIDTH, PLOT_HEIGHT = 640, 310
LEFT, RIGHT, TOP, BOTTOM = 60, 20, 40, 50  # margins around the plot area; the legend goes below
LEGEND_LINE = 18
COLOURS = ("#1f77b4", "#7f7f7f", "#d62728", "#2ca02c", "#9467bd")
DASHES = ("", "6 4", "2 3", "8 3 2 3", "")  # also told apart without colour

Series = tuple[str, Sequence[tuple[float, float]]]  # name, [(hosts, seconds), ...]


def _nice_step(span: float, ticks: int) -> float:
    """A round step (1, 2 or 5 times a power of ten) that cuts `span` into about `ticks` parts."""
    raw = span / max(ticks, 1)
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _number(value: float) -> str:
    return f"{value:g}"


def _log_ticks(low: float, high: float) -> list[float]:
    """1, 2, 5 times the powers of ten from below `low` to above `high`."""
    ticks = []
    for power in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        ticks += [m * 10.0**power for m in (1, 2, 5)]
    below = max(t for t in ticks if t <= low)
    above = min(t for t in ticks if t >= high)
    return [t for t in ticks if below <= t <= above]


def scaling_svg(series: Sequence[Series], title: str, log_y: bool = False) -> str:
    """An SVG line chart: hosts on x, seconds on y (log_y: a logarithmic axis), a line and legend entry per series."""
    points = [point for _, values in series for point in values]
    if not points:
        raise ValueError("a figure needs at least one point")
    if log_y and min(y for _, y in points) <= 0:
        raise ValueError("a logarithmic axis needs seconds above 0")
    max_x = max(x for x, _ in points)
    max_y = max(y for _, y in points)
    x_step = _nice_step(max_x, 5)
    x_top = x_step * math.ceil(max_x / x_step)
    if log_y:
        ticks_y = _log_ticks(min(y for _, y in points), max_y)
    else:
        y_step = _nice_step(max_y, 5)
        ticks_y = [y_step * k for k in range(math.ceil(max_y / y_step) + 1)]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, PLOT_HEIGHT
    height = TOP + plot_h + BOTTOM + LEGEND_LINE * len(series)

    def px(x: float) -> float:
        return LEFT + plot_w * x / x_top

    def py(y: float) -> float:
        if log_y:
            low, high = math.log10(ticks_y[0]), math.log10(ticks_y[-1])
            return TOP + plot_h * (1 - (math.log10(y) - low) / (high - low))
        return TOP + plot_h * (1 - y / ticks_y[-1])

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{WIDTH / 2:.1f}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>',
    ]
    ticks_x = [x_step * k for k in range(round(x_top / x_step) + 1)]
    for x in ticks_x:
        out.append(f'<line x1="{px(x):.1f}" y1="{TOP}" x2="{px(x):.1f}" y2="{TOP + plot_h}" stroke="#eeeeee"/>')
        out.append(f'<text x="{px(x):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{_number(x)}</text>')
    for y in ticks_y:
        out.append(f'<line x1="{LEFT}" y1="{py(y):.1f}" x2="{LEFT + plot_w}" y2="{py(y):.1f}" stroke="#eeeeee"/>')
        out.append(f'<text x="{LEFT - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{_number(y)}</text>')
    out += [
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>',
        f'<text x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h + 36}" text-anchor="middle">hosts</text>',
        f'<text x="16" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 16 {TOP + plot_h / 2:.1f})">seconds (median{", log scale" if log_y else ""})</text>',
    ]
    for index, (name, values) in enumerate(series):
        colour, dash = COLOURS[index % len(COLOURS)], DASHES[index % len(DASHES)]
        ordered = sorted(values)
        dashing = f' stroke-dasharray="{dash}"' if dash else ""
        group = [f'<g class="series" data-name={quoteattr(name)}>']
        if len(ordered) > 1:
            coordinates = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in ordered)
            group.append(f'<polyline points="{coordinates}" fill="none" stroke="{colour}" stroke-width="2"{dashing}/>')
        for x, y in ordered:
            group.append(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{colour}">'
                f"<title>{escape(name)}: {_number(x)} hosts, {y:.3g} s</title></circle>"
            )
        legend_y = TOP + plot_h + BOTTOM + 4 + LEGEND_LINE * index
        group += [
            f'<line x1="{LEFT + 12}" y1="{legend_y - 4}" x2="{LEFT + 36}" y2="{legend_y - 4}" stroke="{colour}" '
            f'stroke-width="2"{dashing}/>',
            f'<text x="{LEFT + 42}" y="{legend_y}">{escape(name)}</text>',
            "</g>",
        ]
        out += group
    out.append("</svg>")
    return "\n".join(out) + "\n"
