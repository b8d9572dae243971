"""geetcd get/put beside the floor: a bare urllib3 loop posting the same JSON, in one run.

    python loadtests/bench_kv.py [--seconds 3] [--concurrency 1,64,512] [--endpoint URL]

Starts its own single etcd member (geetcd.testing) unless --endpoint is given. For each
operation and concurrency it runs geetcd and the floor alternately, each for --seconds, and
prints requests/s, client CPU per request (getrusage of this process: the etcd server's CPU is
not counted) and p50/p99 latency, then the geetcd/floor ratios. The floor uses one urllib3
HTTPConnectionPool with the same maxsize, gevent queue and cooperative sockets (the process
is monkey-patched, as most gevent servers are), the same headers and body, and reads the
whole answer; geetcd additionally parses it into models.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import base64  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import gevent  # noqa: E402
import gevent.queue  # noqa: E402
import urllib3  # noqa: E402

import geetcd  # noqa: E402
from geetcd.bench.histogram import LatencyHistogram  # noqa: E402
from geetcd.testing import EtcdCluster  # noqa: E402

MAXSIZE = 64
KEYS = 1000
VALUE = b"v" * 16


@dataclass
class Cell:
    name: str
    ops: int
    seconds: float
    cpu: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.ops / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu / max(1, self.ops) * 1e6

    def pct(self, p: float) -> float:
        """The nearest-rank ``p`` latency in ms (geetcd.bench's one histogram; 0 if none)."""
        return LatencyHistogram(x * 1000 for x in self.latencies).percentile(p)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(name: str, op: Callable[[int], object], concurrency: int, seconds: float) -> Cell:
    """Run ``op(i)`` in ``concurrency`` greenlets for ``seconds``; bounded in time and count."""
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds
    count = [0]
    max_ops = 5_000_000

    def worker(wid: int) -> None:
        i = wid
        while time.monotonic() < stop_at and count[0] < max_ops:
            t0 = time.monotonic()
            op(i)
            latencies.append(time.monotonic() - t0)
            count[0] += 1
            i += concurrency

    cpu0, t0 = cpu_seconds(), time.monotonic()
    gevent.joinall([gevent.spawn(worker, w) for w in range(concurrency)])
    return Cell(name, count[0], time.monotonic() - t0, cpu_seconds() - cpu0, latencies)


def floor_ops(endpoint: str) -> dict[str, Callable[[int], object]]:
    parsed = urllib3.util.parse_url(endpoint)

    class Pool(urllib3.HTTPConnectionPool):
        QueueCls = gevent.queue.LifoQueue

    pool = Pool(parsed.host, parsed.port, maxsize=MAXSIZE, block=True, retries=False)
    headers = {"Content-Type": "application/json", "Grpc-Metadata-hasleader": "true"}
    timeout = urllib3.Timeout(connect=1.0, read=2.0)
    value_b64 = base64.b64encode(VALUE).decode()

    def key(i: int) -> str:
        return base64.b64encode(f"/bench/k{i % KEYS}".encode()).decode()

    def post(path: str, body: bytes) -> bytes:
        resp = pool.urlopen(
            "POST",
            path,
            body=body,
            headers=headers,
            retries=False,
            timeout=timeout,
            preload_content=True,
        )
        if resp.status != 200:
            raise RuntimeError(resp.data)
        return resp.data

    def get(i: int) -> object:
        return post("/v3/kv/range", json.dumps({"key": key(i)}).encode())

    def put(i: int) -> object:
        return post("/v3/kv/put", json.dumps({"key": key(i), "value": value_b64}).encode())

    return {"get": get, "put": put}


def geetcd_ops(client: geetcd.Client) -> dict[str, Callable[[int], object]]:
    def get(i: int) -> object:
        return client.get(f"/bench/k{i % KEYS}")

    def put(i: int) -> object:
        return client.put(f"/bench/k{i % KEYS}", VALUE)

    return {"get": get, "put": put}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", default="1,64,512")
    parser.add_argument("--ops", default="get,put")
    parser.add_argument("--endpoint", default=None)
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    names = args.ops.split(",")

    cluster = None
    endpoint = args.endpoint
    if endpoint is None:
        cluster = EtcdCluster(size=1).start()
        endpoint = cluster.endpoints[0]
    try:
        client = geetcd.Client(endpoint, maxsize=MAXSIZE)
        ours, floor = geetcd_ops(client), floor_ops(endpoint)
        for i in range(KEYS):  # populate so gets return a value
            ours["put"](i)
        rows = []
        for name in names:
            for level in levels:
                run("warmup", ours[name], level, 0.3)
                run("warmup", floor[name], level, 0.3)
                g1 = run("geetcd", ours[name], level, args.seconds / 2)
                f1 = run("urllib3", floor[name], level, args.seconds / 2)
                g2 = run("geetcd", ours[name], level, args.seconds / 2)
                f2 = run("urllib3", floor[name], level, args.seconds / 2)
                g = Cell(
                    "geetcd",
                    g1.ops + g2.ops,
                    g1.seconds + g2.seconds,
                    g1.cpu + g2.cpu,
                    g1.latencies + g2.latencies,
                )
                f = Cell(
                    "urllib3",
                    f1.ops + f2.ops,
                    f1.seconds + f2.seconds,
                    f1.cpu + f2.cpu,
                    f1.latencies + f2.latencies,
                )
                rows.append((name, level, g, f))
                print(
                    f"  {name} x{level}: geetcd {g.rate:,.0f}/s vs floor {f.rate:,.0f}/s",
                    file=sys.stderr,
                    flush=True,
                )
        client.close()
    finally:
        if cluster is not None:
            cluster.stop()

    print()
    print(
        "| op | greenlets | geetcd req/s | floor req/s | ratio | geetcd CPU/req | floor CPU/req "
        "| CPU ratio | geetcd p50/p99 ms | floor p50/p99 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, level, g, f in rows:
        print(
            f"| {name} | {level} | {g.rate:,.0f} | {f.rate:,.0f} | {g.rate / f.rate:.2f} | "
            f"{g.cpu_us:.0f} µs | {f.cpu_us:.0f} µs | {g.cpu_us / f.cpu_us:.2f} | "
            f"{g.pct(0.5):.2f} / {g.pct(0.99):.2f} | {f.pct(0.5):.2f} / {f.pct(0.99):.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
