"""A small bar chart as geometry for an inline SVG (no JavaScript, no library)."""

from __future__ import annotations

from dataclasses import dataclass

WIDTH = 420
HEIGHT = 120
BOTTOM = 18  # room for the labels


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    label: str
    value: int
    show_label: bool


@dataclass(frozen=True)
class Chart:
    title: str
    bars: list[Bar]
    peak: int
    total: int
    width: int = WIDTH
    height: int = HEIGHT


def bar_chart(labels: list[str], values: list[int], title: str) -> Chart:
    """Bars scaled to the largest value; every other label shown so that they do not overlap."""
    peak = max(values, default=0)
    slot = WIDTH / max(1, len(values))
    usable = HEIGHT - BOTTOM - 14  # room above the tallest bar for its value
    bars = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = 0.0 if peak == 0 else max(1.5, usable * value / peak) if value else 0.0
        bars.append(
            Bar(
                x=round(i * slot + slot * 0.15, 1),
                y=round(HEIGHT - BOTTOM - h, 1),
                w=round(slot * 0.7, 1),
                h=round(h, 1),
                label=label,
                value=value,
                show_label=(len(values) - 1 - i) % 2 == 0,
            )
        )
    return Chart(title, bars, peak, sum(values))
