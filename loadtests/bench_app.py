"""Locust through the example service: etcd, the gunicorn service and locust in one command.

    python loadtests/bench_app.py [--seconds 10] [--users 64] [--workers 2]

Starts a throwaway 3-member etcd, then for each run starts ``gunicorn -k gevent`` with the
service in loadtests/app and runs ``loadtests/locustfile_app.py`` headless against it:

* ``batch on``: the workers' clients batch reads (the default);
* ``batch off``: ``GEETCD_APP_BATCH_READS=0``, one etcd request per read;
* ``batch on, leader SIGKILL``: the etcd leader is killed half-way (restarted afterwards).

For each run it prints HTTP requests/s, p50/p99 and failures from locust, the etcd
requests per HTTP request (the members' ``grpc_server_started_total`` for Range, Txn, Put
and DeleteRange, before and after), and the longest time without a successful probe read
through the service (a greenlet of this process GETs every 10 ms). Bounded in time; stops
only the processes it started.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gevent
from geventhttpclient import HTTPClient

import geetcd
from geetcd.testing import EtcdCluster, free_port

REPO = Path(__file__).resolve().parents[1]
METHODS = ("Range", "Txn", "Put", "DeleteRange")


def etcd_requests(cluster: EtcdCluster) -> float:
    total = 0.0
    for member in cluster.members:
        if not member.is_running:
            continue
        for name, value in member.metrics().items():
            if name.startswith("grpc_server_started_total{") and any(
                f'grpc_method="{m}"' in name for m in METHODS
            ):
                total += value
    return total


def start_service(cluster: EtcdCluster, workers: int, batch: bool, log: Path) -> tuple[Any, int]:
    port = free_port()
    env = {
        **os.environ,
        "GEETCD_APP_ENDPOINTS": ",".join(cluster.endpoints),
        "GEETCD_APP_NAMESPACE": "/geetcd-bench-app/",
        "GEETCD_APP_BATCH_READS": "1" if batch else "0",
        "PYTHONPATH": str(REPO),
    }
    command = [
        sys.executable, "-m", "gunicorn", "-c", "loadtests/app/gunicorn_conf.py",
        "-w", str(workers), "-b", f"127.0.0.1:{port}", "loadtests.app:app",
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    probe = HTTPClient("127.0.0.1", port, connection_timeout=2, network_timeout=5)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if probe.get("/health").status_code == 200:
                break
        except OSError:
            gevent.sleep(0.2)
    probe.close()
    return proc, port


def stop_service(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def longest_gap(port: int, stop_at: float) -> float:
    """GET through the service every 10 ms until ``stop_at``; the longest success gap."""
    client = HTTPClient("127.0.0.1", port, connection_timeout=2, network_timeout=10)
    last_ok = time.monotonic()
    gap = 0.0
    while time.monotonic() < stop_at:
        try:
            if client.get("/kv/probe").status_code in (200, 404):
                now = time.monotonic()
                gap = max(gap, now - last_ok)
                last_ok = now
        except OSError:
            pass
        gevent.sleep(0.01)
    client.close()
    return gap


def run(
    cluster: EtcdCluster, label: str, *, batch: bool, kill: bool, args: argparse.Namespace
) -> str:
    work = Path(tempfile.mkdtemp(prefix="geetcd-bench-app-"))
    proc, port = start_service(cluster, args.workers, batch, work / "gunicorn.log")
    try:
        before = etcd_requests(cluster)
        locust = subprocess.Popen(
            [
                sys.executable, "-m", "locust", "-f", str(REPO / "loadtests/locustfile_app.py"),
                "--headless", "-u", str(args.users), "-r", str(args.users),
                "-t", f"{args.seconds}s", "--host", f"http://127.0.0.1:{port}",
                "--csv", str(work / "run"), "--only-summary", "--loglevel", "WARNING",
            ],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=(work / "locust.log").open("wb"),
        )  # fmt: skip
        gap = gevent.spawn(longest_gap, port, time.monotonic() + args.seconds)
        killed = None
        if kill:
            gevent.sleep(args.seconds / 2)
            killed = cluster.leader()
            killed.kill()
        give_up = time.monotonic() + args.seconds + 60
        while locust.poll() is None and time.monotonic() < give_up:
            gevent.sleep(0.1)  # cooperatively: the gap probe runs meanwhile
        if locust.poll() is None:
            locust.kill()
        after = etcd_requests(cluster)
        if killed is not None:
            killed.restart()
            cluster.wait_healthy()
        with (work / "run_stats.csv").open() as f:
            total = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
        http = int(total["Request Count"])
        return (
            f"| {label} | {float(total['Requests/s']):,.0f} | {total['50%']} / {total['99%']} "
            f"| {total['Failure Count']} | {(after - before) / max(1, http):.2f} "
            f"| {gap.get() * 1000:.0f} ms |"
        )
    finally:
        stop_service(proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    rows = []
    with EtcdCluster(size=3) as cluster, geetcd.Client(cluster.endpoints) as client:
        client.put("/geetcd-bench-app/config/color", "blue")
        rows.append(run(cluster, "batch on", batch=True, kill=False, args=args))
        rows.append(run(cluster, "batch off", batch=False, kill=False, args=args))
        rows.append(run(cluster, "batch on, leader SIGKILL", batch=True, kill=True, args=args))
    print(f"\n{args.users} locust users, {args.workers} gunicorn gevent workers, {args.seconds} s")
    print("| run | HTTP req/s | p50 / p99 ms | failures | etcd req per HTTP req | longest gap |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
