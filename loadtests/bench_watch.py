"""Watch fan-out benchmark: geetcd against the floor of one raw urllib3 stream per watcher.

    python loadtests/bench_watch.py [--quick] [--one-key N] [--distinct N] [--rounds 20]

Starts its own single etcd member (geetcd.testing) and, in this one process, runs:

* distinct keys (2,000 watchers, 200 with --quick), each on its own key, so one server
  stream each. Every round writes every key (txns of 100 puts, sent in parallel);
* one key (10,000 watchers, 1,000 with --quick), all on the same key: geetcd coalesces them
  into one server stream. Every round is one put.

Each load runs with geetcd (callback form; and, for one key, also one iterator greenlet per
watch) and with the floor: a minimal gevent loop with one plain urllib3 streaming request
per watcher (HTTPConnectionPool with a gevent LifoQueue and cooperative sockets,
preload_content=False, read1 + line splitting + json.loads), no coalescing, no resume.
Rounds are spaced 120 ms. Every value carries the time it was sent, so each delivery gives
a put-to-delivery latency. Reported per run: watchers, server streams and watchers as etcd
counts them, time to establish all watches, deliveries lost or repeated (each watcher must
see every round's revision exactly once, in order), latency p50/p99/max, client RSS per
watch (VmRSS delta: idle after establishing, and after the load).

Each run happens in a fresh child process (this script with ``--child``), so the RSS
deltas of one run are not flattered by memory another run freed; all the watchers of a run
live in that one process. Targets: one key p99 < 50 ms; distinct p99 < 100 ms and < 30 KiB
per watch. ``ulimit -n`` must allow about 2 x watchers descriptors (etcd needs as many).
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import logging
import math
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import gevent
import gevent.event
import gevent.pool
import gevent.queue
import urllib3
from urllib3.connectionpool import HTTPConnectionPool

import geetcd
from geetcd import Op
from geetcd.bench.histogram import LatencyHistogram
from geetcd.testing import EtcdCluster
from geetcd.transport import CooperativeHTTPConnection

PREFIX = "/bench-watch/"
ROUND_GAP = 0.12
CREATORS = 200  # greenlets creating watches concurrently


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def settle() -> int:
    gevent.sleep(0.3)
    gc.collect()
    return rss_kib()


@dataclass
class Result:
    """One run's figures; ``p50``/``p99``/``pmax`` (ms) are filled from the latencies."""

    name: str
    watchers: int
    server_streams: float = 0
    server_watchers: float = 0
    establish_s: float = 0.0
    expected: int = 0
    received: int = 0
    lost: int = 0
    repeated: int = 0
    out_of_order: int = 0
    latencies: list[float] = field(default_factory=list)
    rss_idle_kib: float = 0.0
    rss_load_kib: float = 0.0
    cpu_us_per_event: float = math.nan
    p50: float = math.nan
    p99: float = math.nan
    pmax: float = math.nan

    def summarize(self) -> None:
        if self.latencies:
            histogram = LatencyHistogram(x * 1000 for x in self.latencies)
            self.p50, self.p99 = histogram.percentile(0.5), histogram.percentile(0.99)
            self.pmax = histogram.max
        self.latencies = []


class Recorder:
    """Per-watcher delivered revisions and put-to-delivery latencies."""

    def __init__(self, watchers: int) -> None:
        self.revisions: list[list[int]] = [[] for _ in range(watchers)]
        self.latencies: list[float] = []

    def record(self, index: int, revision: int, value: bytes) -> None:
        now = time.perf_counter()
        self.revisions[index].append(revision)
        self.latencies.append(now - float(value))

    def check(self, result: Result, expected: Callable[[int], list[int]]) -> None:
        for index, got in enumerate(self.revisions):
            want = expected(index)
            result.expected += len(want)
            result.received += len(got)
            result.lost += len(set(want) - set(got))
            result.repeated += len(got) - len(set(got))
            result.out_of_order += int(got != sorted(got))
        result.latencies = self.latencies


class FloorPool(HTTPConnectionPool):
    """The simplest cooperative urllib3 pool: gevent sockets, gevent queue."""

    ConnectionCls = CooperativeHTTPConnection
    QueueCls = gevent.queue.LifoQueue


def server_counts(endpoint: str) -> tuple[float, float]:
    """etcd's own count of watch streams and watchers (from /metrics)."""
    url = urllib3.util.parse_url(endpoint)
    pool = FloorPool(url.host, url.port, maxsize=1, retries=False)
    try:
        text = pool.request("GET", "/metrics", timeout=5).data.decode()
    finally:
        pool.close()
    counts = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("etcd_debugging_mvcc_watch_stream_total", "etcd_debugging_mvcc_watcher_total"):
            counts[name] = float(value)
    return (
        counts.get("etcd_debugging_mvcc_watch_stream_total", math.nan),
        counts.get("etcd_debugging_mvcc_watcher_total", math.nan),
    )


