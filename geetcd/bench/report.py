"""What ``geetcd-bench`` prints and writes after a run: the summary table and the chart.

Inputs are locust's files (``locust.json``: exact totals; ``locust_stats_history.csv``:
one row a second) and ``latency.json`` written by :mod:`geetcd.bench.collector` inside the
locust processes (percentiles to 1 %). Every percentile here comes from
:class:`geetcd.bench.histogram.LatencyHistogram`. Pure functions plus file writes; no
locust import.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geetcd.bench.chart import PALETTE, Panel, Series, write_svg
from geetcd.bench.histogram import LatencyHistogram

__all__ = [
    "Row",
    "Summary",
    "chart_from_history",
    "format_summary",
    "history_panels",
    "summarize",
]


@dataclass
class Row:
    """One line of the summary table (times in ms, rate in requests per second)."""

    type: str
    name: str
    requests: int
    failures: int
    rate: float
    avg: float
    p50: float
    p99: float
    max: float


@dataclass
class Summary:
    """What a run produced: the table rows, the total and the first errors."""

    rows: list[Row]
    total: Row
    duration: float
    errors: list[dict[str, Any]] = field(default_factory=list)
    precise: bool = False


def summarize(stats: list[dict[str, Any]], latency: dict[str, Any] | None) -> Summary:
    """Build the summary from locust's JSON (exact counts) and ``latency.json`` (precise
    percentiles, when present; else from locust's buckets, whole ms below 100 ms).

    Both kinds of percentile are nearest-rank values of a :class:`LatencyHistogram`.
    """
    starts = [e["start_time"] for e in stats if e.get("start_time")]
    ends = [e["last_request_timestamp"] for e in stats if e.get("last_request_timestamp")]
    duration = max(ends) - min(starts) if starts and ends else 0.0
    precise: dict[tuple[str, str], dict[str, Any]] = {}
    if latency is not None:
        precise = {(e["type"], e["name"]): e for e in latency.get("latency_ms", [])}
    rows: list[Row] = []
    merged = LatencyHistogram()
    for entry in sorted(stats, key=lambda e: (e["method"], e["name"])):
        count = int(entry["num_requests"])
        buckets = LatencyHistogram.from_counts(entry.get("response_times", {}))
        merged.merge(buckets)
        exact = precise.get((entry["method"], entry["name"]))
        rows.append(
            Row(
                type=entry["method"],
                name=entry["name"],
                requests=count,
                failures=int(entry["num_failures"]),
                rate=count / duration if duration > 0 else 0.0,
                avg=float(entry["total_response_time"]) / count if count else 0.0,
                p50=float(exact["p50"]) if exact else buckets.percentile(0.5),
                p99=float(exact["p99"]) if exact else buckets.percentile(0.99),
                max=float(entry.get("max_response_time") or 0.0),
            )
        )
    requests = sum(r.requests for r in rows)
    all_ = precise.get(("", "Aggregated"))
    total_time = sum(float(e["total_response_time"]) for e in stats)
    total = Row(
        type="total",
        name="",
        requests=requests,
        failures=sum(r.failures for r in rows),
        rate=requests / duration if duration > 0 else 0.0,
        avg=total_time / requests if requests else 0.0,
        p50=float(all_["p50"]) if all_ else merged.percentile(0.5),
        p99=float(all_["p99"]) if all_ else merged.percentile(0.99),
        max=max((r.max for r in rows), default=0.0),
    )
    errors = list(latency.get("errors", [])) if latency is not None else []
    return Summary(rows, total, duration, errors, precise=bool(precise))


def _ms(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def format_summary(summary: Summary, title: str) -> str:
    """The summary as text: the table, then scenario notes and the first errors."""
    header = ("type", "name", "requests", "fails", "ops/s", "avg ms", "p50 ms", "p99 ms", "max ms")
    table = [header]
    for row in [*summary.rows, summary.total]:
        table.append(
            (
                row.type,
                row.name,
                f"{row.requests:,}",
                f"{row.failures:,}",
                f"{row.rate:,.1f}",
                _ms(row.avg),
                _ms(row.p50),
                _ms(row.p99),
                _ms(row.max),
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = [title, ""]
    for index, line in enumerate(table):
        if index == len(table) - 1:
            lines.append("  " + "-" * (sum(widths) + 2 * (len(widths) - 1)))
        cells = [
            cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(line)
        ]
        lines.append("  " + "  ".join(cells).rstrip())
    lines.append("")
    note = "to 1 %" if summary.precise else "from locust's buckets, whole ms below 100 ms"
    lines.append(f"  over {summary.duration:.1f} s; percentiles {note}")
    lines.extend(_scenario_notes(summary))
    if summary.errors:
        lines.append("  errors (most frequent first):")
        for error in summary.errors[:5]:
            text = str(error["error"]).replace("\n", " ")
            if len(text) > 110:
                text = text[:107] + "..."
            lines.append(
                f"    {error['occurrences']:>7,} x {error['type']} {error['name']}: {text}"
            )
    return "\n".join(lines)


def _scenario_notes(summary: Summary) -> list[str]:
    notes: list[str] = []
    by_type: dict[str, list[Row]] = {}
    for row in summary.rows:
        by_type.setdefault(row.type, []).append(row)
    for row in by_type.get("watch", []):
        notes.append(
            f"  watch deliveries '{row.name}': {row.requests:,} ({row.rate:,.1f}/s), "
            f"put-to-delivery p50 {_ms(row.p50)} ms, p99 {_ms(row.p99)} ms"
        )
    cas = [r for r in by_type.get("cas", []) if r.name == "increment"]
    conflicts = sum(r.requests for r in by_type.get("conflict", []))
    retries = sum(r.requests for r in by_type.get("retry", []))
    if cas:
        done = cas[0].requests - cas[0].failures
        per = conflicts / done if done else 0.0
        notes.append(
            f"  txn contention: {done:,} increments, {conflicts:,} conflicts "
            f"({per:.2f} per increment), {retries:,} retries"
        )
    for row in by_type.get("failover", []):
        outcome = "FAILED" if row.failures else f"{row.max / 1000.0:.2f} s"
        notes.append(f"  failover: {row.name}: {outcome}")
    return notes


# ---------------------------------------------------------------------------------------------
# the chart of a run, from locust's _stats_history.csv


def _history(path: Path) -> dict[tuple[str, str], list[dict[str, str]]]:
    rows: dict[tuple[str, str], list[dict[str, str]]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows.setdefault((row["Type"], row["Name"]), []).append(row)
    return rows


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "", "N/A") else None
    except ValueError:
        return None


def _rate(rows: list[dict[str, str]], column: str, t0: float) -> list[tuple[float, float]]:
    points: list[tuple[float, float]] = []
    previous: tuple[float, float] | None = None
    for row in rows:
        t, count = _number(row["Timestamp"]), _number(row[column])
        if t is None or count is None:
            continue
        if previous is not None and t > previous[0]:
            points.append((t - t0, max(0.0, (count - previous[1]) / (t - previous[0]))))
        previous = (t, count)
    return points


def history_panels(history_csv: Path) -> list[Panel]:
    """Throughput and latency over time from locust's ``_stats_history.csv``.

    Top panel: ops/s of all requests together, of failures and of each request type and
    name (from the growth of its request count). Bottom panel: each one's p50 (solid) and
    p99 (dashed) from locust's sliding 10 s window (whole ms below 100 ms; zeros, which
    locust writes before the window has samples, are left out). Entries whose request count
    changed fewer than 3 times (one-off requests such as opening watches) are left out.
    Raises OSError when the CSV cannot be read.
    """
    history = _history(history_csv)
    stamps = [_number(r["Timestamp"]) for rows in history.values() for r in rows]
    times = [t for t in stamps if t is not None]
    t0 = min(times) if times else 0.0
    total = history.get(("", "Aggregated"), [])
    throughput = [
        Series("all", _rate(total, "Total Request Count", t0), "#141414", width=2.4),
        Series("failures", _rate(total, "Total Failure Count", t0), "#d62728"),
    ]
    latency: list[Series] = []
    entries = sorted(k for k in history if k != ("", "Aggregated"))
    shown = [k for k in entries if len({r["Total Request Count"] for r in history[k]}) >= 3]
    for index, key in enumerate(shown):
        color = PALETTE[index % len(PALETTE)]
        rows = history[key]
        label = key[1] if key[1].startswith(key[0]) else f"{key[0]} {key[1]}"
        throughput.append(Series(label, _rate(rows, "Total Request Count", t0), color))
        for column, dashed, suffix in (("50%", False, " p50"), ("99%", True, " p99")):
            points = [
                (t - t0, value)
                for r in rows
                if (t := _number(r["Timestamp"])) is not None
                and (value := _number(r[column]))  # 0: locust's window had no sample yet
            ]
            latency.append(Series(label + suffix, points, color, dashed=dashed))
    return [Panel("throughput (ops/s)", throughput), Panel("latency (ms)", latency)]


def chart_from_history(history_csv: Path, svg: Path, title: str) -> Path:
    """Write :func:`history_panels` as an SVG chart to ``svg``; returns ``svg``.

    Raises OSError when the CSV cannot be read or the SVG written.
    """
    return write_svg(svg, title, history_panels(history_csv))
