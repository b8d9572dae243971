"""``geetcd-bench``: a locust load test of etcd through geetcd, in one command.

    geetcd-bench                                  # kv mix, 20 users, 20 s, throwaway cluster
    geetcd-bench --scenario watch --users 50
    geetcd-bench --endpoints http://10.0.0.1:2379,http://10.0.0.2:2379 --duration 60
    geetcd-bench --scenario kv -- --kv-read-ratio 0.5     # after "--": passed to locust

Without ``--endpoints`` it starts a throwaway etcd cluster on loopback ports
(:class:`geetcd.testing.EtcdCluster`, 3 members unless ``--cluster-size``) and stops it at
the end. It runs a locustfile of ``loadtests/`` headless in a subprocess
(``python -m locust``; locust monkey-patches the process it runs in, so it never runs in
this one), prints a progress line every 2 s, then a summary table built from locust's JSON
output (exact totals) and the precise percentiles that :mod:`geetcd.locust` records, and
writes into ``--out``: ``report.html`` (locust's report), ``locust.json``, ``latency.json``,
``locust_*.csv``, ``chart.png`` (throughput and latency over time), ``summary.txt`` and
``locust.log``.

The exit status is locust's: 0 when no request failed (the failover scenario: when writes
recovered after the fault), 1 when some failed, 2 for a usage or start-up error, 3 when
the txn scenario found a lost or doubled update.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

__all__ = ["main"]

SCENARIOS = ("kv", "watch", "txn", "failover")
REPORT_ENV = "GEETCD_BENCH_REPORT"  # geetcd.locust.BENCH_REPORT_ENV (not imported: no locust here)
PROGRESS_MARK = "geetcd-bench-progress "  # geetcd.locust.PROGRESS_MARK
MEMBERS_ENV = "GEETCD_BENCH_MEMBERS"  # read by loadtests/locustfile_failover.py
_OUTPUTS = (
    "report.html",
    "locust.json",
    "latency.json",
    "chart.png",
    "summary.txt",
    "locust.log",
    "locust_stats.csv",
    "locust_stats_history.csv",
    "locust_failures.csv",
    "locust_exceptions.csv",
)
_GRACE = 60.0  # seconds past --duration before a silent locust is stopped


class BenchError(Exception):
    """A usage or start-up problem, reported as one line and exit status 2."""


# ---------------------------------------------------------------------------------------------
# command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geetcd-bench",
        description="Load-test etcd through geetcd with locust: starts a throwaway local "
        "cluster unless --endpoints is given, runs a scenario headless, prints a summary and "
        "writes an HTML report and a PNG chart.",
        epilog="Arguments after '--' go to locust unchanged, e.g. scenario options: "
        "geetcd-bench -- --kv-read-ratio 0.5 --kv-value-size 1024 (see loadtests/README.md).",
    )
    parser.add_argument("--scenario", choices=SCENARIOS, default="kv", help="default: kv")
    parser.add_argument("--users", type=int, default=20, help="concurrent users (default 20)")
    parser.add_argument(
        "--spawn-rate",
        type=float,
        default=None,
        help="users started per second (default: --users, at most 100)",
    )
    parser.add_argument("--duration", type=int, default=20, help="seconds (default 20)")
    parser.add_argument(
        "--endpoints",
        default=None,
        help="comma-separated client URLs of an existing cluster "
        "(default: start a throwaway local one)",
    )
    parser.add_argument(
        "--cluster-size", type=int, default=3, help="members of the throwaway cluster (default 3)"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="run locust distributed over N forked processes on this machine (locust --processes)",
    )
    parser.add_argument(
        "--out", default="geetcd-bench-out", help="output directory (default ./geetcd-bench-out)"
    )
    parser.add_argument(
        "--locustfile", default=None, help="run this locustfile instead of the scenario's"
    )
    return parser


@dataclass
class Options:
    scenario: str
    users: int
    spawn_rate: float
    duration: int
    endpoints: list[str] | None
    cluster_size: int
    processes: int | None
    out: Path
    locustfile: Path
    locust_args: list[str]


def parse_args(argv: Sequence[str]) -> Options:
    """Parse the command line (``--`` separates locust's own arguments); BenchError if bad."""
    argv = list(argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    ns = _parser().parse_args(argv)
    if ns.users < 1:
        raise BenchError("--users must be at least 1")
    if ns.duration < 1:
        raise BenchError("--duration must be at least 1 second")
    if ns.processes is not None and ns.processes < 1:
        raise BenchError("--processes must be at least 1")
    if ns.cluster_size < 1:
        raise BenchError("--cluster-size must be at least 1")
    endpoints = None
    if ns.endpoints:
        endpoints = [e.strip() for e in ns.endpoints.split(",") if e.strip()]
        if not endpoints:
            raise BenchError("--endpoints needs at least one URL")
    if ns.scenario == "failover":
        if endpoints is not None:
            raise BenchError(
                "the failover scenario pauses or kills etcd members, so it only runs on the "
                "throwaway cluster geetcd-bench starts itself: drop --endpoints"
            )
        if ns.cluster_size < 3:
            raise BenchError("the failover scenario needs --cluster-size 3 or more")
    # locust warns above 100 users per second and process.
    spawn_rate = float(min(ns.users, 100)) if ns.spawn_rate is None else ns.spawn_rate
    if spawn_rate <= 0:
        raise BenchError("--spawn-rate must be positive")
    return Options(
        scenario=ns.scenario,
        users=ns.users,
        spawn_rate=spawn_rate,
        duration=ns.duration,
        endpoints=endpoints,
        cluster_size=ns.cluster_size,
        processes=ns.processes,
        out=Path(ns.out),
        locustfile=_find_locustfile(ns.scenario, ns.locustfile),
        locust_args=extra,
    )


def _find_locustfile(scenario: str, given: str | None) -> Path:
    """The scenario's locustfile from the source tree's ``loadtests/`` (or ``given``)."""
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise BenchError(f"no locustfile at {path}")
        return path.resolve()
    name = f"locustfile_{scenario}.py"
    here = Path(__file__).resolve().parent
    places = [here.parent / "loadtests", here / "_loadtests", Path.cwd() / "loadtests"]
    for place in places:
        if (place / name).is_file():
            return (place / name).resolve()
    tried = ", ".join(str(p) for p in places)
    raise BenchError(
        f"{name} not found (looked in {tried}): run geetcd-bench from a geetcd source checkout "
        "(pip install -e '.[test,locust]') or pass --locustfile"
    )


# ---------------------------------------------------------------------------------------------
# running locust


def locust_command(options: Options, endpoints: Sequence[str]) -> list[str]:
    """The ``python -m locust`` command line for ``options``."""
    out = options.out
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(options.locustfile),
        "--headless",
        "--users",
        str(options.users),
        "--spawn-rate",
        f"{options.spawn_rate:g}",
        "--run-time",
        f"{options.duration}s",
        "--host",
        ",".join(endpoints),
        "--csv",
        str(out / "locust"),
        "--csv-full-history",
        "--json-file",
        str(out / "locust"),
        "--html",
        str(out / "report.html"),
        "--only-summary",
        "--stop-timeout",
        "2",
    ]
    if options.processes is not None:
        from geetcd.testing import free_port

        port = str(free_port())
        # The forked workers connect with --master-host/--master-port: set both sides, or
        # the workers look for a master on the default port 5557.
        command += [
            "--processes",
            str(options.processes),
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            port,
            "--master-host",
            "127.0.0.1",
            "--master-port",
            port,
        ]
    return command + options.locust_args


def _reader(stream: TextIO, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


@dataclass
class _Progress:
    distributed: bool = False
    last_requests: int = 0
    last_elapsed: float = 0.0


def _progress_line(data: dict[str, Any], state: _Progress) -> str:
    """One console line from a progress record. The rate is the growth since the previous
    line; distributed runs use locust's sliding 10 s rate instead, because workers report
    to the master only every 3 s."""
    elapsed = float(data.get("elapsed", 0.0))
    requests = int(data.get("requests", 0))
    span = elapsed - state.last_elapsed
    if state.distributed:
        rate = float(data.get("rps", 0.0))
    else:
        rate = (requests - state.last_requests) / span if span > 0 else 0.0
    state.last_requests, state.last_elapsed = requests, elapsed
    p50, p99 = data.get("p50"), data.get("p99")
    latency = f"p50 {p50} ms  p99 {p99} ms" if p50 is not None else "p50 -  p99 -"
    return (
        f"  [{elapsed:5.0f} s] users {data.get('users', 0):>4}  {rate:9,.0f} ops/s  "
        f"failures {data.get('failures', 0):,}  {latency}  total {requests:,}"
    )


def _echo(line: str) -> bool:
    """Whether a line of locust's log is shown on the console: errors, and the warnings of
    the locustfiles (``loadtests.*`` loggers, e.g. the failover schedule). The clients'
    own warnings (members going down and up) stay in ``locust.log``."""
    if "/ERROR/" in line or "/CRITICAL/" in line:
        return True
    return "/WARNING/loadtests." in line


def run_locust(command: list[str], env: dict[str, str], options: Options) -> int:
    """Run locust, stream progress lines and warnings, keep its output in ``locust.log``.

    Returns locust's exit status. Stops locust (SIGTERM, then SIGKILL) if it runs
    ``_GRACE`` seconds past the duration; on Ctrl-C stops it and re-raises.
    """
    log_path = options.out / "locust.log"
    deadline = time.monotonic() + options.duration + _GRACE
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=env,
        )
        assert proc.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True)
        reader.start()
        state = _Progress(distributed=options.processes is not None)
        try:
            while True:
                if time.monotonic() > deadline and proc.poll() is None:
                    print(f"  locust still runs {_GRACE:.0f} s after the end: stopping it")
                    _stop(proc)
                try:
                    line = lines.get(timeout=1.0)
                except queue.Empty:
                    continue
                if line is None:
                    break
                if line.startswith(PROGRESS_MARK):
                    print(_progress_line(json.loads(line[len(PROGRESS_MARK) :]), state))
                    continue
                log.write(line)
                if _echo(line):
                    print("  " + line.rstrip().split("] ", 1)[-1])
        except KeyboardInterrupt:
            print("  interrupted: stopping locust (it still writes its reports)")
            _stop(proc)
            raise
        finally:
            reader.join(timeout=5.0)
        return proc.wait()


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5.0)