def wait_quiet(endpoint: str, timeout: float = 30.0) -> None:
    """Wait until etcd counts no watcher (the previous run closed everything)."""
    deadline = time.monotonic() + timeout
    while server_counts(endpoint)[1] > 0 and time.monotonic() < deadline:
        time.sleep(0.1)


# ------------------------------------------------------------------------------ writers
def write_one_key(client: geetcd.Client, key: str, rounds: int) -> list[int]:
    revisions = []
    for _ in range(rounds):
        revisions.append(client.put(key, repr(time.perf_counter())).header.revision)
        gevent.sleep(ROUND_GAP)
    return revisions


def write_distinct(client: geetcd.Client, keys: list[str], rounds: int) -> list[dict[str, int]]:
    """Every round writes every key; returns, per round, key -> revision."""
    per_round: list[dict[str, int]] = []

    def txn(chunk: list[str]) -> tuple[list[str], int]:
        stamp = repr(time.perf_counter())
        response = client.txn([], [Op.put(k, stamp) for k in chunk], timeout=30)
        return chunk, response.header.revision

    for _ in range(rounds):
        jobs = [gevent.spawn(txn, keys[i : i + 100]) for i in range(0, len(keys), 100)]
        gevent.joinall(jobs, raise_error=True)
        mapping: dict[str, int] = {}
        for job in jobs:
            chunk, revision = job.value
            mapping.update(dict.fromkeys(chunk, revision))
        per_round.append(mapping)
        gevent.sleep(ROUND_GAP)
    return per_round


def write_at_rate(
    client: geetcd.Client, keys: list[str], rate: int, seconds: float
) -> dict[str, list[int]]:
    """Write ``rate`` keys per second (cycling through ``keys``, 10 txns a second of
    rate/10 puts each, in parallel) for ``seconds``; returns key -> revisions."""
    written: dict[str, list[int]] = {}
    per_tick = max(1, rate // 10)
    position = 0
    jobs = []

    def txn(chunk: list[str]) -> None:
        revision = client.txn([], [Op.put(k, repr(time.perf_counter())) for k in chunk]).header
        for key in chunk:
            written.setdefault(key, []).append(revision.revision)

    started = time.perf_counter()
    tick = 0
    while time.perf_counter() - started < seconds:
        chunk = [keys[(position + i) % len(keys)] for i in range(per_tick)]
        position += per_tick
        jobs.append(gevent.spawn(txn, chunk))
        tick += 1
        gevent.sleep(max(0.0, started + tick * 0.1 - time.perf_counter()))
    gevent.joinall(jobs, raise_error=True)
    for revisions in written.values():
        revisions.sort()
    return written


# ------------------------------------------------------------------------------ geetcd runs
def run_geetcd(
    endpoint: str,
    name: str,
    keys: list[str],
    rounds: int,
    iterators: bool,
    streams: str = "websocket",
    rate: int = 0,
) -> Result:
    result = Result(name, len(keys))
    recorder = Recorder(len(keys))
    ns = PREFIX + name + "/"
    client = geetcd.Client(endpoint, namespace=ns, timeout=60, streams=streams)
    writer = geetcd.Client(endpoint, namespace=ns, timeout=60)
    try:
        client.get("warmup")
        writer.get("warmup")
        rss0 = settle()
        watches: list[geetcd.watch.Watch] = [None] * len(keys)  # type: ignore[list-item]
        consumers: list[gevent.Greenlet[..., None]] = []

        def consume(index: int, watch: geetcd.watch.Watch) -> None:
            for event in watch:
                recorder.record(index, event.revision, event.kv.value)

        def create(index: int) -> None:
            if iterators:
                watch = client.watch(keys[index])
                consumers.append(gevent.spawn(consume, index, watch))
            else:

                def callback(event: geetcd.Event, index: int = index) -> None:
                    recorder.record(index, event.revision, event.kv.value)

                watch = client.watch(keys[index], callback=callback)
            watches[index] = watch

        started = time.perf_counter()
        pool = gevent.pool.Pool(CREATORS)
        for index in range(len(keys)):
            pool.spawn(create, index)
        pool.join(raise_error=True)
        result.establish_s = time.perf_counter() - started
        result.rss_idle_kib = (settle() - rss0) / len(keys)
        result.server_streams, result.server_watchers = server_counts(endpoint)
        cpu0 = time.process_time()
        if len(set(keys)) == 1:
            revisions = write_one_key(writer, keys[0], rounds)
            expected: Callable[[int], list[int]] = lambda index: revisions  # noqa: E731
        elif rate:
            written = write_at_rate(writer, keys, rate, rounds * ROUND_GAP * 2)
            expected = lambda index: written.get(keys[index], [])  # noqa: E731
        else:
            per_round = write_distinct(writer, keys, rounds)
            expected = lambda index: [r[keys[index]] for r in per_round]  # noqa: E731
        lasts = [(expected(i) or [0])[-1] for i in range(len(keys))]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
            w.revision < last for w, last in zip(watches, lasts, strict=True)
        ):
            gevent.sleep(0.05)
        cpu = time.process_time() - cpu0
        gevent.sleep(0.2)
        result.rss_load_kib = (rss_kib() - rss0) / len(keys)
        recorder.check(result, expected)
        result.cpu_us_per_event = cpu / max(1, result.received) * 1e6
        for watch in watches:
            watch.cancel()
        gevent.joinall(consumers, timeout=10)
    finally:
        client.close()
        writer.delete_prefix("")
        writer.close()
    return result


