"""Chart geometry for server-rendered SVG (templates/runs/_chart_*.html): stacked vertical bars and
horizontal bars, with axis ticks, labels and values. No styles here: series get CSS classes
(`series-0` …) that autopilot/static/autopilot/css/usage.css colours (the CSP forbids inline styles).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

SERIES = 8  # distinct series colours; more series reuse them


def nice_max(value: float, ticks: int = 4) -> tuple[float, float]:
    """(axis maximum, tick step) covering `value` with round steps (1, 2, 2.5, 5 × 10^n)."""
    if value <= 0:
        return 1.0, 1.0 / ticks
    raw = value / ticks
    power = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 2.5, 5, 10):
        step = mult * power
        if step * ticks >= value:
            return step * ticks, step
    return 10 * power * ticks, 10 * power


def money(value) -> str:
    value = float(value or 0)
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"


def count(value) -> str:
    value = float(value or 0)
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    return f"{value:,.0f}"


def seconds(value) -> str:
    value = float(value or 0)
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    if value >= 60:
        return f"{value / 60:.1f} min"
    return f"{value:.0f} s"


def percent(value) -> str:
    return f"{float(value or 0) * 100:.0f}%"


@dataclass
class Rect:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass
class Chart:
    width: int
    height: int
    title: str
    ticks: list[dict] = field(default_factory=list)  # {"y" or "x", "label"}
    bars: list[Rect] = field(default_factory=list)
    labels: list[dict] = field(default_factory=list)  # category labels {"x", "y", "text", "anchor"}
    values: list[dict] = field(default_factory=list)  # value labels {"x", "y", "text", "anchor"}
    markers: list[dict] = field(default_factory=list)  # cap lines {"x1", "y1", "x2", "y2", "title"}
    legend: list[dict] = field(default_factory=list)  # {"css", "text"}
    axis: dict = field(default_factory=dict)
    empty: bool = False


def stacked_bars(
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | Decimal]]],
    *,
    title: str,
    fmt: Callable = money,
    width: int = 760,
    height: int = 260,
) -> Chart:
    """Vertical bars, one per category, each stacked from the series' values; the total on top."""
    left, right, top, bottom = 64, 12, 20, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(float(values[i] or 0) for _, values in series) for i in range(len(categories))]
    axis_max, step = nice_max(max(totals, default=0))
    chart = Chart(width=width, height=height, title=title, empty=not any(totals))
    chart.axis = {"x1": left, "y1": top + plot_h, "x2": left + plot_w, "y2": top + plot_h, "top": top}
    n = 0
    while n * step <= axis_max + 1e-12:
        y = top + plot_h - (n * step) / axis_max * plot_h
        chart.ticks.append(
            {"x": left - 6, "y": round(y, 1), "x1": left, "x2": left + plot_w, "label": fmt(n * step)}
        )
        n += 1
    slot = plot_w / max(len(categories), 1)
    bar_w = max(min(slot * 0.7, 48), 2)
    every = max(1, math.ceil(len(categories) / 14))  # at most ~14 category labels
    for i, category in enumerate(categories):
        x = left + i * slot + (slot - bar_w) / 2
        base = top + plot_h
        for s, (name, values) in enumerate(series):
            value = float(values[i] or 0)
            if value <= 0:
                continue
            h = value / axis_max * plot_h
            base -= h
            chart.bars.append(
                Rect(
                    round(x, 1),
                    round(base, 1),
                    round(bar_w, 1),
                    round(h, 1),
                    f"series-{s % SERIES}",
                    f"{category} · {name}: {fmt(value)}",
                )
            )
        if totals[i] > 0:
            chart.values.append(
                {
                    "x": round(x + bar_w / 2, 1),
                    "y": round(base - 4, 1),
                    "text": fmt(totals[i]),
                    "anchor": "middle",
                }
            )
        if i % every == 0:
            chart.labels.append(
                {"x": round(x + bar_w / 2, 1), "y": top + plot_h + 16, "text": category, "anchor": "middle"}
            )
    chart.legend = [{"css": f"series-{s % SERIES}", "text": name} for s, (name, _) in enumerate(series)]
    return chart


def hbars(
    rows: Sequence[tuple[str, float | Decimal]],
    *,
    title: str,
    fmt: Callable = money,
    caps: Sequence[float | Decimal | None] | None = None,
    width: int = 560,
    row_h: int = 26,
) -> Chart:
    """Horizontal bars, one per row, the value at the end; optional cap markers (a vertical line)."""
    left, right, top, bottom = 150, 70, 8, 26
    plot_w = width - left - right
    height = top + bottom + row_h * max(len(rows), 1)
    caps = list(caps or [None] * len(rows))
    biggest = max([float(v or 0) for _, v in rows] + [float(c or 0) for c in caps], default=0)
    axis_max, step = nice_max(biggest)
    chart = Chart(width=width, height=height, title=title, empty=not any(float(v or 0) for _, v in rows))
    chart.axis = {"x1": left, "y1": top, "x2": left, "y2": height - bottom, "top": top}
    n = 0
    while n * step <= axis_max + 1e-12:
        x = left + (n * step) / axis_max * plot_w
        chart.ticks.append(
            {
                "x": round(x, 1),
                "y": height - bottom + 16,
                "y1": top,
                "y2": height - bottom,
                "label": fmt(n * step),
                "vertical": True,
            }
        )
        n += 1
    for i, (label, value) in enumerate(rows):
        y = top + i * row_h + 4
        w = float(value or 0) / axis_max * plot_w
        chart.bars.append(
            Rect(left, y, round(w, 1), row_h - 8, f"series-{i % SERIES}", f"{label}: {fmt(value)}")
        )
        chart.labels.append({"x": left - 8, "y": y + row_h / 2, "text": label[:26], "anchor": "end"})
        chart.values.append(
            {"x": round(left + w + 6, 1), "y": y + row_h / 2, "text": fmt(value), "anchor": "start"}
        )
        cap = caps[i] if i < len(caps) else None
        if cap is not None:
            cx = round(left + float(cap) / axis_max * plot_w, 1)
            chart.markers.append(
                {
                    "x1": cx,
                    "y1": y - 2,
                    "x2": cx,
                    "y2": y + row_h - 6,
                    "title": f"{label}: daily cap {fmt(cap)}",
                }
            )
    return chart
