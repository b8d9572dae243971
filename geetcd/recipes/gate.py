"""A strictly FIFO gate between the greenlets of one process (no I/O).

One etcd waiter key per lock or election name per client: the greenlets that want the same
name queue here first, and only the gate's holder has a key in etcd. The gate hands itself
over directly to the first waiter on :meth:`FifoGate.release`, so a releasing greenlet
that immediately asks again queues behind the others (no barging).
"""

from __future__ import annotations

import time
from collections import deque

import gevent.event

from geetcd.config import check_duration

__all__ = ["FifoGate", "check_timeout", "deadline_of", "remaining"]

_monotonic = time.monotonic


def check_timeout(timeout: object, what: str = "timeout") -> float | None:
    """A recipe's optional timeout: None stays None (wait forever), 0 means "do not wait";
    anything else is validated by the one duration check, :func:`geetcd.config.check_duration`
    (InvalidType for a non-number or a bool, InvalidArgument for NaN, infinity or a negative
    number). No I/O."""
    return None if timeout is None else check_duration(timeout, what, allow_zero=True)


def deadline_of(timeout: object, what: str = "timeout") -> float | None:
    """The monotonic deadline ``timeout`` seconds from now (None: no deadline); validated
    like :func:`check_timeout`."""
    seconds = check_timeout(timeout, what)
    return None if seconds is None else _monotonic() + seconds


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (never negative), or None without a deadline."""
    return None if deadline is None else max(0.0, deadline - _monotonic())


class _Ticket:
    __slots__ = ("event", "granted")

    def __init__(self) -> None:
        self.event = gevent.event.Event()
        self.granted = False


class FifoGate:
    """A mutual-exclusion gate whose waiters are served strictly in arrival order.

    :meth:`acquire` returns True once the caller holds the gate, False if ``deadline``
    passed first. A waiter that is killed or interrupted (GreenletExit, gevent.Timeout)
    leaves the queue; if the gate had just been handed to it, it is handed on, so the gate
    is never lost. Not reentrant: the holder asking again waits for itself. After
    :meth:`close` every waiter returns False at once, and so do later acquires.
    """

    __slots__ = ("_closed", "_held", "_queue")

    def __init__(self) -> None:
        self._held = False
        self._closed = False
        self._queue: deque[_Ticket] = deque()

    def __repr__(self) -> str:
        state = "held" if self._held else "free"
        return f"<FifoGate {state} waiters={len(self._queue)}>"

    @property
    def held(self) -> bool:
        """True while some greenlet holds the gate."""
        return self._held

    @property
    def waiters(self) -> int:
        """Greenlets queued behind the holder."""
        return len(self._queue)

    @property
    def idle(self) -> bool:
        """True when nobody holds the gate and nobody waits for it."""
        return not self._held and not self._queue

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Wake every waiter with False (nobody is granted the gate any more); later
        acquires return False. The holder keeps it until it releases. Never raises, never
        switches."""
        self._closed = True
        for ticket in self._queue:
            ticket.event.set()

    def try_acquire(self) -> bool:
        """Take the gate if it is free, nobody queues and it is not closed; never waits."""
        if self._held or self._queue or self._closed:
            return False
        self._held = True
        return True

    def acquire(self, deadline: float | None = None) -> bool:
        """Wait for the gate until ``deadline`` (monotonic; None: forever). True if held."""
        if self.try_acquire():
            return True
        if self._closed or (deadline is not None and deadline <= _monotonic()):
            return False
        ticket = _Ticket()
        self._queue.append(ticket)
        held = False
        try:
            ticket.event.wait(remaining(deadline))
            held = ticket.granted and not self._closed
            return held
        finally:
            if not held:
                if ticket.granted:
                    self.release()  # handed to us as we were leaving: pass it on
                else:
                    self._queue.remove(ticket)

    def release(self) -> None:
        """Hand the gate to the first waiter, or free it (closed: free it). Never raises,
        never switches."""
        if self._queue and not self._closed:
            ticket = self._queue.popleft()
            ticket.granted = True
            ticket.event.set()
            return
        self._held = False