# ------------------------------------------------------------------------------ the floor
def run_floor(endpoint: str, name: str, keys: list[str], rounds: int) -> Result:
    """One raw streaming request per watcher, read with read1 and split into lines."""
    result = Result(name, len(keys))
    recorder = Recorder(len(keys))
    ns = PREFIX + name + "/"
    writer = geetcd.Client(endpoint, namespace=ns, timeout=60)
    url = urllib3.util.parse_url(endpoint)
    pool = FloorPool(url.host, url.port, maxsize=len(keys) + 10, block=True, retries=False)
    headers = {"Content-Type": "application/json"}
    created = [0]
    all_created = gevent.event.Event()
    responses: list[object] = []

    def watcher(index: int) -> None:
        body = json.dumps(
            {"create_request": {"key": base64.b64encode((ns + keys[index]).encode()).decode()}}
        )
        response = pool.urlopen(
            "POST",
            "/v3/watch",
            body=body,
            headers=headers,
            preload_content=False,
            release_conn=False,
            retries=False,
            timeout=urllib3.Timeout(connect=5, read=None),
        )
        responses.append(response)
        pending = b""
        try:
            while True:
                chunk = response.read1(65536)
                if not chunk:
                    return
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    message = json.loads(line)["result"]
                    if message.get("created"):
                        created[0] += 1
                        if created[0] == len(keys):
                            all_created.set()
                    for event in message.get("events", ()):
                        kv = event["kv"]
                        recorder.record(
                            index, int(kv["mod_revision"]), base64.b64decode(kv["value"])
                        )
        finally:
            response.close()
            response.release_conn()

    greenlets: list[gevent.Greenlet[..., None]] = []
    try:
        writer.get("warmup")
        rss0 = settle()
        started = time.perf_counter()
        for index in range(len(keys)):
            greenlets.append(gevent.spawn(watcher, index))
        if not all_created.wait(120):
            raise RuntimeError(f"floor: only {created[0]} of {len(keys)} watches created")
        result.establish_s = time.perf_counter() - started
        result.rss_idle_kib = (settle() - rss0) / len(keys)
        result.server_streams, result.server_watchers = server_counts(endpoint)
        cpu0 = time.process_time()
        if len(set(keys)) == 1:
            revisions = write_one_key(writer, keys[0], rounds)
            expected: Callable[[int], list[int]] = lambda index: revisions  # noqa: E731
        else:
            per_round = write_distinct(writer, keys, rounds)
            expected = lambda index: [r[keys[index]] for r in per_round]  # noqa: E731
        lasts = [expected(i)[-1] for i in range(len(keys))]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
            not got or got[-1] < last for got, last in zip(recorder.revisions, lasts, strict=True)
        ):
            gevent.sleep(0.05)
        cpu = time.process_time() - cpu0
        gevent.sleep(0.2)
        result.rss_load_kib = (rss_kib() - rss0) / len(keys)
        recorder.check(result, expected)
        result.cpu_us_per_event = cpu / max(1, result.received) * 1e6
    finally:
        gevent.killall(greenlets, timeout=10)
        pool.close()
        writer.delete_prefix("")
        writer.close()
    return result


# ------------------------------------------------------------------------------ driver
RUNS = {
    # name: (label, geetcd?, one key?, iterators?, streams)
    "geetcd-distinct": ("geetcd distinct, WebSocket", True, False, False, "websocket"),
    "geetcd-distinct-http": ("geetcd distinct, HTTP streams", True, False, False, "http"),
    "floor-distinct": ("urllib3 floor distinct", False, False, False, "http"),
    "geetcd-one": ("geetcd one key, callbacks", True, True, False, "websocket"),
    "geetcd-one-iter": ("geetcd one key, iterators", True, True, True, "websocket"),
    "floor-one": ("urllib3 floor one key", False, True, False, "http"),
}


