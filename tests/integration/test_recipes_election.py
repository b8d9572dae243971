"""client.election against a real 3-member etcd cluster: campaign / proclaim / resign /
leader, FIFO succession, failover when the leader's process is SIGKILLed, observe() across
a member SIGKILL, and interop with ``etcdctl elect``."""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Iterator

import gevent
import pytest
from test_recipes_support import Ctl, Proc, wait_until

import geetcd
from geetcd import KeyValue, Op
from geetcd.testing import EtcdCluster
from geetcd.watch import hub_for

pytestmark = pytest.mark.timeout(120)

CANDIDATE = """
import sys
import geetcd
client = geetcd.Client(sys.argv[1].split(","), namespace=sys.argv[2])
election = client.election("boss", ttl=int(sys.argv[3]))
assert election.campaign("subprocess", timeout=20)
print("leader", election.revision, flush=True)
import gevent
gevent.sleep(120)
"""


@pytest.fixture
def ns() -> str:
    return f"/recipes-election-{secrets.token_hex(4)}/"


@pytest.fixture
def client(etcd_cluster: EtcdCluster, ns: str) -> Iterator[geetcd.Client]:
    with geetcd.Client(etcd_cluster.endpoints, namespace=ns) as c:
        yield c


def candidates(client: geetcd.Client, name: str) -> list[KeyValue]:
    response = client.range(f"{name}/", prefix=True, sort_order="ascend", sort_target="create")
    return list(response.kvs)


def test_campaign_proclaim_resign_leader(etcd_cluster: EtcdCluster, ns: str) -> None:
    with (
        geetcd.Client(etcd_cluster.endpoints, namespace=ns) as a,
        geetcd.Client(etcd_cluster.endpoints, namespace=ns) as b,
    ):
        ea, eb = a.election("e"), b.election("e")
        assert ea.leader() is None
        with pytest.raises(geetcd.NotLeader):
            ea.proclaim("nope")
        assert ea.campaign("one", timeout=5)
        assert ea.is_leader and ea.key is not None and ea.key.startswith(b"e/")
        leader = eb.leader()
        assert leader is not None and leader.value == b"one" and leader.key == ea.key
        assert leader.create_revision == ea.revision
        ea.proclaim("two")
        leader = eb.leader()
        assert leader is not None and leader.value == b"two"
        assert ea.campaign("three", timeout=0)  # already leader: proclaims
        assert eb.leader().value == b"three"  # type: ignore[union-attr]
        # The other candidate waits; its timeout withdraws its key.
        assert not eb.campaign("b", timeout=0.5)
        assert [kv.key for kv in candidates(a, "e")] == [ea.key]
        with pytest.raises(geetcd.NotLeader):
            eb.proclaim("usurp")
        # The leader's compare guards writes.
        assert a.txn([ea.is_leader_compare()], [Op.put("by-leader", "1")]).succeeded
        waiting = gevent.spawn(eb.campaign, "b", 10)
        assert wait_until(lambda: len(candidates(a, "e")) == 2, 5)
        ea.resign()
        assert not ea.is_leader
        waiting.join(timeout=10)
        assert waiting.value is True and eb.is_leader
        assert eb.leader().value == b"b"  # type: ignore[union-attr]
        with pytest.raises(geetcd.NotLeader):
            ea.proclaim("late")
        eb.resign()
        assert eb.leader() is None


def test_succession_follows_campaign_order(etcd_cluster: EtcdCluster, ns: str) -> None:
    clients = [geetcd.Client(etcd_cluster.endpoints, namespace=ns) for _ in range(4)]
    try:
        elections = [c.election("order") for c in clients]
        order: list[int] = []

        def run(index: int) -> None:
            assert elections[index].campaign(f"c{index}", timeout=20)
            order.append(index)
            gevent.sleep(0.05)
            elections[index].resign()

        assert elections[0].campaign("c0", timeout=5)
        runners = []
        for index in (2, 1, 3):
            runners.append(gevent.spawn(run, index))
            n = len(runners) + 1
            assert wait_until(lambda n=n: len(candidates(clients[0], "order")) == n, 5)
        elections[0].resign()
        gevent.joinall(runners, raise_error=True, timeout=20)
        assert order == [2, 1, 3]
    finally:
        for c in clients:
            c.close()


