"""Failover benchmark: what 64 greenlets notice when a member of a 3-member cluster fails.

    python loadtests/bench_failover.py [--greenlets 64] [--before 2] [--after 6]

Starts its own 3-member cluster (geetcd.testing). For each scenario it runs a mixed
read/write workload (geetcd.testing.workload.MixedWorkload), injects the fault, keeps the load
running, heals the cluster, and verifies every acknowledged write. It prints, per scenario:
the longest gap without any successful call (and without a successful read / write), the
errors raised to callers (reads and writes apart), the slowest call and calls stuck past
their deadline. Scenarios:

* kill-follower-in-use : SIGKILL of the follower the client is using
* kill-leader          : SIGKILL of the leader, which the client is using
* stop-leader          : SIGSTOP of the leader, which the client is using (hung member)
* stop-leader-from-follower : SIGSTOP of the leader while the client uses a follower
* stop-follower-in-use : SIGSTOP of the follower the client is using (outlier detection)
* isolate-follower-in-use, isolate-leader, blackhole-follower-in-use, blackhole-leader :
  network faults (geetcd.testing's proxy: the cluster then runs with ``faults=True``)

For faults on the leader the table also gives the election time (until the surviving members
name a new leader; a black-holed leader keeps its leadership) and the gap after it: what the
client adds to what etcd needs.
"""

from __future__ import annotations

import argparse
import logging
import time
import uuid

import gevent

import geetcd
from geetcd.testing import EtcdCluster, EtcdMember
from geetcd.testing.workload import MixedWorkload, WorkloadReport


def use_member(client: geetcd.Client, member: EtcdMember) -> None:
    """Make the sticky policy's current member ``member`` (benchmark set-up only)."""
    for m in client.cluster_state.members:
        if m.url == member.client_url:
            client.cluster_state._current = m
            return
    raise RuntimeError(f"{member.client_url} not among {client.endpoints}")


def in_use(client: geetcd.Client, cluster: EtcdCluster) -> EtcdMember:
    current = client.cluster_state._current
    assert current is not None
    return next(m for m in cluster.members if m.client_url == current.url)


ELECTIONS: dict[str, tuple[float | None, float | None]] = {}
"""Scenario -> (seconds until the surviving members named a new leader, the longest gap after
that), for faults of the leader."""


def elected_after(cluster: EtcdCluster, old: EtcdMember, since: float) -> float | None:
    """Seconds from ``since`` until a member other than ``old`` names a leader other than
    ``old`` (polled every 20 ms for up to 10 s); None if none did (a black-holed leader keeps
    its leadership)."""
    others = [m for m in cluster.members if m is not old]
    with geetcd.Client([m.client_url for m in others], timeout=1.0) as probe:
        old_id = probe.status(endpoint=others[0].client_url).leader
        deadline = since + 10.0
        while time.monotonic() < deadline:
            for member in others:
                try:
                    status = probe.status(endpoint=member.client_url, timeout=0.3)
                except geetcd.EtcdError:
                    continue
                if status.leader and status.leader != old_id:
                    return time.monotonic() - since
            gevent.sleep(0.02)
    return None


def scenario(
    cluster: EtcdCluster, name: str, greenlets: int, before: float, after: float, hedge: bool
) -> WorkloadReport:
    leader = cluster.leader()
    followers = [m for m in cluster.members if m is not leader]
    client = geetcd.Client(cluster.endpoints, timeout=5.0, hedge_delay=0.25 if hedge else None)
    try:
        client.get("warmup")
        target = leader
        if name.endswith("follower-in-use"):
            use_member(client, followers[0])
            target = followers[0]
        elif name == "stop-leader-from-follower":
            use_member(client, followers[0])
        else:
            use_member(client, leader)
        load = MixedWorkload(
            client, greenlets=greenlets, prefix=f"/failover/{uuid.uuid4().hex[:8]}/", timeout=5.0
        ).start()
        gevent.sleep(before)
        fault_at = time.monotonic()
        if name.startswith("kill"):
            target.kill()
        elif name.startswith("isolate"):
            cluster.isolate(target)
        elif name.startswith("blackhole"):
            cluster.blackhole(target)
        else:
            target.pause()
        elected = elected_after(cluster, target, fault_at) if target is leader else None
        gevent.sleep(max(0.0, fault_at + after - time.monotonic()))
        report = load.report(since=fault_at)
        past_election = load.report(since=fault_at + elected) if elected else None
        load.stop()
        if target.is_paused:
            target.resume()
        cluster.heal()
        checked = load.verify()
        print(
            f"  {name}: verified {checked} keys ({load.late_unknown_writes} unknown-outcome "
            f"writes applied late); {report.summary()}",
            flush=True,
        )
        if hedge:
            print(f"  {name}: {client.core.executor.hedges} hedged reads", flush=True)
        ELECTIONS[name] = (elected, past_election.max_gap if past_election else None)
        return report
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--greenlets", type=int, default=64)
    parser.add_argument("--before", type=float, default=2.0)
    parser.add_argument("--after", type=float, default=6.0)
    parser.add_argument(
        "--scenarios",
        default=(
            "kill-follower-in-use,stop-follower-in-use,kill-leader,stop-leader,"
            "stop-leader-from-follower"
        ),
    )
    parser.add_argument("--hedge", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    rows = []
    names = args.scenarios.split(",")
    network = any(n.startswith(("isolate", "blackhole")) for n in names)
    with EtcdCluster(size=3, faults=network) as cluster:
        for name in names:
            rows.append(
                (name, scenario(cluster, name, args.greenlets, args.before, args.after, args.hedge))
            )
    print()
    print(
        "| scenario | max gap (any) | election | gap after it | max read gap | max write gap | "
        "read errors | write errors | slowest call | stuck |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        elected, past = ELECTIONS.get(name, (None, None))
        election = "-" if elected is None else f"{elected:.2f} s"
        after_it = "-" if past is None else f"{past:.3f} s"
        print(
            f"| {name} | {r.max_gap:.3f} s | {election} | {after_it} | "
            f"{r.max_read_gap:.3f} s | {r.max_write_gap:.3f} s | "
            f"{sum(r.read_errors.values())} {dict(r.read_errors) or ''} | "
            f"{sum(r.write_errors.values())} {dict(r.write_errors) or ''} | "
            f"{r.slowest_call:.2f} s | {r.stuck_calls} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
