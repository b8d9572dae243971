"""Keepalive under member failures in a real 3-member cluster (SIGKILL / SIGSTOP)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator

import gevent
import pytest

import geetcd
from geetcd.lease import Lease, LeaseLoss, keepalive_of
from geetcd.testing import EtcdCluster, EtcdMember

pytestmark = pytest.mark.fault

TTL = 5
EXTRA_LEASES = 40


@pytest.fixture
def client(healed_cluster: EtcdCluster) -> Iterator[geetcd.Client]:
    c = geetcd.Client(healed_cluster.endpoints, namespace=f"/lease-faults-{secrets.token_hex(4)}/")
    try:
        yield c
    finally:
        c.close()


def member_in_use(cluster: EtcdCluster, client: geetcd.Client) -> EtcdMember:
    """The cluster member the client has sent the most successful requests to."""
    busiest = max(client.cluster_state.members, key=lambda m: m.ok_count)
    return next(m for m in cluster.members if m.client_url == busiest.url)


def survive(cluster: EtcdCluster, client: geetcd.Client, fault: Callable[[], EtcdMember]) -> None:
    """Keep a leased key (plus more leases) alive through ``fault`` for two TTLs."""
    lease = client.lease(TTL, keepalive=True)
    others: list[Lease] = [client.lease(TTL, keepalive=True) for _ in range(EXTRA_LEASES)]
    client.put("held", "v", lease=lease)
    gevent.sleep(TTL / 3 + 0.5)  # a few keepalive rounds first
    victim = fault()
    gevent.sleep(2 * TTL)
    assert not lease.lost.is_set(), (lease, victim)
    assert [le for le in others if le.lost.is_set()] == []
    kv = client.get("held")
    assert kv is not None and kv.lease == lease.id
    assert lease.time_to_live().ttl > 0
    assert keepalive_of(client).stats.lost == 0
    lease.revoke()
    for other in others:
        other.revoke()


def test_keepalive_survives_leader_sigkill(
    healed_cluster: EtcdCluster, client: geetcd.Client
) -> None:
    def fault() -> EtcdMember:
        leader = healed_cluster.leader()
        leader.kill()
        return leader

    survive(healed_cluster, client, fault)


def test_keepalive_survives_leader_sigstop(
    healed_cluster: EtcdCluster, client: geetcd.Client
) -> None:
    def fault() -> EtcdMember:
        leader = healed_cluster.leader()
        leader.pause()
        return leader

    survive(healed_cluster, client, fault)


def test_keepalive_survives_sigkill_of_member_in_use(
    healed_cluster: EtcdCluster, client: geetcd.Client
) -> None:
    def fault() -> EtcdMember:
        victim = member_in_use(healed_cluster, client)
        victim.kill()
        return victim

    survive(healed_cluster, client, fault)


def test_keepalive_survives_sigstop_of_member_in_use(
    healed_cluster: EtcdCluster, client: geetcd.Client
) -> None:
    def fault() -> EtcdMember:
        victim = member_in_use(healed_cluster, client)
        victim.pause()
        return victim

    survive(healed_cluster, client, fault)


def test_lease_lost_when_quorum_unreachable_past_ttl(
    healed_cluster: EtcdCluster, client: geetcd.Client
) -> None:
    lease = client.lease(4, keepalive=True)
    reasons: list[LeaseLoss | None] = []
    lease.on_lost(lambda le: reasons.append(le.lost_reason))
    gevent.sleep(1.0)
    cut = time.monotonic()
    for member in healed_cluster.followers():
        member.kill()  # the leader alone has no quorum: no refresh can succeed
    assert lease.lost.wait(4 + 3.0)
    # Lost once its last known expiry passed: not before 2/3 of the TTL after the cut.
    assert time.monotonic() - cut >= 4 * 2 / 3 - 0.6
    assert lease.lost_reason is LeaseLoss.UNREACHABLE
    assert not lease.kept_alive
    deadline = time.monotonic() + 2.0
    while not reasons and time.monotonic() < deadline:
        gevent.sleep(0.05)
    assert reasons == [LeaseLoss.UNREACHABLE]