def test_lost_when_the_leader_lease_is_revoked(etcd_cluster: EtcdCluster, ns: str) -> None:
    ttl = 6
    with (
        geetcd.Client(etcd_cluster.endpoints, namespace=ns) as a,
        geetcd.Client(etcd_cluster.endpoints, namespace=ns) as b,
    ):
        ea, eb = a.election("lost", ttl=ttl), b.election("lost", ttl=ttl)
        assert ea.campaign("a", timeout=5)
        assert ea.key is not None
        waiting = gevent.spawn(eb.campaign, "b", 15)
        assert wait_until(lambda: len(candidates(a, "lost")) == 2, 5)
        b.revoke_lease(int(ea.key.rsplit(b"/", 1)[1], 16))
        waiting.join(timeout=5)
        assert waiting.value is True
        assert ea.lost.wait(ttl / 3 + 2.5)
        assert not ea.is_leader
        with pytest.raises(geetcd.NotLeader):
            ea.proclaim("stale")
        assert eb.leader().value == b"b"  # type: ignore[union-attr]
        eb.resign()


def test_failover_when_the_leader_process_is_killed(etcd_cluster: EtcdCluster, ns: str) -> None:
    ttl = 3
    endpoints = ",".join(etcd_cluster.endpoints)
    proc = Proc([sys.executable, "-c", CANDIDATE, endpoints, ns, str(ttl)])
    try:
        line = proc.wait_line(lambda text: text.startswith("leader "), 20)
        with geetcd.Client(etcd_cluster.endpoints, namespace=ns) as c:
            mine = c.election("boss")
            leader = mine.leader()
            assert leader is not None and leader.value == b"subprocess"
            assert leader.create_revision == int(line.split()[1])
            observed: list[bytes] = []

            def observe() -> None:
                for kv in c.election("boss").observe():
                    observed.append(kv.value)

            observer = gevent.spawn(observe)
            assert wait_until(lambda: observed == [b"subprocess"], 5)
            campaign = gevent.spawn(mine.campaign, "successor", 20)
            assert wait_until(lambda: len(candidates(c, "boss")) == 2, 5)
            assert not campaign.ready()
            proc.sigkill()  # no resign, no revoke: the lease must expire
            killed_at = time.monotonic()
            campaign.join(timeout=ttl + 5)
            took = time.monotonic() - killed_at
            assert campaign.value is True, proc.lines
            assert ttl - 1.5 < took < ttl + 3, took
            assert wait_until(lambda: observed == [b"subprocess", b"successor"], 5), observed
            observer.kill()
            mine.resign()
    finally:
        proc.close()


def test_observe_yields_every_state_to_a_slow_consumer(etcd_cluster: EtcdCluster, ns: str) -> None:
    with (
        geetcd.Client(etcd_cluster.endpoints, namespace=ns) as a,
        geetcd.Client(etcd_cluster.endpoints, namespace=ns) as b,
        geetcd.Client(etcd_cluster.endpoints, namespace=ns) as watcher,
    ):
        observed: list[bytes] = []

        def observe() -> None:
            for kv in watcher.election("slow").observe():
                observed.append(kv.value)
                gevent.sleep(0.3)  # everything below happens while the consumer sleeps

        ea, eb = a.election("slow"), b.election("slow")
        assert ea.campaign("a0", timeout=5)
        observer = gevent.spawn(observe)
        assert wait_until(lambda: observed == [b"a0"], 5)
        waiting = gevent.spawn(eb.campaign, "b0", 10)
        assert wait_until(lambda: len(candidates(a, "slow")) == 2, 5)
        ea.proclaim("a1")
        ea.resign()
        waiting.join(timeout=10)
        assert waiting.value is True
        eb.proclaim("b1")  # before the observer read anything after the resign
        eb.proclaim("b2")
        expected = [b"a0", b"a1", b"b0", b"b1", b"b2"]
        assert wait_until(lambda: len(observed) >= len(expected), 10), observed
        assert observed == expected
        observer.kill()
        eb.resign()