# ---------------------------------------------------------------------------------------------
# summary


@dataclass
class Row:
    """One line of the summary table."""

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


def _bucket_percentile(buckets: dict[str, int], q: float) -> float:
    """A percentile from locust's rounded ``response_times`` buckets."""
    count = sum(buckets.values())
    if not count:
        return 0.0
    rank = max(1, math.ceil(q * count))
    seen = 0
    for key in sorted(buckets, key=float):
        seen += buckets[key]
        if seen >= rank:
            return float(key)
    return 0.0


def summarize(stats: list[dict[str, Any]], latency: dict[str, Any] | None) -> Summary:
    """Build the summary from locust's JSON (exact counts) and ``latency.json`` (precise
    percentiles, when present; else locust's buckets, whole ms below 100 ms)."""
    starts = [e["start_time"] for e in stats if e.get("start_time")]
    ends = [e["last_request_timestamp"] for e in stats if e.get("last_request_timestamp")]
    duration = max(ends) - min(starts) if starts and ends else 0.0
    precise: dict[tuple[str, str], dict[str, Any]] = {}
    if latency is not None:
        precise = {(e["type"], e["name"]): e for e in latency.get("latency_ms", [])}
    rows: list[Row] = []
    merged: dict[str, int] = {}
    for entry in sorted(stats, key=lambda e: (e["method"], e["name"])):
        count = int(entry["num_requests"])
        for key, value in entry.get("response_times", {}).items():
            merged[key] = merged.get(key, 0) + int(value)
        exact = precise.get((entry["method"], entry["name"]))
        p50 = exact["p50"] if exact else _bucket_percentile(entry["response_times"], 0.5)
        p99 = exact["p99"] if exact else _bucket_percentile(entry["response_times"], 0.99)
        rows.append(
            Row(
                type=entry["method"],
                name=entry["name"],
                requests=count,
                failures=int(entry["num_failures"]),
                rate=count / duration if duration > 0 else 0.0,
                avg=float(entry["total_response_time"]) / count if count else 0.0,
                p50=float(p50),
                p99=float(p99),
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
        p50=float(all_["p50"]) if all_ else _bucket_percentile(merged, 0.5),
        p99=float(all_["p99"]) if all_ else _bucket_percentile(merged, 0.99),
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
    note = "to 1 %" if summary.precise else "locust's, whole ms below 100 ms"
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
# chart: a PNG drawn with the standard library (zlib + struct), no plotting dependency

_GLYPHS = {
    "0": "01110 10001 10011 10101 11001 10001 01110",
    "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111",
    "3": "11111 00010 00100 00010 00001 10001 01110",
    "4": "00010 00110 01010 10010 11111 00010 00010",
    "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110",
    "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110",
    "9": "01110 10001 10001 01111 00001 00010 01100",
    "A": "01110 10001 10001 11111 10001 10001 10001",
    "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110",
    "D": "11100 10010 10001 10001 10001 10010 11100",
    "E": "11111 10000 10000 11110 10000 10000 11111",
    "F": "11111 10000 10000 11110 10000 10000 10000",
    "G": "01110 10001 10000 10111 10001 10001 01111",
    "H": "10001 10001 10001 11111 10001 10001 10001",
    "I": "01110 00100 00100 00100 00100 00100 01110",
    "J": "00111 00010 00010 00010 00010 10010 01100",
    "K": "10001 10010 10100 11000 10100 10010 10001",
    "L": "10000 10000 10000 10000 10000 10000 11111",
    "M": "10001 11011 10101 10101 10001 10001 10001",
    "N": "10001 10001 11001 10101 10011 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110",
    "P": "11110 10001 10001 11110 10000 10000 10000",
    "Q": "01110 10001 10001 10001 10101 10010 01101",
    "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110",
    "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110",
    "V": "10001 10001 10001 10001 10001 01010 00100",
    "W": "10001 10001 10001 10101 10101 10101 01010",
    "X": "10001 10001 01010 00100 01010 10001 10001",
    "Y": "10001 10001 10001 01010 00100 00100 00100",
    "Z": "11111 00001 00010 00100 01000 10000 11111",
    " ": "00000 00000 00000 00000 00000 00000 00000",
    ".": "00000 00000 00000 00000 00000 01100 01100",
    ",": "00000 00000 00000 00000 01100 00100 01000",
    ":": "00000 01100 01100 00000 01100 01100 00000",
    "/": "00000 00001 00010 00100 01000 10000 00000",
    "-": "00000 00000 00000 11111 00000 00000 00000",
    "_": "00000 00000 00000 00000 00000 00000 11111",
    "(": "00010 00100 01000 01000 01000 00100 00010",
    ")": "01000 00100 00010 00010 00010 00100 01000",
    "%": "11000 11001 00010 00100 01000 10011 00011",
    "=": "00000 00000 11111 00000 11111 00000 00000",
    "+": "00000 00100 00100 11111 00100 00100 00000",
    ">": "01000 00100 00010 00001 00010 00100 01000",
    "<": "00010 00100 01000 10000 01000 00100 00010",
    "|": "00100 00100 00100 00100 00100 00100 00100",
    "?": "01110 10001 00001 00010 00100 00000 00100",
}
_FONT = {ch: [int(row, 2) for row in rows.split()] for ch, rows in _GLYPHS.items()}
_PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (23, 190, 207),
    (188, 189, 34),
)
_BLACK = (20, 20, 20)
_GRID = (225, 225, 225)
_AXIS = (120, 120, 120)
_RED = (214, 39, 40)

Color = tuple[int, int, int]


class Canvas:
    """An RGB image in memory with lines, rectangles and 5x7 text; :meth:`png` encodes it."""

    def __init__(self, width: int, height: int, background: Color = (255, 255, 255)) -> None:
        self.width = width
        self.height = height
        self.pixels = bytearray(bytes(background) * (width * height))

    def dot(self, x: int, y: int, color: Color, size: int = 1) -> None:
        """Paint a ``size`` x ``size`` square at (x, y); points outside are clipped."""
        for dy in range(size):
            for dx in range(size):
                px, py = x + dx - size // 2, y + dy - size // 2
                if 0 <= px < self.width and 0 <= py < self.height:
                    index = (py * self.width + px) * 3
                    self.pixels[index : index + 3] = bytes(color)

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        """Fill the rectangle with corners (x0, y0) and (x1, y1), both included."""
        row = bytes(color) * (max(x0, x1) - min(x0, x1) + 1)
        for y in range(max(0, min(y0, y1)), min(self.height, max(y0, y1) + 1)):
            left = max(0, min(x0, x1))
            right = min(self.width, max(x0, x1) + 1)
            if left < right:
                start = (y * self.width + left) * 3
                self.pixels[start : start + (right - left) * 3] = row[: (right - left) * 3]

    def line(
        self, x0: int, y0: int, x1: int, y1: int, color: Color, *, width: int = 1, dash: int = 0
    ) -> None:
        """A straight line (Bresenham); ``dash`` > 0 draws dashes of that many pixels."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        error = dx + dy
        step = 0
        while True:
            if not dash or (step // dash) % 2 == 0:
                self.dot(x0, y0, color, width)
            if x0 == x1 and y0 == y1:
                return
            doubled = 2 * error
            if doubled >= dy:
                error += dy
                x0 += sx
            if doubled <= dx:
                error += dx
                y0 += sy
            step += 1

    @staticmethod
    def text_width(text: str, scale: int = 1) -> int:
        return max(0, len(text) * 6 * scale - scale)

    def text(self, x: int, y: int, text: str, color: Color = _BLACK, scale: int = 1) -> None:
        """Write ``text`` (upper-cased; unknown characters as ``?``) with its top-left at (x, y)."""
        for ch in text.upper():
            glyph = _FONT.get(ch, _FONT["?"])
            for row, bits in enumerate(glyph):
                for col in range(5):
                    if bits & (1 << (4 - col)):
                        self.rect(
                            x + col * scale,
                            y + row * scale,
                            x + col * scale + scale - 1,
                            y + row * scale + scale - 1,
                            color,
                        )
            x += 6 * scale

    def png(self) -> bytes:
        """The image as PNG bytes (8-bit RGB, no filtering, zlib level 9)."""
        stride = self.width * 3
        raw = b"".join(
            b"\x00" + bytes(self.pixels[y * stride : (y + 1) * stride]) for y in range(self.height)
        )

        def chunk(tag: bytes, data: bytes) -> bytes:
            crc = zlib.crc32(tag + data) & 0xFFFFFFFF
            return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b"")
        )


def _nice_step(span: float, target: int = 5) -> float:
    if span <= 0:
        return 1.0
    raw = span / target
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        if multiple * magnitude >= raw:
            return float(multiple * magnitude)
    return float(10 * magnitude)


def _tick_label(value: float, step: float) -> str:
    if abs(value) >= 10_000:
        return f"{value / 1000:g}k"
    if step >= 1:
        return f"{value:.0f}"
    decimals = min(3, max(1, -math.floor(math.log10(step))))
    return f"{value:.{decimals}f}"


@dataclass
class Series:
    """One line of a chart panel: (x, y) points, a label, a colour and a style."""

    label: str
    points: list[tuple[float, float]]
    color: Color
    width: int = 2
    dash: int = 0


def _panel(
    canvas: Canvas,
    box: tuple[int, int, int, int],
    title: str,
    series: Sequence[Series],
    x_max: float,
) -> None:
    left, top, right, bottom = box
    canvas.text(left, top - 24, title, _BLACK, 2)
    y_max = max((y for s in series for _, y in s.points), default=0.0)
    y_step = _nice_step(y_max * 1.05 if y_max > 0 else 1.0)
    y_top = max(y_step, math.ceil(y_max * 1.05 / y_step) * y_step)
    x_step = _nice_step(x_max if x_max > 0 else 1.0, 8)
    x_top = max(x_step, math.ceil(x_max / x_step) * x_step)

    def to_px(x: float, y: float) -> tuple[int, int]:
        px = left + round((right - left) * x / x_top)
        py = bottom - round((bottom - top) * y / y_top)
        return px, py

    tick = 0.0
    while tick <= y_top + y_step / 2:
        _, py = to_px(0, tick)
        canvas.line(left, py, right, py, _GRID)
        label = _tick_label(tick, y_step)
        canvas.text(left - 8 - canvas.text_width(label, 2), py - 7, label, _AXIS, 2)
        tick += y_step
    tick = 0.0
    while tick <= x_top + x_step / 2:
        px, _ = to_px(tick, 0)
        canvas.line(px, top, px, bottom, _GRID)
        label = _tick_label(tick, x_step)
        canvas.text(px - canvas.text_width(label, 2) // 2, bottom + 8, label, _AXIS, 2)
        tick += x_step
    canvas.line(left, bottom, right, bottom, _AXIS)
    canvas.line(left, top, left, bottom, _AXIS)
    for s in series:
        previous: tuple[int, int] | None = None
        for x, y in s.points:
            point = to_px(x, y)
            if previous is not None:
                canvas.line(*previous, *point, s.color, width=s.width, dash=s.dash)
            else:
                canvas.dot(*point, s.color, s.width)
            previous = point
    legend_y = top
    for s in series:
        canvas.line(
            right + 20, legend_y + 7, right + 44, legend_y + 7, s.color, width=3, dash=s.dash
        )
        canvas.text(right + 52, legend_y, s.label[:26], _BLACK, 2)
        legend_y += 22


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


def draw_chart(history_csv: Path, png: Path, title: str) -> None:
    """Draw throughput and latency over time from locust's ``_stats_history.csv``.

    Top: ops/s of each request type and name (from the growth of its request count), of all
    requests together and of failures. Bottom: each one's p50 (solid) and p99 (dashed), from
    locust's sliding 10 s window (whole ms below 100 ms; zeros, which locust writes before
    the window has samples, are left out). Entries whose request count changed fewer than
    3 times (one-off requests such as opening watches) are left out. Raises OSError when the
    CSV cannot be read or the PNG written.
    """
    history = _history(history_csv)
    stamps = [_number(r["Timestamp"]) for rows in history.values() for r in rows]
    times = [t for t in stamps if t is not None]
    t0 = min(times) if times else 0.0
    x_max = (max(times) - t0) if times else 1.0
    total = history.get(("", "Aggregated"), [])
    throughput = [
        Series("all", _rate(total, "Total Request Count", t0), _BLACK, 3),
        Series("failures", _rate(total, "Total Failure Count", t0), _RED, 2),
    ]
    latency: list[Series] = []
    entries = sorted(k for k in history if k != ("", "Aggregated"))
    shown = [k for k in entries if len({r["Total Request Count"] for r in history[k]}) >= 3]
    for index, key in enumerate(shown):
        color = _PALETTE[index % len(_PALETTE)]
        rows = history[key]
        label = key[1] if key[1].startswith(key[0]) else f"{key[0]} {key[1]}"
        throughput.append(Series(label, _rate(rows, "Total Request Count", t0), color, 2))
        for column, dash, suffix in (("50%", 0, " p50"), ("99%", 6, " p99")):
            points = [
                (t - t0, value)
                for r in rows
                if (t := _number(r["Timestamp"])) is not None
                and (value := _number(r[column]))  # 0: locust's window had no sample yet
            ]
            latency.append(Series(label + suffix, points, color, 2, dash))
    canvas = Canvas(1180, 760)
    canvas.text(30, 16, title, _BLACK, 2)
    _panel(canvas, (110, 90, 800, 380), "throughput (ops/s)", throughput, x_max)
    _panel(canvas, (110, 450, 800, 700), "latency (ms)", latency, x_max)
    label = "time (s)"
    canvas.text(455 - canvas.text_width(label, 2) // 2, 735, label, _AXIS, 2)
    png.write_bytes(canvas.png())


# ---------------------------------------------------------------------------------------------
# the cluster


def _etcd_version(url: str) -> str:
    try:
        with urllib.request.urlopen(url + "/version", timeout=2.0) as answer:
            version = json.loads(answer.read()).get("etcdserver", "?")
    except (OSError, ValueError):
        return "?"
    return str(version)


def _start_cluster(options: Options) -> Any:
    from geetcd.testing import EtcdBinaryNotFound, EtcdCluster

    print(f"starting a throwaway {options.cluster_size}-member etcd cluster on 127.0.0.1 ...")
    cluster = EtcdCluster(size=options.cluster_size)
    try:
        cluster.start()
    except EtcdBinaryNotFound as exc:
        raise BenchError(f"{exc} (or pass --endpoints of a running cluster)") from exc
    except RuntimeError as exc:
        raise BenchError(f"etcd did not start: {exc}") from exc
    return cluster


def _members_env(cluster: Any) -> str:
    return json.dumps(
        [{"name": m.name, "url": m.client_url, "pid": m.pid} for m in cluster.members]
    )


# ---------------------------------------------------------------------------------------------
# main


def _clean(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in _OUTPUTS:
        path = out / name
        if path.is_file():
            path.unlink()


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def bench(options: Options) -> int:
    """Run one benchmark as ``options`` say; returns the exit status (see module docs)."""
    _clean(options.out)
    cluster = None
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env[REPORT_ENV] = str((options.out / "latency.json").resolve())
    try:
        if options.endpoints is None:
            started = time.monotonic()
            cluster = _start_cluster(options)
            endpoints = list(cluster.endpoints)
            where = (
                f"throwaway {options.cluster_size}-member etcd {_etcd_version(endpoints[0])}, "
                f"started in {time.monotonic() - started:.1f} s"
            )
            if options.scenario == "failover":
                env[MEMBERS_ENV] = _members_env(cluster)
        else:
            endpoints = options.endpoints
            where = f"etcd {_etcd_version(endpoints[0])} at the given endpoints"
        print(f"endpoints: {','.join(endpoints)} ({where})")
        processes = f", {options.processes} processes" if options.processes else ""
        print(
            f"running the {options.scenario} scenario: {options.users} users, "
            f"{options.duration} s{processes} ({options.locustfile.name})"
        )
        command = locust_command(options, endpoints)
        code = run_locust(command, env, options)
    finally:
        if cluster is not None:
            cluster.stop()
    return _report(options, code, where)


def _report(options: Options, code: int, where: str) -> int:
    out = options.out
    stats = _load_json(out / "locust.json")
    if not isinstance(stats, list):
        print(f"locust exited with status {code} and wrote no results; last lines of its log:")
        print(_tail(out / "locust.log", 25))
        return code or 1
    summary = summarize(stats, _load_json(out / "latency.json"))
    processes = f", {options.processes} processes" if options.processes else ""
    title = (
        f"geetcd-bench {options.scenario}: {options.users} users, {options.duration} s"
        f"{processes}, {where}"
    )
    text = format_summary(summary, title)
    (out / "summary.txt").write_text(text + "\n", encoding="utf-8")
    print()
    print(text)
    print()
    history = out / "locust_stats_history.csv"
    if history.is_file():
        chart_title = (
            f"geetcd-bench {options.scenario}: {options.users} users, {options.duration} s"
        )
        draw_chart(history, out / "chart.png", chart_title)
    for name, what in (
        ("report.html", "locust's HTML report"),
        ("chart.png", "throughput and latency over time"),
        ("locust.json", "locust's final statistics"),
        ("summary.txt", "this summary"),
        ("locust.log", "locust's output"),
    ):
        if (out / name).is_file():
            print(f"  {what:34} {out / name}")
    if code:
        reason = {1: "some requests failed", 2: "locust failed", 3: "a consistency check failed"}
        print(f"locust exited with status {code} ({reason.get(code, 'see locust.log')})")
    return code


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def main(argv: Sequence[str] | None = None) -> int:
    """The ``geetcd-bench`` console script; returns the exit status."""
    try:
        options = parse_args(sys.argv[1:] if argv is None else argv)
        return bench(options)
    except BenchError as exc:
        print(f"geetcd-bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
