"""FairGate: the FIFO bound on a member's pooled connections (at most ``maxsize`` in use)."""

from __future__ import annotations

from collections import deque
from typing import Any

import gevent
import gevent.hub

__all__ = ["FairGate"]


class FairGate:
    """A FIFO counting gate: at most ``size`` holders, waiters served strictly in arrival order.

    urllib3's pool queue (and gevent's Semaphore) let a greenlet that just released a slot take
    it again before the greenlets already waiting, so under fan-out a few greenlets starve (a
    p99 of seconds at 512 greenlets on 64 connections). Here a released slot is handed to the
    oldest waiter directly, so nobody can barge in.
    """

    __slots__ = ("_free", "_run_callback", "_waiters")

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: deque[gevent.hub.Waiter[Any]] = deque()
        self._run_callback = gevent.get_hub().loop.run_callback

    def acquire(self, timeout: float | None) -> bool:
        """Take a slot, waiting at most ``timeout`` seconds; False if none came in time."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        waiter: gevent.hub.Waiter[Any] = gevent.hub.Waiter()
        self._waiters.append(waiter)
        timer = gevent.Timeout.start_new(timeout) if timeout is not None else None
        granted = False
        try:
            waiter.get()
            granted = True
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
        finally:
            if timer is not None:
                timer.close()
            if not granted:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                else:  # a slot was handed to us as we timed out or were killed: pass it on
                    self.release()
        return granted

    def release(self) -> None:
        """Give the slot to the oldest waiter, or back to the gate. Never raises."""
        if self._waiters:
            self._run_callback(self._waiters.popleft().switch, None)
        else:
            self._free += 1

    @property
    def waiting(self) -> int:
        """Greenlets waiting for a slot."""
        return len(self._waiters)
