"""The pure parts of geetcd.bench: the one histogram, the summary and the SVG chart."""

from __future__ import annotations

import json
import math
import random
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from geetcd.bench import chart, report
from geetcd.bench.histogram import LatencyHistogram

SVG = "{http://www.w3.org/2000/svg}"


def _nearest_rank(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


@pytest.mark.parametrize("seed", range(5))
def test_percentiles_are_within_one_percent_above_the_nearest_rank(seed: int) -> None:
    rng = random.Random(seed)
    samples = [rng.lognormvariate(1.0, 1.5) for _ in range(5000)]
    samples += [0.0, 1e-6, 12_345.0]
    histogram = LatencyHistogram(samples)
    assert histogram.count == len(samples)
    assert histogram.max == max(samples) and histogram.min == min(samples)
    assert histogram.mean == pytest.approx(sum(samples) / len(samples))
    for q in (0.0, 0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0):
        exact = _nearest_rank(samples, q)
        got = histogram.percentile(q)
        assert got in samples  # always a measured value
        assert exact <= got, (q, exact, got)
        if exact >= 0.001:
            assert got < exact * math.exp(0.01), (q, exact, got)


def test_nearest_rank_definition_on_small_sets() -> None:
    histogram = LatencyHistogram([1, 2, 3, 4])
    # ceil(q * n)-th smallest: 0.5 -> 2nd, 0.51 -> 3rd, 0.75 -> 3rd, 0.76 -> 4th
    assert [histogram.percentile(q) for q in (0.25, 0.5, 0.51, 0.75, 0.76, 1.0)] == [
        1, 2, 3, 3, 4, 4,
    ]  # fmt: skip
    assert LatencyHistogram().percentile(0.5) == 0.0
    with pytest.raises(ValueError, match="q must be"):
        histogram.percentile(math.nan)


def test_locust_buckets_are_exact() -> None:
    """locust's whole-ms buckets: each holds one value, so percentiles are those values."""
    histogram = LatencyHistogram.from_counts({"3": 90, "40": 10})
    assert (histogram.percentile(0.5), histogram.percentile(0.9), histogram.percentile(0.91)) == (
        3.0, 3.0, 40.0,
    )  # fmt: skip
    assert histogram.count == 100 and histogram.total == 3 * 90 + 40 * 10


def test_merge_and_json_are_exact() -> None:
    rng = random.Random(7)
    parts = [[rng.expovariate(0.1) for _ in range(700)] for _ in range(3)]
    whole = LatencyHistogram(x for part in parts for x in part)
    merged = LatencyHistogram()
    for part in parts:
        shipped = json.loads(json.dumps(LatencyHistogram(part).to_json()))
        merged.merge_json(shipped)
    mine, theirs = merged.to_json(), json.loads(json.dumps(whole.to_json()))
    assert mine.pop("t") == pytest.approx(theirs.pop("t"))  # float sums: order differs
    assert mine == theirs  # buckets, count, min and max: exact
    assert {k: v for k, v in merged.summary().items() if k != "mean"} == {
        k: v for k, v in whole.summary().items() if k != "mean"
    }
    assert LatencyHistogram.from_json(LatencyHistogram().to_json()).count == 0
    assert repr(LatencyHistogram()) == "<LatencyHistogram empty>"


def _entry(method: str, name: str, times: dict[str, int], failures: int = 0) -> dict[str, Any]:
    count = sum(times.values())
    return {
        "method": method,
        "name": name,
        "num_requests": count,
        "num_failures": failures,
        "total_response_time": float(sum(int(k) * v for k, v in times.items())),
        "max_response_time": float(max(int(k) for k in times)),
        "response_times": times,
        "start_time": 1000.0,
        "last_request_timestamp": 1010.0,
    }


def test_summary_from_locust_json() -> None:
    stats = [
        _entry("put", "put shared", {"2": 50, "4": 50}),
        _entry("watch", "shared", {"3": 90, "40": 10}),
        _entry("cas", "increment", {"5": 20}, failures=2),
        _entry("conflict", "increment", {"1": 30}),
        _entry("retry", "increment", {"1": 25}),
    ]
    latency = {
        "latency_ms": [
            {"type": "put", "name": "put shared", "p50": 2.5, "p99": 3.9},
            {"type": "", "name": "Aggregated", "p50": 3.1, "p99": 39.0},
        ],
        "errors": [{"type": "cas", "name": "increment", "error": "CASGaveUp()", "occurrences": 2}],
    }
    summary = report.summarize(stats, latency)
    rows = {(r.type, r.name): r for r in summary.rows}
    assert summary.duration == 10.0
    put = rows["put", "put shared"]
    assert (put.requests, put.rate, put.avg, put.p50, put.p99) == (100, 10.0, 3.0, 2.5, 3.9)
    watch = rows["watch", "shared"]  # no precise entry: locust's buckets, nearest rank
    assert (watch.p50, watch.p99) == (3.0, 40.0)
    total = summary.total
    assert (total.requests, total.failures, total.p50, total.p99) == (275, 2, 3.1, 39.0)
    without = report.summarize(stats, None)  # every figure from locust's buckets
    assert (without.total.p50, without.total.p99) == (3.0, 40.0)
    # Without latency.json: locust's buckets; with it, its precise figure wins.
    assert {(r.type, r.name): r.p50 for r in without.rows}["put", "put shared"] == 2.0
    text = report.format_summary(summary, "title")
    assert text.startswith("title\n")
    assert (
        "watch deliveries 'shared': 100 (10.0/s), put-to-delivery p50 3.00 ms, p99 40.0 ms" in text
    )
    assert "txn contention: 18 increments, 30 conflicts (1.67 per increment), 25 retries" in text
    assert "2 x cas increment: CASGaveUp()" in text
    assert "from locust's buckets" in report.format_summary(without, "t")


def _series(svg: str) -> dict[str, list[tuple[float, float]]]:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    found: dict[str, list[tuple[float, float]]] = {}
    for line in root.iter(f"{SVG}polyline"):
        label = line.get("data-label")
        if label is not None:
            pairs = [p.split(",") for p in (line.get("points") or "").split()]
            found[label] = [(float(x), float(y)) for x, y in pairs]
    return found


def test_svg_chart_draws_each_series_inside_its_panel() -> None:
    panels = [
        chart.Panel("rss (MiB) <&>", [chart.Series("rss", [(0, 10), (30, 20), (60, 15)])]),
        chart.Panel(
            "counts",
            [
                chart.Series("fds", [(0, 5), (60, 7)], dashed=True),
                chart.Series("one point", [(10, 3)]),
                chart.Series("none", [(0, math.nan)]),
            ],
        ),
    ]
    svg = chart.render_svg("soak <test>", panels, width=900, panel_height=200)
    root = ET.fromstring(svg)
    width, height = float(root.get("width") or 0), float(root.get("height") or 0)
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "soak <test>" in texts and "rss (MiB) <&>" in texts  # escaped, parsed back
    assert {"rss", "fds", "one point", "none"} <= set(texts)  # every legend entry
    series = _series(svg)
    assert set(series) == {"rss", "fds"}  # one point: a circle; no finite point: nothing
    assert len(series["rss"]) == 3
    for points in series.values():
        assert all(0 <= x <= width and 0 <= y <= height for x, y in points)
    rss = series["rss"]
    assert rss[0][0] < rss[1][0] < rss[2][0]  # x grows with time
    assert rss[1][1] < rss[2][1] < rss[0][1]  # larger values are higher up (smaller y)
    assert len(list(root.iter(f"{SVG}circle"))) == 1
    assert 'stroke-dasharray="6,4"' in svg


def test_chart_from_locust_history(tmp_path: Path) -> None:
    header = (
        "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,"
        "99%,99.9%,99.99%,100%,Total Request Count,Total Failure Count,Total Median Response "
        "Time,Total Average Response Time,Total Min Response Time,Total Max Response Time,"
        "Total Average Content Size"
    )
    lines = [header]
    for second in range(10):
        count = 100 * (second + 1)
        p99 = 9 if second != 5 else 90
        tail = f"{count},0,2,2.0,1,9,0"
        lines.append(f"{1000 + second},5,get,get,0,0,2,2,2,3,4,5,6,{p99},9,9,9,{tail}")
        lines.append(f"{1000 + second},5,,Aggregated,0,0,2,2,2,3,4,5,6,{p99},9,9,9,{tail}")
    lines.append("1009,5,watch_open,w,0,0,0,0,0,0,0,0,0,0,0,0,0,1,0,2,2.0,1,9,0")
    history = tmp_path / "history.csv"
    history.write_text("\n".join(lines) + "\n")
    panels = report.history_panels(history)
    by_label = {s.label: s for p in panels for s in p.series}
    assert set(by_label) == {"all", "failures", "get", "get p50", "get p99"}  # no one-off
    assert by_label["get"].points == [(float(t), 100.0) for t in range(1, 10)]
    assert max(y for _, y in by_label["get p99"].points) == 90.0
    svg = report.chart_from_history(history, tmp_path / "chart.svg", "test chart")
    assert set(_series(svg.read_text())) == set(by_label)


def test_sparkline() -> None:
    assert chart.sparkline([]) == ""
    assert chart.sparkline([(0, 1), (1, 1)]) == "▁▁"
    line = chart.sparkline([(x, float(x)) for x in range(100)], width=10)
    assert len(line) == 10 and line[0] == "▁" and line[-1] == "█"
    assert list(line) == sorted(line)


class _Call:
    """A stand-in for geetcd.observe.CallRecord with one observer."""

    def __init__(self, counter: Any) -> None:
        self.member: str | None = None
        self._context = counter.call_started(self)

    def context_of(self, observer: Any) -> Any:
        return self._context


def test_attempt_counter_counts_failovers_per_member() -> None:
    from geetcd.bench.attempts import AttemptCounter, format_attempts, merge_attempts

    a, b = "http://127.0.0.1:1", "http://127.0.0.1:2"
    counter = AttemptCounter()
    plain = _Call(counter)
    counter.attempt_ended(plain, a, 0.001, None)
    plain.member = a
    counter.call_ended(plain, 0.001, None)
    moved = _Call(counter)  # failed on a twice, then answered by b
    counter.attempt_ended(moved, a, 0.5, TimeoutError())
    counter.attempt_ended(moved, a, 0.5, TimeoutError())
    counter.attempt_ended(moved, b, 0.001, None)
    moved.member = b
    counter.call_ended(moved, 1.0, None)
    lost = _Call(counter)  # failed on b and never answered: no failover
    counter.attempt_ended(lost, b, 0.5, TimeoutError())
    lost.member = b
    counter.call_ended(lost, 0.5, TimeoutError())
    data = counter.to_json()
    assert data == {
        "members": {
            a: {"attempts": 3, "failed": 2, "failed_over": 1},
            b: {"attempts": 2, "failed": 1, "failed_over": 0},
        },
        "failovers": 1,
    }
    assert json.loads(json.dumps(data)) == data
    assert counter.take() == data and counter.to_json() == {"members": {}, "failovers": 0}
    doubled = merge_attempts(data, data)
    assert doubled["members"][a] == {"attempts": 6, "failed": 4, "failed_over": 2}
    assert doubled["failovers"] == 2
    assert format_attempts(data) == [
        f"  attempts by member: {a} 3 (2 failed, 1 failed over), {b} 2 (1 failed, 0 failed over)",
        "  calls failed over to another member: 1",
    ]
    assert format_attempts(None) == [] == format_attempts({"members": {}, "failovers": 0})
