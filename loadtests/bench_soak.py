"""Soak: many watches, many kept-alive leases and a KV load on a 3-member cluster, for long.

    python loadtests/bench_soak.py [--duration 1800] [--quick] [--out geetcd-soak-out]

Starts its own 3-member etcd (geetcd.testing; ``$ETCD_BIN`` picks the binary) and one
geetcd client, then, for ``--duration`` seconds (30 minutes by default, 3 with ``--quick``):

- ``--watches`` watches (5,000), ``--watchers-per-key`` on each watched key; one writer
  (at most ``--watch-writes`` txns a second, one at a time) moves every watched key from
  version v to v+1 with a txn (compare version == v), so each version is written exactly
  once, and every watch must see every version of its key once, in order;
- ``--leases`` leases (2,000) of ``--lease-ttl`` seconds, kept alive by the client;
- ``--kv-greenlets`` greenlets of gets and puts (80 % gets) on ``--kv-keys`` keys;
- one member restarted (SIGTERM, start again) every ``--restart-every`` seconds (120), in
  turn m1, m2, m3, whichever is the leader.

Every ``--sample-every`` seconds it records the client's RSS, greenlets, open file
descriptors, KV ops/s, errors by type, watch events received and leases lost. At the end
it lets the watches catch up, then reports lost, doubled or out-of-order watch events and
lost leases (all must be zero: the exit status is 1 otherwise), prints a sparkline of each
measurement and writes ``chart.svg`` (geetcd.bench.chart, the chart geetcd-bench draws) and
``soak.json`` (every sample) under ``--out``.

Not run in CI (it takes 30 minutes); ``--quick`` checks that it works.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import gevent.pool
import greenlet

import geetcd
from geetcd import Compare, Op
from geetcd.bench.chart import Panel, Series, sparkline, write_svg
from geetcd.testing import EtcdCluster, etcd_binary_version, find_etcd_binary

CREATE_CONCURRENCY = 64


def rss_mib() -> float:
    """This process's resident set size in MiB (/proc/self/status VmRSS)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def greenlets() -> int:
    """Live greenlets of this process (every thread's), counted by the garbage collector."""
    return sum(1 for o in gc.get_objects() if isinstance(o, greenlet.greenlet) and not o.dead)


@dataclass
class WatchedKey:
    """One watched key: the version written last, and the last version each watch saw."""

    key: str
    written: int = 0
    seen: list[int] = field(default_factory=list)


