"""Keepalive cost: HTTP requests per second and client CPU for many kept-alive leases.

    python loadtests/bench_keepalive.py [--quick]

Starts its own single-member etcd (geetcd.testing) and runs, all bounded in time:

1. a batch-size sweep: the same leases refreshed through the keepalive's batch logic with
   each batch size; reports POSTs per 1,000 refreshes, answers missing per POST (the
   gateway answers fewer lines than IDs above ~17), client CPU per refresh;
2. steady state: 1,000 and 10,000 leases of TTL 10 s kept alive by one client for ~30 s
   (10 s with --quick), each on a fresh etcd; reports keepalive POSTs/s, refreshes/s, client
   CPU (% of one core, getrusage), etcd CPU (/proc/PID/stat) and leases lost.

Targets: at most 20 requests/s per 1,000 leases; under 10% of one core for 10,000 leases.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable

import gevent
import gevent.pool

import geetcd
from geetcd.lease import DEFAULT_BATCH_SIZE, DEFAULT_MAX_CONCURRENCY, KeepAlive, Lease, keepalive_of
from geetcd.testing import EtcdCluster

GRANT_CONCURRENCY = 64
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_self() -> float:
    """User + system CPU seconds of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_pid(pid: int | None) -> float:
    """User + system CPU seconds of another process (0.0 if unknown)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def grant_many(client: geetcd.Client, n: int, ttl: int, keepalive: bool) -> list[Lease]:
    pool = gevent.pool.Pool(GRANT_CONCURRENCY)
    grant: Callable[[int], Lease] = lambda _i: client.lease(ttl, keepalive=keepalive)  # noqa: E731
    return list(pool.imap_unordered(grant, range(n)))


# ---------------------------------------------------------------------- 1. batch-size sweep
def sweep(sizes: list[int], n_leases: int, rounds: int, concurrency: int) -> list[dict[str, float]]:
    rows: list[dict[str, float]] = []
    with EtcdCluster(size=1) as cluster, geetcd.Client(cluster.endpoints) as client:
        leases = grant_many(client, n_leases, 600, keepalive=False)
        for size in sizes:
            keeper = KeepAlive(client, batch_size=size)  # not the client's: no scheduler runs
            pool = gevent.pool.Pool(concurrency)
            batches = [leases[i : i + size] for i in range(0, len(leases), size)]
            cpu0, t0 = cpu_self(), time.perf_counter()
            for _ in range(rounds):
                for lease in leases:
                    lease._kept = True
                    lease._seq = -1
                pool.map(keeper._refresh, batches)
            cpu1, t1 = cpu_self(), time.perf_counter()
            s = keeper.stats
            first_posts = len(batches) * rounds
            rows.append(
                {
                    "size": size,
                    "posts": s.posts,
                    "posts_per_1k": 1000 * s.posts / max(1, s.refreshed),
                    "missing_per_post": s.unanswered / max(1, first_posts),
                    "incomplete_pct": 100 * (s.posts - first_posts) / max(1, first_posts),
                    "cpu_us": 1e6 * (cpu1 - cpu0) / max(1, s.refreshed),
                    "wall_ms": 1000 * (t1 - t0) / max(1, s.posts),
                    "refreshed": s.refreshed,
                    "lost": s.lost,
                }
            )
            for lease in leases:
                lease._kept = False
    return rows


# ---------------------------------------------------------------------- 2. steady state
def steady(
    n: int, ttl: int, window: float, batch_size: int, streams: str = "http"
) -> dict[str, float]:
    with (
        EtcdCluster(size=1) as cluster,
        geetcd.Client(cluster.endpoints, streams=streams) as client,
    ):
        keeper = keepalive_of(client)
        keeper.batch_size = batch_size
        t0 = time.perf_counter()
        leases = grant_many(client, n, ttl, keepalive=True)
        grant_s = time.perf_counter() - t0
        gevent.sleep(ttl / 3 + 1.0)  # one full refresh round before measuring
        etcd_pid = cluster.members[0].pid
        s = keeper.stats
        posts0, ref0, ids0, miss0 = s.posts, s.refreshed, s.ids_sent, s.unanswered
        cpu0, ecpu0, t1 = cpu_self(), cpu_pid(etcd_pid), time.perf_counter()
        gevent.sleep(window)
        cpu1, ecpu1, t2 = cpu_self(), cpu_pid(etcd_pid), time.perf_counter()
        elapsed = t2 - t1
        posts = s.posts - posts0
        return {
            "leases": n,
            "grant_s": grant_s,
            "window_s": elapsed,
            "posts_s": posts / elapsed,
            "posts_s_per_1k": posts / elapsed / (n / 1000),
            "refresh_s": (s.refreshed - ref0) / elapsed,
            "ids_per_post": (s.ids_sent - ids0) / max(1, posts),
            "missing": s.unanswered - miss0,
            "cpu_pct": 100 * (cpu1 - cpu0) / elapsed,
            "etcd_cpu_pct": 100 * (ecpu1 - ecpu0) / elapsed,
            "lost": sum(1 for le in leases if le.lost.is_set()),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows (about 1 minute)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--steady-only", action="store_true", help="skip the batch-size sweep (POST path)"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    sizes = [1, 8, 16, 19, 24, 32, 48, 64, 96, 128, 256]
    n_sweep, rounds = (1000, 2) if quick else (2000, 5)
    for concurrency in () if args.steady_only else (1, DEFAULT_MAX_CONCURRENCY):
        print(
            f"== batch-size sweep: {n_sweep} leases x {rounds} rounds, "
            f"{concurrency} POST(s) in flight"
        )
        print(
            f"{'batch':>5} {'POSTs':>6} {'POSTs/1k refresh':>16} {'missing/POST':>12} "
            f"{'re-sent %':>9} {'CPU us/refresh':>14} {'ms/POST':>8} {'lost':>4}"
        )
        for r in sweep(sizes, n_sweep, rounds, concurrency):
            print(
                f"{r['size']:>5.0f} {r['posts']:>6.0f} {r['posts_per_1k']:>16.1f} "
                f"{r['missing_per_post']:>12.2f} {r['incomplete_pct']:>9.1f} "
                f"{r['cpu_us']:>14.1f} {r['wall_ms']:>8.2f} {r['lost']:>4.0f}"
            )
        print()

    window = 10.0 if quick else 30.0
    print(
        f"== steady state: TTL 10 s, batch size {args.batch_size}, "
        f"{window:.0f} s measured after one refresh round"
    )
    print(
        f"{'streams':>9} {'leases':>6} {'grant s':>7} {'POSTs/s':>8} {'per 1k':>7} "
        f"{'refresh/s':>9} {'IDs/POST':>8} {'missing':>7} {'client CPU %':>12} "
        f"{'etcd CPU %':>10} {'lost':>4}"
    )
    for streams, n in [(kind, n) for n in (1000, 10000) for kind in ("http", "websocket")]:
        r = steady(n, 10, window, args.batch_size, streams)
        print(
            f"{streams:>9} {r['leases']:>6.0f} {r['grant_s']:>7.1f} {r['posts_s']:>8.1f} "
            f"{r['posts_s_per_1k']:>7.1f} {r['refresh_s']:>9.0f} {r['ids_per_post']:>8.1f} "
            f"{r['missing']:>7.0f} {r['cpu_pct']:>12.1f} {r['etcd_cpu_pct']:>10.1f} "
            f"{r['lost']:>4.0f}"
        )
    print("\nPOSTs/s on the websocket rows: refresh calls (one WebSocket message per lease each)")
    print("targets: <= 20 POSTs/s per 1,000 leases; < 10% of one core for 10,000 leases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
