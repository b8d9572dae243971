"""geetcd over TLS beside plain HTTP, same etcd member, same run.

    python loadtests/bench_tls.py [--seconds 3] [--concurrency 64] [--rounds 2]

Starts one etcd member (certificates from trustme) that serves the same data on an https and
an http client URL, then runs get and put with ``--concurrency`` greenlets through one
geetcd.Client per scheme (maxsize = concurrency, connections warmed first), alternating
http and https ``--rounds`` times for ``--seconds`` each. Prints ops/s, client CPU per
operation (this process only) and p50/p99 latency per cell, then the https/http ratio of the
summed rounds. The process is not monkey-patched (geetcd is cooperative on its own).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gevent

import geetcd
from geetcd.bench.histogram import LatencyHistogram

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
from tls_etcd import TlsEtcd, make_pki

KEYS = 1000
VALUE = b"v" * 16
MAX_OPS = 2_000_000


@dataclass
class Cell:
    ops: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def add(self, other: Cell) -> None:
        self.ops += other.ops
        self.seconds += other.seconds
        self.cpu += other.cpu
        self.latencies += other.latencies

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        """The nearest-rank ``p`` latency in ms (geetcd.bench's one histogram; 0 if none)."""
        return LatencyHistogram(x * 1000 for x in self.latencies).percentile(p)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(op: Callable[[int], object], concurrency: int, seconds: float) -> Cell:
    """``op(i)`` in ``concurrency`` greenlets for ``seconds`` (and at most MAX_OPS calls)."""
    cell = Cell()
    stop_at = time.monotonic() + seconds

    def worker(wid: int) -> None:
        i = wid
        while time.monotonic() < stop_at and cell.ops < MAX_OPS:
            t0 = time.monotonic()
            op(i)
            cell.latencies.append(time.monotonic() - t0)
            cell.ops += 1
            i += concurrency

    cpu0, t0 = cpu_seconds(), time.monotonic()
    gevent.joinall([gevent.spawn(worker, w) for w in range(concurrency)], raise_error=True)
    cell.seconds, cell.cpu = time.monotonic() - t0, cpu_seconds() - cpu0
    return cell


def operation(name: str, client: geetcd.Client, keys: list[str]) -> Callable[[int], object]:
    if name == "get":
        return lambda i: client.get(keys[i % KEYS])
    return lambda i: client.put(keys[i % KEYS], VALUE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="geetcd-bench-tls-"))
    pki = make_pki(workdir / "pki")
    member = TlsEtcd(
        workdir, pki, server_cert=pki.ip_cert, server_key=pki.ip_key, also_http=True
    ).start()
    assert member.http_url is not None
    clients = {
        "http": geetcd.Client(member.http_url, maxsize=args.concurrency),
        "https": geetcd.Client(
            member.url, tls=geetcd.TLS(ca_file=pki.ca_file), maxsize=args.concurrency
        ),
    }
    try:
        keys = [f"/bench-tls/{i:04d}" for i in range(KEYS)]
        for key in keys:
            clients["http"].put(key, VALUE)
        totals: dict[tuple[str, str], Cell] = {}
        print(f"etcd {member.url} + {member.http_url}, {args.concurrency} greenlets")
        print(
            f"{'op':<5} {'scheme':<6} {'round':>5} {'ops/s':>8} {'cpu us/op':>9} "
            f"{'p50 ms':>7} {'p99 ms':>7}"
        )
        for client in clients.values():  # open every connection (and TLS session)
            run(operation("get", client, keys), args.concurrency, 0.5)
        for op_name in ("get", "put"):
            for rnd in range(1, args.rounds + 1):
                for scheme, client in clients.items():
                    op = operation(op_name, client, keys)
                    cell = run(op, args.concurrency, args.seconds)
                    totals.setdefault((op_name, scheme), Cell()).add(cell)
                    print(
                        f"{op_name:<5} {scheme:<6} {rnd:>5} {cell.rate:>8.0f} "
                        f"{cell.cpu / max(1, cell.ops) * 1e6:>9.0f} "
                        f"{cell.pct(0.5):>7.2f} {cell.pct(0.99):>7.2f}"
                    )
        print()
        for op_name in ("get", "put"):
            http, https = totals[(op_name, "http")], totals[(op_name, "https")]
            print(
                f"{op_name}: http {http.rate:.0f} ops/s, https {https.rate:.0f} ops/s, "
                f"https/http = {https.rate / http.rate:.2f}; CPU per op "
                f"{http.cpu / http.ops * 1e6:.0f} vs {https.cpu / https.ops * 1e6:.0f} us"
            )
    finally:
        for client in clients.values():
            client.close()
        member.stop()


if __name__ == "__main__":
    main()
