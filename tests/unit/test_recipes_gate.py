"""The recipes' local FIFO gate and the hand-over of a waiter key between greenlets: order,
timeouts and kills never lose the gate, and a key handed to a greenlet that leaves is
deleted (no I/O but the recorded delete of a stand-in client)."""

from __future__ import annotations

import time
from typing import Any

import gevent
import gevent.event
import pytest

from geetcd.errors import InvalidArgument, InvalidType
from geetcd.recipes.gate import FifoGate, check_timeout, deadline_of
from geetcd.recipes.queue import Queued, enter_gate, waiter_key
from geetcd.recipes.sessions import Handed, SessionPool, check_ttl


class _Session:
    def __init__(self, lease_id: int) -> None:
        self.id = lease_id
        self.lost = gevent.event.Event()
        self.closed = False


class _Client:
    """Stands in for geetcd.Client in the calls the gate code makes (txn, spawn, closed)."""

    def __init__(self) -> None:
        self.txns: list[tuple[Any, Any]] = []
        self.closed = False
        self.core = self
        self.hooks: list[Any] = []

    def on_close(self, hook: Any) -> None:
        self.hooks.append(hook)

    def txn(self, compare: Any, success: Any, failure: Any = (), **_: Any) -> None:
        self.txns.append((compare, success))

    def spawn(self, func: Any, *args: Any) -> gevent.Greenlet[..., Any]:
        return gevent.spawn(func, *args)


def test_gate_serves_in_arrival_order_and_the_releaser_cannot_barge() -> None:
    gate = FifoGate()
    assert gate.acquire(None) and gate.held
    order: list[int] = []

    def waiter(n: int) -> None:
        assert gate.acquire(time.monotonic() + 5)
        order.append(n)
        gate.release()

    greenlets = [gevent.spawn(waiter, n) for n in range(5)]
    gevent.sleep(0.01)
    assert gate.waiters == 5 and not gate.try_acquire()
    gate.release()
    assert not gate.try_acquire()  # handed to the first waiter, not free
    gevent.joinall(greenlets, timeout=5, raise_error=True)
    assert order == [0, 1, 2, 3, 4]
    assert gate.idle


def test_gate_timeout_and_kill_leave_the_queue() -> None:
    gate = FifoGate()
    assert gate.try_acquire()
    started = time.monotonic()
    assert not gate.acquire(time.monotonic() + 0.05)
    assert time.monotonic() - started >= 0.04
    killed = gevent.spawn(gate.acquire, None)
    gevent.sleep(0.01)
    assert gate.waiters == 1
    killed.kill()
    assert gate.waiters == 0
    gate.release()
    assert gate.idle


def test_a_granted_waiter_that_is_killed_hands_the_gate_on() -> None:
    gate = FifoGate()
    assert gate.try_acquire()
    first = gevent.spawn(gate.acquire, None)
    second = gevent.spawn(gate.acquire, None)
    gevent.sleep(0.01)
    first.kill(block=False)  # its throw is scheduled before the grant's wake-up
    gate.release()
    gevent.joinall([first, second], timeout=2)
    assert second.value is True and gate.held and gate.waiters == 0


def test_key_handed_to_a_greenlet_that_leaves_is_deleted() -> None:
    client = _Client()
    pool = SessionPool(client)  # type: ignore[arg-type]
    prefix = b"lock/"
    session = _Session(0xABC)
    gate = pool.gate(prefix)
    assert gate.try_acquire()
    leaving = gevent.spawn(enter_gate, client, pool, prefix, None, wait=True)
    gevent.sleep(0.01)
    key = waiter_key(prefix, session.id)
    handed = Handed(Queued(key, 42, None, 42, checked=True), session)  # type: ignore[arg-type]
    leaving.kill(block=False)
    pool.hand(prefix, gate, handed)
    leaving.join(timeout=2)
    assert isinstance(leaving.value, gevent.GreenletExit)
    assert len(client.txns) == 1  # the guarded delete of the orphaned key
    compare, success = client.txns[0]
    assert compare[0].key == key and compare[0].operand == 42
    assert success[0].key == key
    assert gate.idle and pool.take(prefix) is None


def test_key_handed_on_goes_to_the_next_waiter() -> None:
    client = _Client()
    pool = SessionPool(client)  # type: ignore[arg-type]
    prefix = b"lock/"
    gate = pool.gate(prefix)
    assert gate.try_acquire()
    leaving = gevent.spawn(enter_gate, client, pool, prefix, None, wait=True)
    staying = gevent.spawn(enter_gate, client, pool, prefix, None, wait=True)
    gevent.sleep(0.01)
    session = _Session(7)
    handed = Handed(Queued(b"lock/7", 9, None, 9, checked=True), session)  # type: ignore[arg-type]
    leaving.kill(block=False)
    pool.hand(prefix, gate, handed)
    staying.join(timeout=2)
    assert staying.value == (gate, handed)
    assert client.txns == []


BAD_TIMEOUTS = [
    (True, InvalidType),
    ("1", InvalidType),
    (-1, InvalidArgument),
    (float("nan"), InvalidArgument),
    (float("inf"), InvalidArgument),
]


def test_closing_the_pool_wakes_queued_greenlets() -> None:
    client = _Client()
    pool = SessionPool(client)  # type: ignore[arg-type]
    gate = pool.gate(b"lock/")
    assert gate.try_acquire()
    waiters = [gevent.spawn(gate.acquire, None) for _ in range(3)]
    gevent.sleep(0.01)
    for hook in client.hooks:  # what client.close() runs
        hook()
    gevent.joinall(waiters, timeout=2)
    assert [w.value for w in waiters] == [False, False, False]
    assert gate.closed and gate.waiters == 0
    assert not gate.acquire(None) and not gate.try_acquire()
    gate.release()
    assert not gate.held


@pytest.mark.parametrize(("value", "exc"), BAD_TIMEOUTS)
def test_bad_timeouts_are_refused(value: object, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        check_timeout(value)
    with pytest.raises(exc):
        deadline_of(value)


def test_ttl_checks() -> None:
    assert check_ttl(5) == 5
    with pytest.raises(InvalidType):
        check_ttl(True)
    with pytest.raises(InvalidArgument):
        check_ttl(0)
