"""Leases kept alive through a paused (SIGSTOP) leader: how many survive, in N rounds.

    python loadtests/bench_lease_pause.py [--rounds 20] [--ttl 4] [--pause 6]
    ETCD_BIN=/usr/bin/etcd python loadtests/bench_lease_pause.py     # against etcd 3.4

Starts its own 3-member cluster (geetcd.testing). Each round: a fresh client whose sticky
member is the leader keeps a TTL ``--ttl`` lease (and 20 more) alive; the leader is paused for
``--pause`` seconds, then resumed. A round survives when no lease was reported lost and the
server still has them all, judged while the old leader is still paused. Prints one line per
round (the election time, and what was lost after the old leader resumed: another fault) and
the tally.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time

import gevent

import geetcd
from geetcd.testing import EtcdCluster


def one_round(cluster: EtcdCluster, ttl: int, pause: float) -> tuple[bool, str]:
    leader = cluster.leader()
    client = geetcd.Client(cluster.endpoints, timeout=5.0)
    try:
        client.get("warmup")
        for member in client.cluster_state.members:
            if member.url == leader.client_url:
                client.cluster_state._current = member  # the leader is the member in use
        leases = [client.lease(ttl, keepalive=True) for _ in range(21)]
        gevent.sleep(ttl / 3 + 0.3)
        paused_at = time.monotonic()
        leader.pause()
        try:
            survivors = [m for m in cluster.members if m is not leader]
            elected = None
            deadline = paused_at + pause
            while time.monotonic() < deadline:
                if elected is None:
                    try:
                        status = client.status(endpoint=survivors[0].client_url, timeout=0.5)
                    except geetcd.EtcdError:
                        status = None
                    if status is not None and status.leader not in (0, _IDS[leader.client_url]):
                        elected = time.monotonic() - paused_at
                gevent.sleep(0.05)
            # Judged while the old leader is still paused: its resumption is another fault.
            lost = [le for le in leases if le.lost.is_set()]
            alive = [le for le in leases if le.time_to_live().ttl > 0]
        finally:
            leader.resume()
        gevent.sleep(2.0)
        lost_after = [le for le in leases if le.lost.is_set()]
        ok = not lost and len(alive) == len(leases)
        reasons = sorted({str(le.lost_reason) for le in lost})
        detail = (
            f"lost {len(lost)} {reasons} alive on server {len(alive)}/{len(leases)} "
            f"election {elected if elected is None else round(elected, 2)} s; "
            f"after the old leader resumed: lost {len(lost_after)} "
            f"{sorted({str(le.lost_reason) for le in lost_after})}"
        )
        for lease in leases:
            with contextlib.suppress(geetcd.EtcdError):
                lease.revoke()
        return ok, detail
    finally:
        client.close()
        cluster.heal()


_IDS: dict[str, int] = {}
"""Member IDs by client URL (read once at start)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--ttl", type=int, default=4)
    parser.add_argument("--pause", type=float, default=6.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    survived = 0
    with EtcdCluster(size=3) as cluster:
        with geetcd.Client(cluster.endpoints) as probe:
            for member in cluster.members:
                _IDS[member.client_url] = probe.status(endpoint=member.client_url).header.member_id
        for index in range(args.rounds):
            ok, detail = one_round(cluster, args.ttl, args.pause)
            survived += ok
            print(f"round {index + 1}: {'survived' if ok else 'LOST'}: {detail}", flush=True)
    print(f"{survived} of {args.rounds} rounds kept every lease (TTL {args.ttl} s)")
    return 0 if survived == args.rounds else 1


if __name__ == "__main__":
    raise SystemExit(main())
