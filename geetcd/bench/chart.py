"""Line charts of measurements over time: SVG written as text, and a sparkline for a console.

Used by ``geetcd-bench`` (throughput and latency over time) and by
``loadtests/bench_soak.py`` (RSS, greenlets, fds over time). An SVG needs neither a font
nor a plotting library: the viewer (any browser) draws the text, so this module is only
string formatting, and a test can check the chart by parsing it as XML. No I/O except
:func:`write_svg`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

__all__ = ["PALETTE", "Panel", "Series", "nice_step", "render_svg", "sparkline", "write_svg"]

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
)
"""Colours given in turn to series without one of their own."""

_INK = "#141414"
_GRID = "#e1e1e1"
_AXIS = "#787878"
_TICKS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Series:
    """One line: (x, y) points in x order, a legend label, an optional colour and dashes."""

    label: str
    points: Sequence[tuple[float, float]]
    color: str | None = None
    dashed: bool = False
    width: float = 1.6


@dataclass(frozen=True)
class Panel:
    """One plot of the chart: a title (with the unit) and its lines, sharing the x axis."""

    title: str
    series: Sequence[Series] = field(default_factory=tuple)


def nice_step(span: float, target: int = 5) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving about ``target`` ticks."""
    if not span > 0 or math.isinf(span):
        return 1.0
    raw = span / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for multiple in (1.0, 2.0, 5.0):
        if multiple * magnitude >= raw:
            return multiple * magnitude
    return 10.0 * magnitude


def _label(value: float, step: float) -> str:
    if abs(value) >= 10_000:
        return f"{value / 1000:g}k"
    if step >= 1:
        return f"{value:.0f}"
    decimals = min(4, max(1, -math.floor(math.log10(step))))
    return f"{value:.{decimals}f}"


def _ticks(top: float, step: float) -> list[float]:
    count = round(top / step)
    return [i * step for i in range(count + 1)]


def _finite(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]


def render_svg(
    title: str,
    panels: Sequence[Panel],
    *,
    x_label: str = "time (s)",
    width: int = 1100,
    panel_height: int = 250,
) -> str:
    """The chart as an SVG document: ``title`` on top, then ``panels`` stacked, each with
    its own y axis from 0 and a legend on the right, all sharing one x axis from 0.

    Points that are not finite are left out; an empty series draws only its legend entry.
    Every text is XML-escaped. Never raises for any finite input.
    """
    left, legend_width, top_margin, gap = 80, 260, 50, 70
    plot_width = width - left - legend_width
    height = top_margin + len(panels) * (panel_height + gap) + 10
    xs = [x for p in panels for s in p.series for x, _ in _finite(s.points)]
    x_step = nice_step(max(xs, default=0.0) - 0.0, 8)
    x_top = max(x_step, math.ceil(max(xs, default=0.0) / x_step) * x_step)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="28" font-size="16" fill="{_INK}">{escape(title)}</text>',
    ]
    for number, panel in enumerate(panels):
        top = top_margin + number * (panel_height + gap) + 20
        bottom = top + panel_height
        ys = [y for s in panel.series for _, y in _finite(s.points)]
        y_max = max(ys, default=0.0)
        y_step = nice_step(y_max * 1.05 if y_max > 0 else 1.0)
        y_top = max(y_step, math.ceil(y_max * 1.05 / y_step) * y_step)

        def px(
            x: float, y: float, top: float = top, bottom: float = bottom, y_top: float = y_top
        ) -> str:
            return f"{left + plot_width * x / x_top:.1f},{bottom - (bottom - top) * y / y_top:.1f}"

        out.append(f'<g class="panel" data-title={quoteattr(panel.title)}>')
        out.append(
            f'<text x="{left}" y="{top - 8}" font-size="14" fill="{_INK}">'
            f"{escape(panel.title)}</text>"
        )
        for tick in _ticks(y_top, y_step):
            y = bottom - (bottom - top) * tick / y_top
            out.append(
                f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_width}" y2="{y:.1f}" '
                f'stroke="{_GRID}"/>'
            )
            out.append(
                f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{_AXIS}">'
                f"{_label(tick, y_step)}</text>"
            )
        for tick in _ticks(x_top, x_step):
            x = left + plot_width * tick / x_top
            out.append(
                f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="{_GRID}"/>'
            )
            out.append(
                f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle" fill="{_AXIS}">'
                f"{_label(tick, x_step)}</text>"
            )
        out.append(
            f'<polyline points="{left},{top} {left},{bottom} {left + plot_width},{bottom}" '
            f'fill="none" stroke="{_AXIS}"/>'
        )
        for index, series in enumerate(panel.series):
            color = series.color or PALETTE[index % len(PALETTE)]
            dash = ' stroke-dasharray="6,4"' if series.dashed else ""
            points = _finite(series.points)
            if len(points) == 1:
                cx, cy = px(*points[0]).split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{color}"/>')
            elif points:
                out.append(
                    f'<polyline class="series" data-label={quoteattr(series.label)} '
                    f'points="{" ".join(px(x, y) for x, y in points)}" fill="none" '
                    f'stroke="{color}" stroke-width="{series.width}"{dash}/>'
                )
            legend_y = top + 6 + 18 * index
            legend_x = left + plot_width + 20
            out.append(
                f'<line x1="{legend_x}" y1="{legend_y}" x2="{legend_x + 24}" y2="{legend_y}" '
                f'stroke="{color}" stroke-width="3"{dash}/>'
            )
            out.append(
                f'<text x="{legend_x + 30}" y="{legend_y + 4}" fill="{_INK}">'
                f"{escape(series.label[:34])}</text>"
            )
        out.append("</g>")
    last_bottom = top_margin + len(panels) * (panel_height + gap) - gap + 20
    out.append(
        f'<text x="{left + plot_width / 2:.0f}" y="{last_bottom + 36}" text-anchor="middle" '
        f'fill="{_AXIS}">{escape(x_label)}</text>'
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_svg(
    path: Path,
    title: str,
    panels: Sequence[Panel],
    *,
    x_label: str = "time (s)",
    width: int = 1100,
    panel_height: int = 250,
) -> Path:
    """Write :func:`render_svg` of the same arguments to ``path``; returns ``path``.

    Raises OSError when the file cannot be written.
    """
    text = render_svg(title, panels, x_label=x_label, width=width, panel_height=panel_height)
    path.write_text(text, encoding="utf-8")
    return path


def sparkline(points: Sequence[tuple[float, float]], width: int = 60) -> str:
    """The y values of ``points`` as one line of block characters, ``width`` columns at
    most (each column the mean of its share of the points), scaled from the minimum to the
    maximum; "" without finite points."""
    values = [y for _, y in _finite(points)]
    if not values:
        return ""
    columns = min(width, len(values))
    means = []
    for column in range(columns):
        chunk = values[column * len(values) // columns : (column + 1) * len(values) // columns]
        means.append(sum(chunk) / len(chunk))
    low, high = min(means), max(means)
    if high - low <= 0:
        return _TICKS[0] * columns
    scale = (len(_TICKS) - 1) / (high - low)
    return "".join(_TICKS[round((m - low) * scale)] for m in means)
