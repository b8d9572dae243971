"""Sick members under network faults (geetcd.testing's proxy: isolate, blackhole, heal) on a
real 3-member cluster: what the client costs when a member is alive but cut off from its peers,
or drops every packet of its clients.

Gaps are measured with 16 greenlets doing put-then-get. When the faulty member is the leader, no
client can write (or read linearizably) before the others elect a new one: the gap is then
counted from the moment the surviving members have a leader, which is what the client adds.
"""

from __future__ import annotations

import contextlib
import time

import gevent
import gevent.event
import pytest
from polling import wait_for
from sick import PutThenGet, follower, use_member

import geetcd
from geetcd import MemberState
from geetcd.testing import EtcdCluster, EtcdMember

pytestmark = [pytest.mark.fault, pytest.mark.timeout(240)]

MAX_GAP = 0.5


def survivors_elected(cluster: EtcdCluster, cut: EtcdMember, old_leader_id: int) -> float:
    """Wait until a member other than ``cut`` names a leader other than ``old_leader_id``;
    return when (monotonic)."""
    others = [m for m in cluster.members if m is not cut]
    with geetcd.Client([m.client_url for m in others], timeout=1.0) as probe:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for member in others:
                try:
                    status = probe.status(endpoint=member.client_url, timeout=0.3)
                except geetcd.EtcdError:
                    continue
                if status.leader and status.leader != old_leader_id:
                    return time.monotonic()
            gevent.sleep(0.02)
    raise AssertionError("the surviving members elected no leader within 15 s")


def member_id(cluster: EtcdCluster, member: EtcdMember) -> int:
    with geetcd.Client(cluster.endpoints) as client:
        return client.status(endpoint=member.client_url).header.member_id


def run_fault(
    cluster: EtcdCluster, victim: EtcdMember, fault: str, *, leader: bool
) -> tuple[float, PutThenGet, geetcd.Client]:
    old_id = member_id(cluster, victim)
    client = geetcd.Client(cluster.endpoints, timeout=5.0)
    use_member(client, victim)
    load = PutThenGet(client, prefix=f"sick/{fault}/").start()
    gevent.sleep(1.0)
    cut = time.monotonic()
    if fault == "isolate":
        cluster.isolate(victim)
    elif fault == "blackhole":
        cluster.blackhole(victim)
    else:
        victim.pause()
    try:
        since = survivors_elected(cluster, victim, old_id) if leader else cut
        gevent.sleep(max(0.0, since + 3.0 - time.monotonic()))
        gap = load.max_gap(since, time.monotonic())
    finally:
        load.stop()
    return gap, load, client


@pytest.mark.parametrize("fault", ["isolate", "blackhole", "pause"])
def test_sick_follower_in_use_costs_under_half_a_second(
    faulty_cluster: EtcdCluster, fault: str
) -> None:
    victim = follower(faulty_cluster)
    gap, load, client = run_fault(faulty_cluster, victim, fault, leader=False)
    try:
        assert gap <= MAX_GAP, f"no successful call for {gap:.3f} s after the {fault}"
        assert load.stale == []
        assert load.late == []
        assert set(load.errors) <= {"OutcomeUnknown"}
    finally:
        client.close()


@pytest.mark.parametrize("fault", ["isolate", "blackhole"])
def test_sick_leader_in_use_costs_under_half_a_second_past_the_election(
    faulty_cluster: EtcdCluster, fault: str
) -> None:
    """An isolated leader loses its leadership (the others elect one); a black-holed leader
    keeps it (its peers still reach it): the client then writes through a follower at once."""
    victim = faulty_cluster.leader()
    gap, load, client = run_fault(faulty_cluster, victim, fault, leader=fault == "isolate")
    try:
        assert gap <= MAX_GAP, f"no successful call for {gap:.3f} s after the new leader"
        assert load.stale == []
        assert load.late == []
    finally:
        client.close()