@dataclass
class Soak:
    args: argparse.Namespace
    client: geetcd.Client
    cluster: EtcdCluster
    keys: list[WatchedKey] = field(default_factory=list)
    watches: list[geetcd.Watch] = field(default_factory=list)
    leases: list[geetcd.Lease] = field(default_factory=list)
    events: int = 0
    doubled: int = 0
    out_of_order: int = 0
    kv_ops: int = 0
    writes: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    restarts: list[tuple[float, str, float]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    stopping: bool = False
    started: float = 0.0

    # ------------------------------------------------------------------------ set-up
    def open_watches(self) -> None:
        per_key = self.args.watchers_per_key
        n_keys = max(1, self.args.watches // per_key)
        self.keys = [WatchedKey(f"soak/w/{i:05d}", seen=[0] * per_key) for i in range(n_keys)]

        def open_one(job: tuple[int, int]) -> geetcd.Watch:
            index, slot = job
            watched = self.keys[index]

            def on_event(event: geetcd.Event, watched: WatchedKey = watched) -> None:
                self.events += 1
                version = event.kv.version
                last = watched.seen[slot]
                if version <= last:
                    self.doubled += 1
                elif version != last + 1:
                    self.out_of_order += 1
                    watched.seen[slot] = version
                else:
                    watched.seen[slot] = version

            return self.client.watch(watched.key, callback=on_event, timeout=60)

        jobs = [(i, s) for i in range(n_keys) for s in range(per_key)]
        pool = gevent.pool.Pool(CREATE_CONCURRENCY)
        self.watches = list(pool.imap_unordered(open_one, jobs))

    def grant_leases(self) -> None:
        pool = gevent.pool.Pool(CREATE_CONCURRENCY)
        ttl = self.args.lease_ttl
        self.leases = list(
            pool.imap_unordered(
                lambda _: self.client.lease(ttl, keepalive=True, timeout=60),
                range(self.args.leases),
            )
        )

    # ------------------------------------------------------------------------ load
    def _error(self, exc: BaseException) -> None:
        self.errors[type(exc).__name__] += 1

    def watched_writer(self) -> None:
        """Each key from version v to v+1 by a txn on version == v: every version once."""
        interval = 1.0 / self.args.watch_writes
        while not self.stopping:
            for watched in self.keys:
                if self.stopping:
                    return
                gevent.sleep(interval)
                version = watched.written
                try:
                    answer = self.client.txn(
                        [Compare.version(watched.key) == version],
                        [Op.put(watched.key, str(version + 1))],
                        [Op.get(watched.key)],
                        timeout=10,
                    )
                except geetcd.EtcdError as exc:
                    self._error(exc)
                    self._reread(watched)
                    continue
                if answer.succeeded:
                    watched.written = version + 1
                    self.writes += 1
                else:  # an earlier txn whose answer was lost did apply
                    self._reread(watched)

    def _reread(self, watched: WatchedKey) -> None:
        while not self.stopping:
            try:
                kv = self.client.get(watched.key, timeout=10)
            except geetcd.EtcdError as exc:
                self._error(exc)
                gevent.sleep(0.2)
                continue
            watched.written = kv.version if kv is not None else 0
            return

    def kv_user(self, seed: int) -> None:
        rng = random.Random(seed)
        value = "x" * 128
        while not self.stopping:
            key = f"soak/kv/{rng.randrange(self.args.kv_keys):05d}"
            try:
                if rng.random() < 0.8:
                    self.client.get(key, timeout=10)
                else:
                    self.client.put(key, value, timeout=10)
                self.kv_ops += 1
            except geetcd.EtcdError as exc:
                self._error(exc)
                gevent.sleep(0.05)
            gevent.sleep(self.args.kv_pause)

    def restarter(self) -> None:
        turn = 0
        while not self.stopping:
            gevent.sleep(self.args.restart_every)
            if self.stopping:
                return
            member = self.cluster.members[turn % len(self.cluster.members)]
            turn += 1
            try:
                was_leader = member is self.cluster.leader()
            except RuntimeError:
                was_leader = False
            t0 = time.monotonic()
            member.restart(wait=True)
            took = time.monotonic() - t0
            what = f"{member.name}{' (leader)' if was_leader else ''}"
            self.restarts.append((t0 - self.started, what, took))
            print(f"[{t0 - self.started:6.0f} s] restarted {what} in {took:.1f} s", flush=True)

    def sampler(self) -> None:
        last_ops, last_t = self.kv_ops, time.monotonic()
        while not self.stopping:
            gevent.sleep(self.args.sample_every)
            now = time.monotonic()
            sample = {
                "t": round(now - self.started, 1),
                "rss_mib": round(rss_mib(), 1),
                "greenlets": greenlets(),
                "fds": open_fds(),
                "kv_ops_s": round((self.kv_ops - last_ops) / (now - last_t), 1),
                "writes": self.writes,
                "events": self.events,
                "errors": sum(self.errors.values()),
                "leases_lost": sum(1 for lease in self.leases if lease.lost.is_set()),
            }
            last_ops, last_t = self.kv_ops, now
            self.samples.append(sample)
            print(
                f"[{sample['t']:6.0f} s] rss {sample['rss_mib']:6.1f} MiB  greenlets "
                f"{sample['greenlets']:5d}  fds {sample['fds']:4d}  kv {sample['kv_ops_s']:7.1f}"
                f" ops/s  events {sample['events']:8d}  errors {sample['errors']:4d}  "
                f"leases lost {sample['leases_lost']}",
                flush=True,
            )

    # ------------------------------------------------------------------------ the end
    def caught_up(self) -> bool:
        return all(min(k.seen) >= k.written for k in self.keys)

    def lost_events(self) -> int:
        return sum(max(0, k.written - seen) for k in self.keys for seen in k.seen)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--duration", type=float, default=1800.0, help="seconds of load (default 1800)")
    add("--quick", action="store_true", help="3 minutes, a restart every 45 s")
    add("--watches", type=int, default=5000)
    add("--watchers-per-key", type=int, default=10)
    add("--watch-writes", type=float, default=100.0, help="at most this many watched-key writes/s")
    add("--leases", type=int, default=2000)
    add("--lease-ttl", type=int, default=10)
    add("--kv-greenlets", type=int, default=20)
    add("--kv-keys", type=int, default=1000)
    add("--kv-pause", type=float, default=0.01, help="seconds between a KV user's calls")
    add("--restart-every", type=float, default=120.0)
    add("--sample-every", type=float, default=10.0)
    add("--catch-up", type=float, default=60.0, help="seconds the watches get at the end")
    add("--out", type=Path, default=Path("geetcd-soak-out"))
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.restart_every, args.sample_every = 180.0, 45.0, 5.0
    return args


def _summary(soak: Soak, lost_events: int, lost_leases: int, elapsed: float) -> list[str]:
    first, last = soak.samples[0], soak.samples[-1]
    errors = ", ".join(f"{n} {name}" for name, n in soak.errors.most_common()) or "none"
    lines = [
        f"ran {elapsed:.0f} s: {len(soak.watches)} watches on {len(soak.keys)} keys, "
        f"{len(soak.leases)} leases (TTL {soak.args.lease_ttl} s), "
        f"{soak.args.kv_greenlets} KV greenlets, {len(soak.restarts)} member restarts",
        f"RSS          {first['rss_mib']:.1f} MiB at {first['t']:.0f} s -> "
        f"{last['rss_mib']:.1f} MiB at {last['t']:.0f} s "
        f"(max {max(s['rss_mib'] for s in soak.samples):.1f})",
        f"greenlets    {first['greenlets']} -> {last['greenlets']} "
        f"(max {max(s['greenlets'] for s in soak.samples)})",
        f"open fds     {first['fds']} -> {last['fds']} (max {max(s['fds'] for s in soak.samples)})",
        f"KV ops       {soak.kv_ops:,} ({soak.kv_ops / elapsed:,.0f}/s)",
        f"watch writes {soak.writes:,}; events received {soak.events:,}",
        f"lost events  {lost_events}; doubled {soak.doubled}; out of order {soak.out_of_order}",
        f"lost leases  {lost_leases} of {len(soak.leases)}",
        f"errors       {errors}",
    ]
    for at, what, took in soak.restarts:
        lines.append(f"restart      {at:6.0f} s {what}, healthy again in {took:.1f} s")
    return lines


def _chart(soak: Soak, path: Path) -> None:
    def series(name: str, label: str) -> Series:
        return Series(label, [(s["t"], float(s[name])) for s in soak.samples])

    panels = [
        Panel("client RSS (MiB)", [series("rss_mib", "RSS")]),
        Panel("greenlets and open fds", [series("greenlets", "greenlets"), series("fds", "fds")]),
        Panel("KV ops/s", [series("kv_ops_s", "ops/s")]),
        Panel(
            "errors and leases lost (cumulative)",
            [series("errors", "errors"), series("leases_lost", "leases lost")],
        ),
    ]
    write_svg(path, "geetcd soak", panels)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    binary = find_etcd_binary()
    print(f"etcd {etcd_binary_version(binary)} ({binary}); {args.duration:.0f} s", flush=True)
    with EtcdCluster(size=3) as cluster, geetcd.Client(cluster.endpoints) as client:
        soak = Soak(args, client, cluster)
        t0 = time.monotonic()
        soak.open_watches()
        soak.grant_leases()
        print(
            f"{len(soak.watches)} watches and {len(soak.leases)} leases in "
            f"{time.monotonic() - t0:.1f} s",
            flush=True,
        )
        soak.started = time.monotonic()
        workers: list[gevent.Greenlet[Any, Any]] = [
            gevent.spawn(soak.sampler),
            gevent.spawn(soak.watched_writer),
            gevent.spawn(soak.restarter),
            *(gevent.spawn(soak.kv_user, seed) for seed in range(args.kv_greenlets)),
        ]
        gevent.sleep(args.duration)
        soak.stopping = True
        elapsed = time.monotonic() - soak.started
        gevent.joinall(workers[1:], timeout=30)
        deadline = time.monotonic() + args.catch_up
        while not soak.caught_up() and time.monotonic() < deadline:
            gevent.sleep(0.5)
        workers[0].kill()
        lost_events = soak.lost_events()
        lost_leases = sum(1 for lease in soak.leases if lease.lost.is_set())
        alive = set(client.leases(timeout=30))
        missing = sum(1 for lease in soak.leases if lease.id not in alive)
        lost_leases = max(lost_leases, missing)
        if not soak.samples:
            soak.stopping = False
            soak.samples.append({"t": round(elapsed, 1), "rss_mib": rss_mib(),
                                 "greenlets": greenlets(), "fds": open_fds(), "kv_ops_s": 0.0,
                                 "writes": soak.writes, "events": soak.events,
                                 "errors": sum(soak.errors.values()),
                                 "leases_lost": lost_leases})  # fmt: skip
        summary = _summary(soak, lost_events, lost_leases, elapsed)
        for watch in soak.watches:
            watch.cancel()
    print()
    print("\n".join(summary))
    for name, unit in (("rss_mib", "MiB"), ("greenlets", ""), ("fds", ""), ("kv_ops_s", "/s")):
        points = [(s["t"], float(s[name])) for s in soak.samples]
        print(f"{name:>10} {sparkline(points)} {points[-1][1]:.0f}{unit}")
    _chart(soak, args.out / "chart.svg")
    (args.out / "soak.json").write_text(
        json.dumps({"summary": summary, "samples": soak.samples}, indent=1) + "\n"
    )
    print(f"\nwrote {args.out / 'chart.svg'} and {args.out / 'soak.json'}")
    failed = lost_events or lost_leases or soak.doubled or soak.out_of_order
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