def raise_fd_limit(watchers: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = watchers * 2 + 200
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, needed), hard))


def child(name: str, endpoint: str, watchers: int, rounds: int, rate: int) -> int:
    """Run one load in this (fresh) process; print its Result as one JSON line."""
    raise_fd_limit(watchers)
    label, is_geetcd, one_key, iterators, streams = RUNS[name]
    keys = ["one"] * watchers if one_key else [f"k/{i:06d}" for i in range(watchers)]
    if is_geetcd:
        result = run_geetcd(endpoint, name, keys, rounds, iterators, streams, rate)
    else:
        result = run_floor(endpoint, name, keys, rounds)
    result.name = label
    result.summarize()
    print(json.dumps(asdict(result)))
    return 0


def run_child(name: str, endpoint: str, watchers: int, rounds: int, rate: int) -> Result:
    command = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--endpoint",
        endpoint,
        "--watchers",
        str(watchers),
        "--rounds",
        str(rounds),
        "--rate",
        str(rate),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        sys.stderr.write(done.stderr[-3000:])
        raise RuntimeError(f"run {name} failed with exit code {done.returncode}")
    return Result(**json.loads(done.stdout.strip().splitlines()[-1]))


# ------------------------------------------------------------------------------ report
def print_table(results: list[Result]) -> None:
    header = (
        f"{'run':<28} {'watchers':>8} {'srv streams':>11} {'srv watchers':>12} "
        f"{'establish':>9} {'events':>8} {'lost':>5} {'dup':>4} {'order':>5} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'KiB/w idle':>10} {'KiB/w load':>10} "
        f"{'CPU us/ev':>9}"
    )
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.name:<28} {r.watchers:>8} {r.server_streams:>11.0f} {r.server_watchers:>12.0f} "
            f"{r.establish_s:>8.2f}s {r.received:>8} {r.lost:>5} {r.repeated:>4} "
            f"{r.out_of_order:>5} {r.p50:>7.1f} {r.p99:>7.1f} {r.pmax:>7.1f} "
            f"{r.rss_idle_kib:>10.1f} {r.rss_load_kib:>10.1f} {r.cpu_us_per_event:>9.1f}"
        )
    print()
    print("events: deliveries received (expected = watchers x rounds); lost / dup / order:")
    print("watchers that missed, repeated or reordered a revision. srv streams / watchers:")
    print("etcd's etcd_debugging_mvcc_watch_stream_total / _watcher_total while established.")
    print("KiB/w: client VmRSS growth per watch, idle once established / after the load.")
    print("CPU us/ev: client process CPU during the write phase per delivery (writer included).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 / 200 watchers (smoke test)")
    parser.add_argument("--one-key", type=int, default=None, help="watchers on one key")
    parser.add_argument("--distinct", type=int, default=None, help="watchers on distinct keys")
    parser.add_argument("--rounds", type=int, default=20, help="puts (or write rounds) per run")
    parser.add_argument("--no-floor", action="store_true", help="skip the urllib3 floor runs")
    parser.add_argument(
        "--rate",
        type=int,
        default=0,
        help="distinct keys: write this many keys per second (for 2 x rounds x 120 ms) "
        "instead of every key every round",
    )
    parser.add_argument("--only", help="comma-separated run names (" + ", ".join(RUNS) + ")")
    parser.add_argument("--child", choices=sorted(RUNS), help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--watchers", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.child:
        return child(args.child, args.endpoint, args.watchers, args.rounds, args.rate)
    one_key = args.one_key or (1000 if args.quick else 10_000)
    distinct = args.distinct or (200 if args.quick else 2_000)
    raise_fd_limit(max(one_key, distinct))  # inherited by etcd
    print(
        f"watch benchmark: {one_key} watchers on one key, {distinct} on distinct keys, "
        f"{args.rounds} rounds {ROUND_GAP * 1000:.0f} ms apart; starting etcd..."
    )
    names = [n for n in RUNS if not (args.no_floor and n.startswith("floor"))]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    results: list[Result] = []
    started = time.monotonic()
    with EtcdCluster(size=1) as cluster:
        endpoint = cluster.endpoints[0]
        for name in names:
            wait_quiet(endpoint)
            label, _, one, _, _ = RUNS[name]
            print(f"  running {label}...", flush=True)
            watchers = one_key if one else distinct
            results.append(run_child(name, endpoint, watchers, args.rounds, args.rate))
    print_table(results)
    print(f"total {time.monotonic() - started:.0f} s")
    bad = [r.name for r in results if r.lost or r.repeated or r.out_of_order]
    if bad:
        print(f"LOST/REPEATED/REORDERED deliveries in: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
