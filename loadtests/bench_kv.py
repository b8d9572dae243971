"""geetcd get/put, batching off and on, beside two floors posting the same JSON, in one run.

    python loadtests/bench_kv.py [--seconds 3] [--concurrency 1,64,512] [--endpoint URL]
                                 [--observe none,metrics,tracing,both]

Starts its own single etcd member (geetcd.testing) unless --endpoint is given. For each
operation and concurrency it runs, alternately, ``--rounds`` times (default 2) each for
--seconds/rounds:

* ``geetcd``: ``Client(batch_reads=False)``, one request per call;
* ``geetcd+batch``: ``Client()`` (reads batched) for get, ``Client(batch_writes=True)`` for put;
* ``urllib3``: the floor, one urllib3 HTTPConnectionPool with the same maxsize, gevent queue
  and cooperative sockets (the process is monkey-patched, as most gevent servers are);
* ``http.client``: plain ``http.client.HTTPConnection`` objects from a gevent queue.

and prints operations/s, client CPU per operation (getrusage of this process: the etcd
server's CPU is not counted), p50/p99 latency, the ratios to the urllib3 floor, and the
longest lateness of a 5 ms ticker greenlet during each run (how responsive the hub stayed).

With ``wrk`` on the PATH (``apt-get install wrk``) it ends with wrk's gets/s against the same
member, one request per get (``--wrk-connections`` connections, one thread, --seconds): what
etcd itself serves to a client written in C, the stretch figure for ``geetcd+batch``.

``--observe`` (comma-separated modes; default ``none``) runs both geetcd variants once per
mode, in the same alternation, with the observer adapters attached: ``metrics``
(:func:`geetcd.metrics.instrument`, a registry of its own), ``tracing``
(:func:`geetcd.tracing.instrument`, an SDK TracerProvider sampling every span into a
BatchSpanProcessor whose exporter drops them: the full cost of recording) or ``both``. The
variants are named ``geetcd [metrics]``, ``geetcd+batch [tracing]``...; compare their
CPU/op with the plain ``geetcd`` rows of the same run.

``--gc-freeze`` calls ``gc.freeze()`` once set up. Most of the hub lateness at 512 greenlets
is the garbage collector's full collections (about 25 ms each here, scanning every object
made at start-up); frozen, those objects are skipped.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import base64  # noqa: E402
import gc  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

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
    lateness: float = 0.0
    """The longest lateness of a 5 ms ticker during the run (seconds)."""

    def __add__(self, other: Cell) -> Cell:
        return Cell(
            self.name,
            self.ops + other.ops,
            self.seconds + other.seconds,
            self.cpu + other.cpu,
            self.latencies + other.latencies,
            max(self.lateness, other.lateness),
        )

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

    late = [0.0]

    def ticker() -> None:
        while time.monotonic() < stop_at:
            due = time.monotonic() + 0.005
            gevent.sleep(0.005)
            late[0] = max(late[0], time.monotonic() - due)

    cpu0, t0 = cpu_seconds(), time.monotonic()
    tick = gevent.spawn(ticker)
    gevent.joinall([gevent.spawn(worker, w) for w in range(concurrency)])
    elapsed, cpu = time.monotonic() - t0, cpu_seconds() - cpu0
    tick.join()
    return Cell(name, count[0], elapsed, cpu, latencies, late[0])


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


def http_client_ops(endpoint: str) -> dict[str, Callable[[int], object]]:
    """The plain http.client floor: MAXSIZE keep-alive connections in a gevent queue."""
    parsed = urllib3.util.parse_url(endpoint)
    idle: gevent.queue.LifoQueue[http.client.HTTPConnection] = gevent.queue.LifoQueue()
    for _ in range(MAXSIZE):
        idle.put(http.client.HTTPConnection(parsed.host or "127.0.0.1", parsed.port, timeout=2.0))
    headers = {"Content-Type": "application/json", "Grpc-Metadata-hasleader": "true"}
    value_b64 = base64.b64encode(VALUE).decode()

    def key(i: int) -> str:
        return base64.b64encode(f"/bench/k{i % KEYS}".encode()).decode()

    def post(path: str, body: bytes) -> bytes:
        conn = idle.get()
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except Exception:
            conn.close()
            raise
        finally:
            idle.put(conn)
        if resp.status != 200:
            raise RuntimeError(data)
        return data

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


OBSERVE_MODES = ("none", "metrics", "tracing", "both")
_tracer_provider: object = None


def observe(client: geetcd.Client, mode: str) -> None:
    """Attach the adapters ``mode`` names to ``client`` (see the module docstring)."""
    if mode in ("metrics", "both"):
        from prometheus_client import CollectorRegistry

        import geetcd.metrics

        geetcd.metrics.instrument(client, CollectorRegistry())
    if mode in ("tracing", "both"):
        import geetcd.tracing

        geetcd.tracing.instrument(client, tracer_provider())


def tracer_provider() -> Any:
    """One SDK TracerProvider for the run: every span sampled, batched, then dropped."""
    global _tracer_provider
    if _tracer_provider is None:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        class Drop(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Drop()))
        _tracer_provider = provider
    return _tracer_provider


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", default="1,64,512")
    parser.add_argument("--ops", default="get,put")
    parser.add_argument("--endpoint", default=None)
    parser.add_argument("--wrk-connections", type=int, default=MAXSIZE)
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="alternations of the variants, each --seconds/rounds long (default 2); more "
        "rounds spread a busy machine's drift more evenly over the variants",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() after set-up: full collections then skip the start-up objects",
    )
    parser.add_argument(
        "--observe",
        default="none",
        help="comma-separated modes among none, metrics, tracing, both: the geetcd variants "
        "run once per mode with those adapters attached (default: none)",
    )
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    names = args.ops.split(",")
    modes = args.observe.split(",")
    unknown = set(modes) - set(OBSERVE_MODES)
    if unknown or not modes:
        parser.error(f"--observe takes modes among {', '.join(OBSERVE_MODES)}, got {args.observe}")

    cluster = None
    endpoint = args.endpoint
    if endpoint is None:
        cluster = EtcdCluster(size=1).start()
        endpoint = cluster.endpoints[0]
    clients: list[geetcd.Client] = []
    try:
        variants: dict[str, dict[str, Callable[[int], object]]] = {}
        for mode in modes:
            trio = [
                geetcd.Client(endpoint, maxsize=MAXSIZE, batch_reads=False),
                geetcd.Client(endpoint, maxsize=MAXSIZE),
                geetcd.Client(endpoint, maxsize=MAXSIZE, batch_writes=True),
            ]
            clients.extend(trio)
            for client in trio:
                observe(client, mode)
            plain, batched_reads, batched_writes = (geetcd_ops(c) for c in trio)
            suffix = "" if mode == "none" else f" [{mode}]"
            variants["geetcd" + suffix] = plain
            variants["geetcd+batch" + suffix] = {
                "get": batched_reads["get"],
                "put": batched_writes["put"],
            }
        variants["urllib3"] = floor_ops(endpoint)
        variants["http.client"] = http_client_ops(endpoint)
        populate = geetcd_ops(clients[0])["put"]
        for i in range(KEYS):  # populate so gets return a value
            populate(i)
        wrk_rate = wrk_gets(endpoint, args.wrk_connections, args.seconds)
        if args.gc_freeze:
            gc.collect()
            gc.freeze()
        rows: list[tuple[str, int, dict[str, Cell]]] = []
        for name in names:
            for level in levels:
                for ops in variants.values():
                    run("warmup", ops[name], level, 0.3)
                cells: dict[str, Cell] = {}
                for _round in range(max(1, args.rounds)):  # alternate: drift hits all alike
                    for variant, ops in variants.items():
                        cell = run(variant, ops[name], level, args.seconds / max(1, args.rounds))
                        cells[variant] = cells[variant] + cell if variant in cells else cell
                rows.append((name, level, cells))
                summary = ", ".join(f"{v} {c.rate:,.0f}/s" for v, c in cells.items())
                print(f"  {name} x{level}: {summary}", file=sys.stderr, flush=True)
    finally:
        for client in clients:
            client.close()
        if cluster is not None:
            cluster.stop()

    print()
    print(
        "| op | greenlets | variant | ops/s | x floor | CPU/op | CPU x floor | p50 / p99 ms "
        "| hub lateness ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, level, cells in rows:
        floor = cells["urllib3"]
        for variant, c in cells.items():
            print(
                f"| {name} | {level} | {variant} | {c.rate:,.0f} | {c.rate / floor.rate:.2f} | "
                f"{c.cpu_us:.0f} µs | {c.cpu_us / floor.cpu_us:.2f} | "
                f"{c.pct(0.5):.2f} / {c.pct(0.99):.2f} | {c.lateness * 1000:.0f} |"
            )
    if wrk_rate is not None:
        per_get = f"{args.wrk_connections} connections, one request per get"
        print(f"\nwrk, {per_get}: {wrk_rate:,.0f} gets/s")
    else:
        print("\nwrk: not on the PATH (apt-get install wrk), no wrk figure")
    return 0


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"key":"%s"}'
"""


def wrk_gets(endpoint: str, connections: int, seconds: float) -> float | None:
    """wrk's requests/s of one-key ranges against ``endpoint`` (None without wrk)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    key = base64.b64encode(b"/bench/k1").decode()
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT % key)
        script.flush()
        duration = f"{max(1, round(seconds))}s"
        command = [wrk, "-t1", f"-c{connections}", f"-d{duration}", "-s", script.name]
        out = subprocess.run(
            [*command, f"{endpoint}/v3/kv/range"],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=True,
        ).stdout
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(f"no Requests/sec in wrk's output: {out!r}")


if __name__ == "__main__":
    raise SystemExit(main())
