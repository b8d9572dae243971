"""One deadline per call, pool wait included, and a caller's own tight deadline never
benches a healthy member (real etcd; one private member, paused with SIGSTOP)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import gevent
import gevent.event
import pytest

import geetcd
from geetcd.cluster import MemberState
from geetcd.testing import EtcdCluster

pytestmark = [pytest.mark.timeout(90), pytest.mark.fault]


@pytest.fixture(scope="module")
def lone_member() -> Iterator[EtcdCluster]:
    with EtcdCluster(size=1) as cluster:
        yield cluster


def test_pool_wait_counts_against_the_deadline(lone_member: EtcdCluster) -> None:
    """Callers outnumber connections on a hung member: each call ends by its deadline
    (once, the second caller waited for the pool and then read for a full attempt)."""
    client = geetcd.Client(lone_member.endpoints, maxsize=1, timeout=2.5, attempt_timeout=2.0)
    member = lone_member.member(0)
    try:
        assert client.get("warm") is None
        member.pause()
        ended: list[float] = []
        started = time.monotonic()

        def caller() -> None:
            with pytest.raises((geetcd.ClusterUnavailable, geetcd.DeadlineExceeded)):
                client.get("k")
            ended.append(time.monotonic() - started)

        gevent.joinall([gevent.spawn(caller) for _ in range(4)], timeout=20)
        assert len(ended) == 4
        assert max(ended) < 2.5 + 0.5, ended  # never the 4.0 s of a wait plus a full read
    finally:
        member.resume()
        client.close()


def test_tight_deadline_does_not_bench_the_member(lone_member: EtcdCluster) -> None:
    lone_member.wait_healthy()
    client = geetcd.Client(lone_member.endpoints, namespace="/tight/")
    try:
        client.put("big", b"x" * 1_000_000)
        (member,) = client.cluster_state.members
        timeouts = 0
        for _ in range(20):
            try:
                client.get("big", timeout=0.002)
            except geetcd.DeadlineExceeded:
                timeouts += 1
        assert timeouts > 0  # the deadline was really that tight
        assert member.state is MemberState.HEALTHY
        got = client.get("big", timeout=5)  # others are served at once
        assert got is not None and len(got.value) == 1_000_000
    finally:
        client.close()


def test_close_from_a_watch_callback_finishes(lone_member: EtcdCluster) -> None:
    lone_member.wait_healthy()
    client = geetcd.Client(lone_member.endpoints, namespace="/closecb/")
    writer = geetcd.Client(lone_member.endpoints, namespace="/closecb/")
    try:
        done = gevent.event.Event()

        def on_event(event: geetcd.Event) -> None:
            client.close()
            done.set()

        client.watch("k", callback=on_event)
        writer.put("k", "v")
        assert done.wait(10)  # the callback was not killed half-way by its own close
        assert client.closed
        with pytest.raises(geetcd.ClientClosed):
            client.get("k")
        gevent.sleep(0.1)
        assert len(client.core.group) <= 1  # at most the callback greenlet, ending now
    finally:
        writer.close()
        client.close()
