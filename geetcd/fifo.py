"""The one first-in, first-out gate of geetcd (no I/O): ``size`` holders at most, waiters served
strictly in arrival order.

Two users: every member's connection pool (``FifoGate(maxsize)``, as
:class:`geetcd.transport.gate.FairGate`) and the recipes' per-name gate in front of an etcd lock
or election (``FifoGate(1)``, as :class:`geetcd.recipes.gate.FifoGate`, which takes deadlines).

urllib3's pool queue and gevent's Semaphore let a greenlet that just released a slot take it
again before the greenlets already waiting, so under fan-out a few greenlets starve (a p99 of
seconds at 512 greenlets on 64 connections), and a lock holder that asks again barges ahead.
Here a released slot is handed to the oldest waiter directly: nobody can barge in.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gevent
import gevent.hub

__all__ = ["FifoGate"]


class FifoGate:
    """A FIFO counting gate (see the module docstring). Greenlet-safe; never does I/O.

    :meth:`acquire` returns True once the caller holds a slot, False if ``timeout`` passed
    first or the gate was closed. A waiter that is killed or interrupted (GreenletExit,
    gevent.Timeout) leaves the queue; if a slot had just been handed to it, it is handed on,
    so a slot is never lost. Not reentrant. After :meth:`close` every waiter gets False at
    once, and so do later acquires; holders keep their slots until they release them.
    """

    __slots__ = ("_closed", "_free", "_handed", "_run_callback", "_waiters", "size")

    def __init__(self, size: int = 1) -> None:
        self.size = size
        self._free = size
        self._closed = False
        self._waiters: deque[gevent.hub.Waiter[Any]] = deque()
        # Waiters a slot was handed to, not yet woken (their slot is theirs to pass on).
        self._handed: set[gevent.hub.Waiter[Any]] = set()
        self._run_callback = gevent.get_hub().loop.run_callback

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return (
            f"<{type(self).__name__} in_use={self.size - self._free}/{self.size} "
            f"waiting={len(self._waiters)}{state}>"
        )

    @property
    def waiting(self) -> int:
        """Greenlets waiting for a slot."""
        return len(self._waiters)

    waiters = waiting

    @property
    def held(self) -> bool:
        """True while some greenlet holds a slot (or one is being handed to a waiter)."""
        return self._free < self.size

    @property
    def idle(self) -> bool:
        """True when nobody holds a slot and nobody waits for one."""
        return self._free == self.size and not self._waiters

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def try_acquire(self) -> bool:
        """Take a slot if one is free, nobody queues and the gate is open; never waits."""
        if self._free > 0 and not self._waiters and not self._closed:
            self._free -= 1
            return True
        return False

    def acquire(self, timeout: float | None = None) -> bool:
        """Take a slot, waiting at most ``timeout`` seconds (None: as long as it takes);
        False if none came in time or the gate is closed."""
        if self._free > 0 and not self._waiters and not self._closed:
            self._free -= 1
            return True
        if self._closed or (timeout is not None and timeout <= 0):
            return False
        waiter: gevent.hub.Waiter[Any] = gevent.hub.Waiter()
        self._waiters.append(waiter)
        timer = gevent.Timeout.start_new(timeout) if timeout is not None else None
        granted = False
        try:
            granted = bool(waiter.get())
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
        finally:
            if timer is not None:
                timer.close()
            if granted:
                self._handed.discard(waiter)
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter in self._handed:  # a slot was handed to us as we left: pass it on
                self._handed.discard(waiter)
                self.release()
        if granted and self.closed:  # (re-read: close() may have run meanwhile)
            self.release()  # closed while the slot was on its way to us
            return False
        return granted

    def release(self) -> None:
        """Give the slot to the oldest waiter, or back to the gate. Never raises, never
        switches (the waiter is woken from the hub)."""
        if self._waiters and not self._closed:
            waiter = self._waiters.popleft()
            self._handed.add(waiter)
            self._run_callback(waiter.switch, True)
        else:
            self._free += 1

    def close(self) -> None:
        """Wake every waiter with False; later acquires return False. Holders keep their
        slots until they release them. Never raises, never switches."""
        self._closed = True
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            self._run_callback(waiter.switch, False)
