"""Running locust for ``geetcd-bench``: the throwaway cluster, the locust subprocess, progress.

locust monkey-patches the process it runs in, so it always runs in a subprocess:
``python -c <bootstrap>``, where the bootstrap imports locust first, then installs
:mod:`geetcd.bench.collector` (precise percentiles, progress lines, per-process request
counts), then hands over to ``locust.main.main()`` with the command line built here.
Nothing in this module imports locust.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from geetcd.testing import EtcdBinaryNotFound, EtcdCluster, free_port

__all__ = [
    "BOOTSTRAP",
    "GRACE",
    "MEMBERS_ENV",
    "PROGRESS_MARK",
    "REPORT_ENV",
    "BenchError",
    "RunSpec",
    "child_env",
    "etcd_version",
    "locust_command",
    "members_env",
    "progress_line",
    "run_locust",
    "start_cluster",
]

REPORT_ENV = "GEETCD_BENCH_REPORT"
"""Set (to the path of ``latency.json``) in the locust processes: the collector writes its
report there and the per-process request counts beside it."""

PROGRESS_MARK = "geetcd-bench-progress "
"""Prefix of the progress lines (followed by one JSON object) the collector prints."""

MEMBERS_ENV = "GEETCD_BENCH_MEMBERS"
"""The members the failover scenario may signal (read by loadtests/locustfile_failover.py)."""

GRACE = 60.0
"""Seconds past the duration before a silent locust is stopped."""

BOOTSTRAP = "import locust.main, sys; import geetcd.bench.collector; sys.exit(locust.main.main())"
"""What ``python -c`` runs: locust first (it patches before urllib3 and ssl are imported),
then the collector, then locust's own command line, which reads ``sys.argv``."""


class BenchError(Exception):
    """A usage or start-up problem, reported as one line and exit status 2."""


@dataclass
class RunSpec:
    """What the locust subprocess needs to know (a subset of the command-line options)."""

    locustfile: Path
    users: int
    spawn_rate: float
    duration: int
    out: Path
    processes: int | None
    locust_args: list[str]


def locust_command(spec: RunSpec, endpoints: Sequence[str]) -> list[str]:
    """The locust command line (``python -c BOOTSTRAP ...``) for ``spec``."""
    out = spec.out
    command = [
        sys.executable,
        "-c",
        BOOTSTRAP,
        "-f",
        str(spec.locustfile),
        "--headless",
        "--users",
        str(spec.users),
        "--spawn-rate",
        f"{spec.spawn_rate:g}",
        "--run-time",
        f"{spec.duration}s",
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
    if spec.processes is not None:
        port = str(free_port())
        # The forked workers connect with --master-host/--master-port: set both sides, or
        # the workers look for a master on the default port 5557.
        command += [
            "--processes",
            str(spec.processes),
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            port,
            "--master-host",
            "127.0.0.1",
            "--master-port",
            port,
        ]
    return command + spec.locust_args


@dataclass
class _Progress:
    distributed: bool = False
    last_requests: int = 0
    last_elapsed: float = 0.0


def progress_line(data: dict[str, Any], state: _Progress) -> str:
    """One console line from a progress record. The rate is the growth since the previous
    line; distributed runs use locust's sliding 10 s rate instead, because workers report
    to the master only every 3 s. p50/p99 are those of the requests counted since the
    previous line (nearest rank, to 1 %)."""
    elapsed = float(data.get("elapsed", 0.0))
    requests = int(data.get("requests", 0))
    span = elapsed - state.last_elapsed
    if state.distributed:
        rate = float(data.get("rps", 0.0))
    else:
        rate = (requests - state.last_requests) / span if span > 0 else 0.0
    state.last_requests, state.last_elapsed = requests, elapsed
    p50, p99 = data.get("p50"), data.get("p99")
    latency = f"p50 {p50:.2f} ms  p99 {p99:.2f} ms" if p50 is not None else "p50 -  p99 -"
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


def _reader(stream: TextIO, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def run_locust(command: list[str], env: dict[str, str], spec: RunSpec) -> int:
    """Run locust, stream progress lines and warnings, keep its output in ``locust.log``.

    Returns locust's exit status. Stops locust (SIGTERM, then SIGKILL, by PID) if it runs
    :data:`GRACE` seconds past the duration; on Ctrl-C stops it and re-raises.
    """
    log_path = spec.out / "locust.log"
    deadline = time.monotonic() + spec.duration + GRACE
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
        state = _Progress(distributed=spec.processes is not None)
        try:
            while True:
                if time.monotonic() > deadline and proc.poll() is None:
                    print(f"  locust still runs {GRACE:.0f} s after the end: stopping it")
                    _stop(proc)
                try:
                    line = lines.get(timeout=1.0)
                except queue.Empty:
                    continue
                if line is None:
                    break
                if line.startswith(PROGRESS_MARK):
                    print(progress_line(json.loads(line[len(PROGRESS_MARK) :]), state))
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


def etcd_version(url: str) -> str:
    """The ``etcdserver`` version ``url``'s ``/version`` reports, or ``"?"``. Never raises."""
    try:
        with urllib.request.urlopen(url + "/version", timeout=2.0) as answer:
            version = json.loads(answer.read()).get("etcdserver", "?")
    except (OSError, ValueError):
        return "?"
    return str(version)


def start_cluster(size: int) -> EtcdCluster:
    """Start a throwaway ``size``-member cluster on loopback ports; BenchError if it fails."""
    print(f"starting a throwaway {size}-member etcd cluster on 127.0.0.1 ...")
    cluster = EtcdCluster(size=size)
    try:
        cluster.start()
    except EtcdBinaryNotFound as exc:
        raise BenchError(f"{exc} (or pass --endpoints of a running cluster)") from exc
    except RuntimeError as exc:
        raise BenchError(f"etcd did not start: {exc}") from exc
    return cluster


def members_env(cluster: EtcdCluster) -> str:
    """The JSON of :data:`MEMBERS_ENV` for ``cluster``: name, client URL and PID of each."""
    return json.dumps(
        [{"name": m.name, "url": m.client_url, "pid": m.pid} for m in cluster.members]
    )


def child_env(out: Path) -> dict[str, str]:
    """The environment of the locust subprocess: this one plus :data:`REPORT_ENV`."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env[REPORT_ENV] = str((out / "latency.json").resolve())
    return env
