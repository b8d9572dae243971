"""The one observer hook (geetcd.observe) against a real etcd: every call, attempt, batch and
member change is reported once, in the caller's greenlet for call starts, and an observer that
raises never fails a call."""

from __future__ import annotations

from typing import Any

import gevent
import pytest

import geetcd
from geetcd.observe import CallRecord, Observer
from geetcd.testing import EtcdCluster

pytestmark = pytest.mark.timeout(120)


class Recorder(Observer):
    def __init__(self) -> None:
        self.started: list[tuple[str, Any]] = []
        self.ended: list[tuple[str, str | None, str | None, int, int]] = []
        self.attempts: list[tuple[str, str, str | None]] = []
        self.batches: list[tuple[str, int]] = []
        self.states: list[tuple[str, str, str]] = []

    def call_started(self, call: CallRecord) -> Any:
        greenlet = gevent.getcurrent()
        self.started.append((call.method, greenlet))
        return greenlet

    def call_ended(self, call: CallRecord, seconds: float, error: BaseException | None) -> None:
        assert seconds >= 0
        assert call.context_of(self) is not None
        name = None if error is None else type(error).__name__
        self.ended.append((call.method, name, call.member, call.batch_size, call.attempts))

    def attempt_ended(
        self, call: CallRecord, member: str, seconds: float, error: BaseException | None
    ) -> None:
        self.attempts.append((call.method, member, None if error is None else type(error).__name__))

    def batch_sent(self, kind: str, size: int) -> None:
        self.batches.append((kind, size))

    def member_state_changed(
        self, member: str, old: str, new: str, error: BaseException | None
    ) -> None:
        self.states.append((member, old, new))


def test_calls_and_attempts_are_reported_once(etcd_server: Any) -> None:
    recorder = Recorder()
    with geetcd.Client(etcd_server.members[0].client_url, batch_reads=False) as client:
        client.core.add_observer(recorder)
        client.put("/observe/a", "1")
        assert client.get("/observe/a") is not None
        client.delete("/observe/a")
        with pytest.raises(geetcd.CompactedRevision):
            head = client.status().header.revision
            client.compact(head)
            client.range("/observe/a", revision=1)
        methods = [m for m, *_ in recorder.ended]
        assert methods == ["put", "get", "delete", "status", "compact", "range"]
        assert [e[1] for e in recorder.ended] == [None] * 5 + ["CompactedRevision"]
        assert all(e[2] == etcd_server.members[0].client_url for e in recorder.ended)
        assert len(recorder.attempts) == 6
        assert all(e[4] == 1 for e in recorder.ended)
        assert [g for _, g in recorder.started] == [gevent.getcurrent()] * 6
        client.core.remove_observer(recorder)
        client.put("/observe/b", "2")
        assert len(recorder.ended) == 6


def test_batched_reads_each_caller_one_call(etcd_server: Any) -> None:
    recorder = Recorder()
    with geetcd.Client(etcd_server.members[0].client_url) as client:
        client.put("/observe/k", "v")
        client.core.add_observer(recorder)
        # Rounds until a batch forms (on a busy machine the first reads may all go alone).
        for _ in range(20):
            recorder.__init__()  # type: ignore[misc]
            readers = [gevent.spawn(client.range, "/observe/k") for _ in range(50)]
            gevent.joinall(readers, raise_error=True)
            if recorder.batches:
                break
        assert len(recorder.ended) == 50
        assert all(e[0] == "range" and e[1] is None for e in recorder.ended)
        sizes = [e[3] for e in recorder.ended]
        batched = sum(size for kind, size in recorder.batches)
        assert recorder.batches and all(kind == "read" for kind, _ in recorder.batches)
        assert sum(1 for s in sizes if s > 1) == batched
        # Every caller's call started in the caller's own greenlet.
        assert {g for _, g in recorder.started} == set(readers)
        # Each batched call saw the batch's attempt.
        assert all(e[4] >= 1 for e in recorder.ended)


def test_an_observer_that_raises_never_fails_a_call(etcd_server: Any) -> None:
    class Broken(Observer):
        def call_started(self, call: CallRecord) -> Any:
            raise RuntimeError("observer bug")

        def call_ended(self, call: CallRecord, seconds: float, error: BaseException | None) -> None:
            raise RuntimeError("observer bug")

    recorder = Recorder()
    with geetcd.Client(etcd_server.members[0].client_url) as client:
        client.core.add_observer(Broken())
        client.core.add_observer(recorder)
        client.put("/observe/x", "1")
        assert client.get("/observe/x") is not None
        assert [e[0] for e in recorder.ended] == ["put", "get"]
        with pytest.raises(TypeError):
            client.core.add_observer(object())  # type: ignore[arg-type]


@pytest.mark.fault
def test_failover_reports_each_member_tried_and_the_state_change() -> None:
    with EtcdCluster(3) as cluster:
        urls = [m.client_url for m in cluster.members]
        recorder = Recorder()
        with geetcd.Client(urls, policy=geetcd.PickPolicy.ROUND_ROBIN) as client:
            client.core.add_observer(recorder)
            for _ in range(3):
                client.status()
            leader = cluster.leader()
            victim = next(m for m in cluster.members if m is not leader)  # no election
            victim.kill()
            for _ in range(6):
                client.range("/observe/failover")
            failed = [a for a in recorder.attempts if a[2] is not None]
            assert failed and all(a[1] == victim.client_url for a in failed)
            assert (victim.client_url, "healthy", "down") in recorder.states
            moved = [e for e in recorder.ended if e[4] > 1]
            assert moved and all(e[1] is None and e[2] != victim.client_url for e in moved)
