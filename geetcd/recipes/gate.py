"""A strictly FIFO gate between the greenlets of one process (no I/O).

One etcd waiter key per lock or election name per client: the greenlets that want the same
name queue here first, and only the gate's holder has a key in etcd. The gate hands itself
over directly to the first waiter on :meth:`FifoGate.release`, so a releasing greenlet
that immediately asks again queues behind the others (no barging).
"""

from __future__ import annotations

import time

from geetcd.config import check_duration
from geetcd.fifo import FifoGate as OneFifoGate

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


class FifoGate(OneFifoGate):
    """The gate in front of one lock or election name: the one FIFO gate of geetcd
    (:class:`geetcd.fifo.FifoGate`) with one slot, whose :meth:`acquire` takes a monotonic
    ``deadline`` (None: forever) instead of a timeout."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(1)

    def acquire(self, deadline: float | None = None) -> bool:
        """Wait for the gate until ``deadline`` (monotonic; None: forever). True if held."""
        if self.try_acquire():
            return True
        left = remaining(deadline)
        if self.closed or left == 0.0:
            return False
        return super().acquire(left)
