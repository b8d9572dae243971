"""The one polling helper of the integration tests: wait for real state, never sleep-and-hope."""

from __future__ import annotations

import time
from collections.abc import Callable

import gevent


def wait_for(
    condition: Callable[[], object], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``condition()`` every 20 ms (cooperatively) until it is truthy; AssertionError
    naming ``what`` if it is still falsy after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        gevent.sleep(0.02)
