"""Lock hand-off benchmark: latency, acquisitions/s and server requests per acquisition.

    python loadtests/bench_lock.py [--seconds 5] [--contenders 1,10,100] [--mode clients,greenlets]
                                   [--endpoints URL,URL,...] [--json FILE]

Starts its own 3-member etcd (geetcd.testing) unless --endpoints is given. For each mode and
number of contenders, every contender loops ``acquire(); release()`` on one lock for
--seconds:

``clients``
    each contender has its own geetcd.Client, so every hand-off goes through etcd: the
    holder's delete wakes the next waiter's watch of its predecessor (and only it).
``greenlets``
    the contenders are greenlets sharing one client: they queue in the client's local FIFO
    and the client keeps one waiter key in etcd (each acquisition a fresh one).

Printed per cell: acquisitions/s; hand-off latency p50/p99 (from the moment the holder calls
release() to the moment the next acquire() returns; with one contender it is its own
release plus re-acquire); and the server requests per acquisition: every HTTP request the
clients sent (unary requests and watch streams opened, counted at the transport, warm-up
excluded, keepalives included), split into unary and watch. Without a herd, the requests
per acquisition stay flat as contenders grow.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import gevent

import geetcd
from geetcd.bench.histogram import LatencyHistogram
from geetcd.testing import EtcdCluster
from geetcd.transport import RawResponse, Stream, Transport

TTL = 60


class CountingTransport(Transport):
    """The client's transport, counting the requests it sends (unary and streams)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.unary = 0
        self.streams = 0

    def request(self, *args: Any, **kwargs: Any) -> RawResponse:
        self.unary += 1
        return super().request(*args, **kwargs)

    def open_stream(self, *args: Any, **kwargs: Any) -> Stream:
        self.streams += 1
        return super().open_stream(*args, **kwargs)


@dataclass
class Cell:
    mode: str
    contenders: int
    acquisitions: int
    seconds: float
    rate: float
    p50_ms: float
    p99_ms: float
    requests_per_acquisition: float
    unary_per_acquisition: float
    watches_per_acquisition: float


def _requests(transports: list[CountingTransport]) -> tuple[int, int]:
    return sum(t.unary for t in transports), sum(t.streams for t in transports)


def run_cell(endpoints: list[str], mode: str, contenders: int, seconds: float) -> Cell:
    """One cell: ``contenders`` loops of acquire/release for ``seconds`` (bounded: each
    contender finishes the acquisition it is waiting for, then stops)."""
    namespace = f"/geetcd-bench/lock/{secrets.token_hex(4)}/"
    count = contenders if mode == "clients" else 1
    transports = [CountingTransport() for _ in range(count)]
    clients = [geetcd.Client(endpoints, namespace=namespace, transport=t) for t in transports]
    try:
        for c in clients:  # warm-up: the session lease and a connection of every client
            warm = c.lock("warm-up", ttl=TTL)
            warm.acquire(timeout=30)
            warm.release()
        gevent.sleep(0.2)
        before = _requests(transports)
        handoffs: list[float] = []
        released_at: list[float | None] = [None]
        acquired = [0, 0]  # inside the window, in total
        stop_at = time.monotonic() + seconds
        started = time.monotonic()

        def contender(index: int) -> None:
            lock = clients[index % count].lock("bench", ttl=TTL)
            while time.monotonic() < stop_at:
                lock.acquire()
                now = time.monotonic()
                if released_at[0] is not None:
                    handoffs.append(now - released_at[0])
                acquired[1] += 1
                if now < stop_at:
                    acquired[0] += 1
                released_at[0] = time.monotonic()
                lock.release()

        gevent.joinall([gevent.spawn(contender, i) for i in range(contenders)], raise_error=True)
        elapsed = min(time.monotonic(), stop_at) - started
        gevent.sleep(0.2)  # background cleanups, if any, count too
        after = _requests(transports)
        unary, watches = after[0] - before[0], after[1] - before[1]
        total = max(1, acquired[1])
        histogram = LatencyHistogram(x * 1000.0 for x in handoffs)
        return Cell(
            mode=mode,
            contenders=contenders,
            acquisitions=acquired[0],
            seconds=round(elapsed, 2),
            rate=round(acquired[0] / elapsed, 1),
            p50_ms=round(histogram.percentile(0.50), 2),
            p99_ms=round(histogram.percentile(0.99), 2),
            requests_per_acquisition=round((unary + watches) / total, 2),
            unary_per_acquisition=round(unary / total, 2),
            watches_per_acquisition=round(watches / total, 2),
        )
    finally:
        for c in clients:
            c.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--contenders", default="1,10,100")
    parser.add_argument("--mode", default="clients,greenlets")
    parser.add_argument("--endpoints", default=None, help="comma-separated client URLs")
    parser.add_argument("--json", default=None, help="also write the cells to this file")
    args = parser.parse_args(argv)
    contenders = [int(x) for x in args.contenders.split(",")]
    modes = [m.strip() for m in args.mode.split(",")]
    for mode in modes:
        if mode not in ("clients", "greenlets"):
            parser.error(f"unknown mode {mode!r}")
    cluster = None
    if args.endpoints:
        endpoints = args.endpoints.split(",")
    else:
        cluster = EtcdCluster(size=3).start()
        endpoints = cluster.endpoints
    cells: list[Cell] = []
    try:
        print(
            f"{'mode':<10} {'contenders':>10} {'acq/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'req/acq':>8} {'unary':>6} {'watch':>6} {'acquisitions':>12}"
        )
        for mode in modes:
            for n in contenders:
                cell = run_cell(endpoints, mode, n, args.seconds)
                cells.append(cell)
                print(
                    f"{cell.mode:<10} {cell.contenders:>10} {cell.rate:>8.1f} "
                    f"{cell.p50_ms:>8.2f} {cell.p99_ms:>8.2f} "
                    f"{cell.requests_per_acquisition:>8.2f} {cell.unary_per_acquisition:>6.2f} "
                    f"{cell.watches_per_acquisition:>6.2f} {cell.acquisitions:>12}",
                    flush=True,
                )
    finally:
        if cluster is not None:
            cluster.stop()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump([asdict(c) for c in cells], out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
