"""``geetcd-bench``: a locust load test of etcd through geetcd, in one command.

    geetcd-bench                                  # kv mix, 20 users, 20 s, throwaway cluster
    geetcd-bench --scenario watch --users 50
    geetcd-bench --endpoints http://10.0.0.1:2379,http://10.0.0.2:2379 --duration 60
    geetcd-bench --scenario kv -- --kv-read-ratio 0.5     # after "--": passed to locust

Without ``--endpoints`` it starts a throwaway etcd cluster on loopback ports
(:class:`geetcd.testing.EtcdCluster`, 3 members unless ``--cluster-size``) and stops it at
the end. It runs a locustfile of ``loadtests/`` headless in a subprocess (locust
monkey-patches the process it runs in, so it never runs in this one), prints a progress
line every 2 s, then a summary table built from locust's JSON output (exact totals) and
the precise percentiles the collector records, and writes into ``--out``:
``report.html`` (locust's report), ``locust.json``, ``latency.json``, ``locust_*.csv``,
``chart.svg`` (throughput and latency over time), ``summary.txt`` (with the attempts and
failovers per member), ``locust.log`` and one
``requests-<role>-<pid>.json`` per locust process (the requests it fired itself).

The exit status is locust's: 0 when no request failed (the failover scenario: when writes
recovered after the fault and every worker saw it), 1 when some failed, 2 for a usage or
start-up error, 3 when the txn scenario found a lost or doubled update.

The package, one module per job (none imports locust except the collector, which runs
only inside the locust subprocess):

- :mod:`geetcd.bench.cli`: the command line and the run from start to end;
- :mod:`geetcd.bench.runner`: the throwaway cluster, the locust subprocess, progress lines;
- :mod:`geetcd.bench.collector`: statistics inside the locust processes;
- :mod:`geetcd.bench.attempts`: attempts and failovers per member (an observer);
- :mod:`geetcd.bench.report`: the summary table and the chart of a run;
- :mod:`geetcd.bench.chart`: SVG line charts and console sparklines;
- :mod:`geetcd.bench.histogram`: the one latency histogram and percentile definition.
"""

from __future__ import annotations

from geetcd.bench.cli import SCENARIOS, Options, bench, main, parse_args
from geetcd.bench.histogram import LatencyHistogram
from geetcd.bench.report import Row, Summary, chart_from_history, format_summary, summarize
from geetcd.bench.runner import BenchError, locust_command

__all__ = [
    "SCENARIOS",
    "BenchError",
    "LatencyHistogram",
    "Options",
    "Row",
    "Summary",
    "bench",
    "chart_from_history",
    "format_summary",
    "locust_command",
    "main",
    "parse_args",
    "summarize",
]