@pytest.mark.fault
def test_observe_across_a_member_kill(healed_cluster: EtcdCluster, ns: str) -> None:
    with (
        geetcd.Client(healed_cluster.endpoints, namespace=ns, timeout=8.0) as a,
        geetcd.Client(healed_cluster.endpoints, namespace=ns, timeout=8.0) as b,
        geetcd.Client(healed_cluster.endpoints, namespace=ns, timeout=8.0) as watcher,
    ):
        observed: list[tuple[bytes, bytes]] = []

        def observe() -> None:
            for kv in watcher.election("obs").observe():
                observed.append((kv.key, kv.value))

        observer = watcher.spawn(observe)
        ea, eb = a.election("obs"), b.election("obs")
        assert ea.campaign("a0", timeout=5)
        assert ea.key is not None
        assert wait_until(lambda: len(observed) == 1, 5)

        def serving() -> str | None:  # the watch opens once the observer asks for more
            urls = [s.member.url for s in hub_for(watcher).streams if s.member is not None]
            return urls[0] if urls else None

        assert wait_until(serving, 5)
        url = serving()
        victim = next(m for m in healed_cluster.members if m.client_url == url)
        victim.kill()
        expected = [(ea.key, b"a0")]
        for i in range(1, 4):
            ea.proclaim(f"a{i}")
            expected.append((ea.key, f"a{i}".encode()))
        waiting = gevent.spawn(eb.campaign, "b0", 20)
        assert wait_until(lambda: len(candidates(a, "obs")) == 2, 8)
        ea.resign()
        waiting.join(timeout=10)
        assert waiting.value is True and eb.key is not None
        expected.append((eb.key, b"b0"))
        eb.proclaim("b1")
        expected.append((eb.key, b"b1"))
        assert wait_until(lambda: len(observed) >= len(expected), 15), observed
        gevent.sleep(0.3)  # nothing more may come
        assert observed == expected
        # The observation moved to a surviving member.
        now = {s.member.url for s in hub_for(watcher).streams if s.member is not None}
        assert now and victim.client_url not in now
        observer.kill()
        eb.resign()


def test_etcdctl_elect_and_geetcd_election(etcd_cluster: EtcdCluster, ns: str) -> None:
    name = f"{ns}ctl"
    with geetcd.Client(etcd_cluster.endpoints) as c:
        election = c.election(name)
        ctl = Ctl(etcd_cluster.endpoints, "elect", name, "from-etcdctl")
        listener = Ctl(etcd_cluster.endpoints, "elect", "-l", name)
        try:
            ctl.wait_line(lambda line: line == "from-etcdctl", 10)
            leader = election.leader()
            assert leader is not None and leader.value == b"from-etcdctl"
            assert not election.campaign("from-geetcd", timeout=0.5)
            campaign = gevent.spawn(election.campaign, "from-geetcd", 15)
            gevent.sleep(0.3)
            assert not campaign.ready()
            ctl.interrupt()  # etcdctl resigns
            campaign.join(timeout=10)
            assert campaign.value is True
            assert ctl.wait(5) == 0
            # etcdctl's observer follows the geetcd leader and its proclamations.
            listener.wait_line(lambda line: line == "from-geetcd", 10)
            election.proclaim("proclaimed")
            listener.wait_line(lambda line: line == "proclaimed", 10)
            # An etcdctl candidate waits behind the geetcd leader.
            second = Ctl(etcd_cluster.endpoints, "elect", name, "second")
            try:
                assert wait_until(lambda: len(candidates(c, name)) == 2, 10)
                assert "second" not in second.lines
                election.resign()
                second.wait_line(lambda line: line == "second", 10)
                listener.wait_line(lambda line: line == "second", 10)
                second.interrupt()
                assert second.wait(5) == 0
            finally:
                second.close()
        finally:
            ctl.close()
            listener.close()
