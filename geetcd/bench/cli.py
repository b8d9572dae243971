"""The ``geetcd-bench`` command line: parse, start the cluster, run locust, report.

See :mod:`geetcd.bench` for what it does and writes. No locust import here.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geetcd.bench.attempts import format_attempts
from geetcd.bench.report import chart_from_history, format_summary, summarize
from geetcd.bench.runner import (
    MEMBERS_ENV,
    BenchError,
    RunSpec,
    child_env,
    etcd_version,
    locust_command,
    members_env,
    run_locust,
    start_cluster,
)

__all__ = ["SCENARIOS", "Options", "bench", "main", "parse_args"]

SCENARIOS = ("kv", "watch", "txn", "failover")
_OUTPUTS = (
    "report.html",
    "locust.json",
    "latency.json",
    "chart.svg",
    "summary.txt",
    "locust.log",
    "locust_stats.csv",
    "locust_stats_history.csv",
    "locust_failures.csv",
    "locust_exceptions.csv",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geetcd-bench",
        description="Load-test etcd through geetcd with locust: starts a throwaway local "
        "cluster unless --endpoints is given, runs a scenario headless, prints a summary and "
        "writes an HTML report and an SVG chart.",
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
class Options(RunSpec):
    """The parsed command line."""

    scenario: str = "kv"
    endpoints: list[str] | None = None
    cluster_size: int = 3


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
        locustfile=_find_locustfile(ns.scenario, ns.locustfile),
        users=ns.users,
        spawn_rate=spawn_rate,
        duration=ns.duration,
        out=Path(ns.out),
        processes=ns.processes,
        locust_args=extra,
        scenario=ns.scenario,
        endpoints=endpoints,
        cluster_size=ns.cluster_size,
    )


def _find_locustfile(scenario: str, given: str | None) -> Path:
    """The scenario's locustfile from the source tree's ``loadtests/`` (or ``given``)."""
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise BenchError(f"no locustfile at {path}")
        return path.resolve()
    name = f"locustfile_{scenario}.py"
    package = Path(__file__).resolve().parent.parent  # geetcd/
    places = [package.parent / "loadtests", package / "_loadtests", Path.cwd() / "loadtests"]
    for place in places:
        if (place / name).is_file():
            return (place / name).resolve()
    tried = ", ".join(str(p) for p in places)
    raise BenchError(
        f"{name} not found (looked in {tried}): run geetcd-bench from a geetcd source checkout "
        "(pip install -e '.[test,locust]') or pass --locustfile"
    )


def _clean(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in _OUTPUTS:
        path = out / name
        if path.is_file():
            path.unlink()
    for stale in glob.glob(str(out / "requests-*.json")):
        Path(stale).unlink()


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def bench(options: Options) -> int:
    """Run one benchmark as ``options`` say; returns the exit status (see geetcd.bench)."""
    _clean(options.out)
    cluster = None
    env = child_env(options.out)
    try:
        if options.endpoints is None:
            started = time.monotonic()
            cluster = start_cluster(options.cluster_size)
            endpoints = list(cluster.endpoints)
            where = (
                f"throwaway {options.cluster_size}-member etcd {etcd_version(endpoints[0])}, "
                f"started in {time.monotonic() - started:.1f} s"
            )
            if options.scenario == "failover":
                env[MEMBERS_ENV] = members_env(cluster)
        else:
            endpoints = options.endpoints
            where = f"etcd {etcd_version(endpoints[0])} at the given endpoints"
        print(f"endpoints: {','.join(endpoints)} ({where})")
        processes = f", {options.processes} processes" if options.processes else ""
        print(
            f"running the {options.scenario} scenario: {options.users} users, "
            f"{options.duration} s{processes} ({options.locustfile.name})"
        )
        code = run_locust(locust_command(options, endpoints), env, options)
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
    latency = _load_json(out / "latency.json")
    summary = summarize(stats, latency)
    processes = f", {options.processes} processes" if options.processes else ""
    title = (
        f"geetcd-bench {options.scenario}: {options.users} users, {options.duration} s"
        f"{processes}, {where}"
    )
    text = format_summary(summary, title)
    members = latency.get("members", {}) if isinstance(latency, dict) else {}
    if members:
        known = {url: n for url, n in members.items() if "," not in url}
        unknown = sum(n for url, n in members.items() if "," in url)
        shares = [f"{url} {n:,}" for url, n in sorted(known.items())]
        if unknown:
            shares.append(f"member not known {unknown:,}")
        text += "\n  requests by member: " + ", ".join(shares)
    attempts = latency.get("attempts") if isinstance(latency, dict) else None
    for line in format_attempts(attempts):
        text += "\n" + line
    (out / "summary.txt").write_text(text + "\n", encoding="utf-8")
    print()
    print(text)
    print()
    history = out / "locust_stats_history.csv"
    if history.is_file():
        chart_title = (
            f"geetcd-bench {options.scenario}: {options.users} users, {options.duration} s"
        )
        chart_from_history(history, out / "chart.svg", chart_title)
    for name, what in (
        ("report.html", "locust's HTML report"),
        ("chart.svg", "throughput and latency over time"),
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
