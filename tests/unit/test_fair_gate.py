"""FairGate: strict FIFO hand-off, timeouts and kills never lose or duplicate a slot."""

from __future__ import annotations

import gevent

from geetcd.transport import FairGate


def test_fast_path_and_hand_off_in_arrival_order() -> None:
    gate = FairGate(1)
    assert gate.acquire(0.1)
    order: list[int] = []

    def waiter(n: int) -> None:
        assert gate.acquire(5)
        order.append(n)
        gevent.sleep(0.01)
        gate.release()

    greenlets = [gevent.spawn(waiter, n) for n in range(5)]
    gevent.sleep(0.05)
    assert gate.waiting == 5
    gate.release()
    gevent.joinall(greenlets, timeout=5)
    assert order == [0, 1, 2, 3, 4]
    assert gate.acquire(0) and not gate.acquire(0.01)


def test_releaser_cannot_barge_ahead_of_waiters() -> None:
    gate = FairGate(1)
    assert gate.acquire(0.1)
    got: list[str] = []
    early = gevent.spawn(lambda: gate.acquire(5) and got.append("waiter"))
    gevent.sleep(0.01)
    gate.release()
    # The releaser asks again at once: the waiter must get the slot first.
    assert not gate.acquire(0.05)
    early.join(timeout=2)
    assert got == ["waiter"]


def test_timeout_returns_false_and_keeps_slot_count() -> None:
    gate = FairGate(1)
    assert gate.acquire(None)
    assert gate.acquire(0.05) is False
    assert gate.waiting == 0
    gate.release()
    assert gate.acquire(0)


def test_slot_handed_to_a_waiter_killed_meanwhile_is_passed_on() -> None:
    gate = FairGate(1)
    assert gate.acquire(None)
    victim = gevent.spawn(gate.acquire, 5)
    survivor = gevent.spawn(gate.acquire, 5)
    gevent.sleep(0.01)
    assert gate.waiting == 2
    victim.kill(block=False)  # the kill is delivered first...
    gate.release()  # ...then the slot is handed to the (dying) victim
    assert survivor.get(timeout=2) is True
    assert victim.dead and gate.waiting == 0
    gate.release()
    assert gate.acquire(0)  # exactly one slot exists: held now
    assert not gate.acquire(0.01)
