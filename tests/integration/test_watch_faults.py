"""Exactly-once watch resume when the serving member dies, hangs or loses its leader.

Each test runs a writer throughout and compares the revisions the watch delivered with the
ground truth: a replay of the same range from the first revision, read after the fault
from a healthy member. Equal lists mean no event lost, none repeated, order kept.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import gevent
import gevent.event
import pytest
from polling import wait_for

import geetcd
from geetcd.testing import EtcdCluster, EtcdMember
from geetcd.watch import Watch

pytestmark = pytest.mark.fault

NAMESPACE = "/watch-faults/"


class Writer:
    """Puts to ``w/<n>`` every 10 ms in a greenlet; records acknowledged revisions."""

    def __init__(self, client: geetcd.Client) -> None:
        self.client = client
        self.acked: list[int] = []
        self.unknown = 0
        self.before_fault = 0
        self._stop = gevent.event.Event()
        self._greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            try:
                self.acked.append(self.client.put(f"w/{i % 10}", str(i), timeout=3).header.revision)
            except geetcd.EtcdError:
                self.unknown += 1  # outcome unknown or no quorum: the truth replay decides
            i += 1
            self._stop.wait(0.01)

    def wait_progress(self, writes: int) -> None:
        """Wait until ``writes`` more puts were acknowledged since the fault."""
        target = self.before_fault + writes
        wait_for(lambda: len(self.acked) >= target, 20, f"{writes} writes after the fault")

    def stop(self) -> int:
        """Stop, then write a last acknowledged sentinel; returns its revision."""
        self._stop.set()
        self._greenlet.join(timeout=10)
        return self.client.put("w/sentinel", "end", timeout=15).header.revision


class Collector:
    """Consumes a watch in a greenlet, keeping every delivered revision in order."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        self.revisions: list[int] = []
        self._greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        for batch in self.watch.responses():
            if batch.events:
                self.revisions.append(batch.revision)

    def wait_until(self, revision: int, timeout: float = 20.0) -> None:
        wait_for(
            lambda: bool(self.revisions) and self.revisions[-1] >= revision,
            timeout,
            f"watch to reach revision {revision}",
        )


def truth(client: geetcd.Client, start: int, end: int) -> list[int]:
    """Every revision of a change under w/ in [start, end], replayed from history."""
    revisions: list[int] = []
    with client.watch("w/", prefix=True, start_revision=start) as replay:
        for batch in replay.responses():
            if batch.events:
                revisions.append(batch.revision)
            if batch.revision >= end:
                return revisions
    raise AssertionError("replay ended early")


def serving_member(cluster: EtcdCluster, watch: Watch) -> EtcdMember:
    wait_for(lambda: watch.member is not None, what="watch connected")
    return next(m for m in cluster.members if m.client_url == watch.member)


@contextmanager
def clients(cluster: EtcdCluster) -> Iterator[tuple[geetcd.Client, geetcd.Client]]:
    with (
        geetcd.Client(cluster.endpoints, namespace=NAMESPACE, timeout=15) as watcher,
        geetcd.Client(cluster.endpoints, namespace=NAMESPACE, timeout=15) as writer,
    ):
        writer.delete_prefix("")
        yield watcher, writer


def check_exactly_once(
    watcher: geetcd.Client, collector: Collector, writer: Writer, start: int
) -> None:
    sentinel = writer.stop()
    collector.wait_until(sentinel)
    expected = truth(watcher, start, sentinel)
    assert collector.revisions == expected, "lost, repeated or reordered events"
    assert set(writer.acked) <= set(collector.revisions)
    # the writer made progress both before the fault and after the watch moved
    assert writer.before_fault >= 5
    assert len(writer.acked) - writer.before_fault >= 10


def test_resume_across_sigkill_of_the_serving_member(healed_cluster: EtcdCluster) -> None:
    with clients(healed_cluster) as (watcher, writer_client):
        watch = watcher.watch("w/", prefix=True, liveness=2.0)
        twin = watcher.watch("w/", prefix=True, liveness=2.0)  # coalesced on the same stream
        start = watch.revision + 1
        collector, twin_collector = Collector(watch), Collector(twin)
        writer = Writer(writer_client)
        gevent.sleep(0.5)
        victim = serving_member(healed_cluster, watch)
        writer.before_fault = len(writer.acked)
        victim.kill()
        wait_for(lambda: watch.member not in (None, victim.client_url), what="watch moved")
        writer.wait_progress(10)
        check_exactly_once(watcher, collector, writer, start)
        twin_collector.wait_until(collector.revisions[-1])
        assert twin_collector.revisions == collector.revisions


def test_resume_across_sigstop_of_the_serving_member(healed_cluster: EtcdCluster) -> None:
    with clients(healed_cluster) as (watcher, writer_client):
        watch = watcher.watch("w/", prefix=True, liveness=2.0)
        start = watch.revision + 1
        collector = Collector(watch)
        writer = Writer(writer_client)
        gevent.sleep(0.5)
        victim = serving_member(healed_cluster, watch)
        paused_at = time.monotonic()
        writer.before_fault = len(writer.acked)
        victim.pause()
        try:
            # silent for 2 s -> probe (1 s timeout) fails -> moved: well within 15 s
            wait_for(lambda: watch.member not in (None, victim.client_url), 15, "watch moved")
            moved_after = time.monotonic() - paused_at
            # the liveness probe found the member hung and benched it
            state = {m.url: m.state for m in watcher.cluster_state.members}
            assert state[victim.client_url] is geetcd.MemberState.DOWN
            writer.wait_progress(10)
            check_exactly_once(watcher, collector, writer, start)
        finally:
            victim.resume()
        assert moved_after < 15


def test_resume_when_the_serving_member_loses_its_leader(healed_cluster: EtcdCluster) -> None:
    with clients(healed_cluster) as (watcher, writer_client):
        watch = watcher.watch("w/", prefix=True)
        start = watch.revision + 1
        collector = Collector(watch)
        before = [writer_client.put(f"w/{i}", "a").header.revision for i in range(5)]
        collector.wait_until(before[-1])
        serving = serving_member(healed_cluster, watch)
        others = [m for m in healed_cluster.members if m is not serving]
        for member in others:
            member.kill()
        stream = watch._stream
        assert stream is not None
        # The stream fails on the serving member: the member ends it with "no leader" (it is
        # sent with Grpc-Metadata-hasleader), or the liveness probe, which is linearizable, finds
        # first that the member can no longer reach a leader.
        wait_for(
            lambda: any(
                isinstance(e, geetcd.EtcdError) and e.member == serving.client_url
                for e in stream.errors
            ),
            20,
            "the stream failed on its member",
        )
        for member in others:
            member.restart()
        after = [writer_client.put(f"w/{i}", "b").header.revision for i in range(5)]
        collector.wait_until(after[-1], 20)
        expected = truth(watcher, start, after[-1])
        assert collector.revisions == expected == before + after