def test_prefix_watch_on_an_isolated_member_delivers_again_within_2_5_s(
    faulty_cluster: EtcdCluster,
) -> None:
    victim = follower(faulty_cluster)
    others = [m.client_url for m in faulty_cluster.members if m is not victim]
    with (
        geetcd.Client(faulty_cluster.endpoints, namespace="/sick-watch/") as watcher,
        geetcd.Client(others, namespace="/sick-watch/", timeout=5.0) as writer,
    ):
        writer.delete_prefix("")
        use_member(watcher, victim)
        watch = watcher.watch("w/", prefix=True)
        wait_for(lambda: watch.member == victim.client_url, 5, "the watch on the victim")
        start = watch.revision + 1
        seen: list[tuple[int, bytes]] = []
        delivered_at: list[float] = []

        def consume() -> None:
            for event in watch:
                seen.append((event.revision, event.kv.key))
                delivered_at.append(time.monotonic())

        consumer = gevent.spawn(consume)
        stop = gevent.event.Event()

        def write() -> None:  # 50 writes/s to the prefix, through the other members
            i = 0
            while not stop.is_set() and i < 2000:
                with contextlib.suppress(geetcd.EtcdError):
                    writer.put(f"w/{i % 20}", str(i))
                i += 1
                gevent.sleep(0.02)

        writing = gevent.spawn(write)
        gevent.sleep(1.0)
        cut = time.monotonic()
        faulty_cluster.isolate(victim)
        try:
            wait_for(lambda: any(t > cut for t in delivered_at), 10, "an event after the cut")
            first_after = min(t for t in delivered_at if t > cut)
            gevent.sleep(1.0)
        finally:
            stop.set()
            writing.join(10)
        end = writer.put("end", "x").header.revision
        wait_for(lambda: bool(seen) and seen[-1][0] >= end - 1, 10, "every event delivered")
        consumer.kill()
        history: list[tuple[int, bytes]] = []
        with writer.watch("w/", prefix=True, start_revision=start) as replay:
            for batch in replay.responses():
                history.extend((e.revision, e.kv.key) for e in batch.events)
                if batch.revision >= end - 1:
                    break
        assert first_after - cut <= 2.5, f"no event for {first_after - cut:.3f} s after the cut"
        assert [s for s in seen if s[0] < end] == [h for h in history if h[0] < end]
        assert watch.member != victim.client_url


def test_lease_kept_alive_through_an_isolated_member_is_not_lost(
    faulty_cluster: EtcdCluster,
) -> None:
    victim = follower(faulty_cluster)
    ttl = 5
    with geetcd.Client(faulty_cluster.endpoints, timeout=5.0) as client:
        use_member(client, victim)
        leases = [client.lease(ttl, keepalive=True) for _ in range(10)]
        gevent.sleep(ttl / 3 + 0.3)
        faulty_cluster.isolate(victim)
        gevent.sleep(2 * ttl)
        assert not [lease for lease in leases if lease.lost.is_set()]
        others = [m.client_url for m in faulty_cluster.members if m is not victim]
        with geetcd.Client(others) as majority:
            assert all(majority.lease_time_to_live(lease).ttl > 0 for lease in leases)


def test_lock_holder_cut_off_sees_lost_before_anyone_else_acquires(
    faulty_cluster: EtcdCluster,
) -> None:
    victim = follower(faulty_cluster)
    others = [m.client_url for m in faulty_cluster.members if m is not victim]
    with (
        geetcd.Client([victim.client_url], timeout=5.0) as holder_client,
        geetcd.Client(others, timeout=5.0) as rival_client,
    ):
        name = f"sick-lock-{time.monotonic_ns()}"
        holder = holder_client.lock(name, ttl=4)
        assert holder.acquire(timeout=5)
        lost_at: list[float] = []
        holder.lost.rawlink(lambda _event: lost_at.append(time.monotonic()))
        rival = rival_client.lock(name, ttl=4)
        acquiring = gevent.spawn(rival.acquire, 20)
        gevent.sleep(0.5)
        assert not acquiring.ready()
        faulty_cluster.isolate(victim)
        acquiring.join(20)
        acquired_at = time.monotonic()
        assert acquiring.value is True
        assert lost_at, "the holder never saw its lock lost"
        assert lost_at[0] < acquired_at
        rival.release()


def test_an_isolated_member_serves_again_after_healing(faulty_cluster: EtcdCluster) -> None:
    victim = follower(faulty_cluster)
    with geetcd.Client(faulty_cluster.endpoints, timeout=5.0) as client:
        use_member(client, victim)
        load = PutThenGet(client, prefix="sick/heal/").start()
        gevent.sleep(0.5)
        faulty_cluster.isolate(victim)
        member = next(m for m in client.cluster_state.members if m.url == victim.client_url)
        wait_for(lambda: member.state is MemberState.DOWN, 5, "the isolated member benched")
        faulty_cluster.heal_network(victim)
        healed = time.monotonic()
        wait_for(lambda: member.state is MemberState.HEALTHY, 10, "the member back in use")
        back = time.monotonic() - healed
        load.stop()
        assert client.status(endpoint=victim.client_url).leader != 0  # it serves, with a leader
        assert back < 10
