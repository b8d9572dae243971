"""Frozen value objects that configure a client: :class:`Retry`, backoff strategies, :class:`TLS`.

None of them is ever mutated: ``Retry.increment()`` returns a new object, backoff strategies
are stateless functions of the attempt number.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Protocol

from geetcd.errors import InvalidArgument, InvalidType

__all__ = [
    "Backoff",
    "ConstantBackoff",
    "ExponentialBackoff",
    "NoBackoff",
    "Retry",
    "RetryExhausted",
    "TLS",
    "check_duration",
]


def check_duration(value: object, what: str, *, allow_zero: bool = False) -> float:
    """``value`` as a finite number of seconds, > 0 (or >= 0 with ``allow_zero``).

    The one validation of every duration geetcd takes (timeouts, intervals, delays).
    Raises InvalidType (also a TypeError) for a non-number, ``bool`` included, and
    InvalidArgument (also a ValueError) for NaN, an infinity or a value out of range:
    a NaN deadline would otherwise pass every ``<=`` test and block the event loop forever.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidType(f"{what} must be a number of seconds, got {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds):
        raise InvalidArgument(f"{what} must be a finite number of seconds, got {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidArgument(f"{what} must be {bound}, got {value!r}")
    return seconds


class Backoff(Protocol):
    """A stateless backoff strategy: seconds to wait before retry number ``attempt`` (1-based)."""

    def compute(self, attempt: int) -> float: ...


@dataclass(frozen=True, slots=True)
class NoBackoff:
    """Never waits."""

    def compute(self, attempt: int) -> float:
        """Always returns 0.0."""
        return 0.0


@dataclass(frozen=True, slots=True)
class ConstantBackoff:
    """Waits ``delay`` seconds before every retry."""

    delay: float = 0.05

    def __post_init__(self) -> None:
        check_duration(self.delay, "ConstantBackoff.delay", allow_zero=True)

    def compute(self, attempt: int) -> float:
        """Returns ``delay``."""
        return self.delay


@dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    """``base * 2**(attempt-1)`` capped at ``cap``, with "equal jitter" (half fixed, half random).

    Jitter spreads the retries of many greenlets that failed at the same moment.
    """

    base: float = 0.025
    cap: float = 2.0
    jitter: bool = True

    def __post_init__(self) -> None:
        check_duration(self.base, "ExponentialBackoff.base", allow_zero=True)
        check_duration(self.cap, "ExponentialBackoff.cap", allow_zero=True)

    def compute(self, attempt: int) -> float:
        """Returns a delay in ``[d/2, d]`` (or exactly ``d`` without jitter), ``d <= cap``."""
        exponent = min(max(0, attempt - 1), 64)  # 2**64 * base is past any sane cap
        delay = float(min(self.cap, self.base * (2**exponent)))
        if not self.jitter:
            return delay
        return delay / 2 + random.uniform(0.0, delay / 2)


class RetryExhausted(Exception):
    """Internal signal from :meth:`Retry.increment`; the request loop re-raises the last error."""


@dataclass(frozen=True, slots=True)
class Retry:
    """How many times one call may be re-attempted, and how long to wait in between.

    ``attempts`` counts retries after the first try (0 = try once). Reads are retried on any
    transient error; writes only on errors whose ``retry_safe`` is true (the request surely
    was not applied), and only while ``retry_writes_when_safe`` is true: with False a write
    is tried once, and such an error is raised as is (the write surely did not happen).
    ``history`` holds the errors seen so far, oldest first.

    Raises InvalidType / InvalidArgument (geetcd errors, also TypeError / ValueError) for a
    non-int or negative ``attempts``, a non-bool ``retry_writes_when_safe`` or a ``backoff``
    without ``compute``.
    """

    attempts: int = 8
    backoff: Backoff = field(default_factory=ExponentialBackoff)
    retry_writes_when_safe: bool = True
    history: tuple[BaseException, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or isinstance(self.attempts, bool):
            raise InvalidType(f"Retry.attempts must be an int, got {type(self.attempts).__name__}")
        if self.attempts < 0:
            raise InvalidArgument(f"Retry.attempts must be >= 0, got {self.attempts}")
        if not isinstance(self.retry_writes_when_safe, bool):
            raise InvalidType("Retry.retry_writes_when_safe must be a bool")
        if not callable(getattr(self.backoff, "compute", None)):
            raise InvalidType(f"Retry.backoff must have compute(attempt), got {self.backoff!r}")

    @property
    def count(self) -> int:
        """Retries already used."""
        return len(self.history)

    def increment(self, error: BaseException) -> Retry:
        """Return a new Retry with ``error`` appended; raises RetryExhausted when none are left."""
        if len(self.history) >= self.attempts:
            raise RetryExhausted(f"{self.attempts} retries used")
        return replace(self, history=(*self.history, error))

    def delay(self) -> float:
        """Seconds to wait before the next retry, from the backoff strategy."""
        return self.backoff.compute(len(self.history))

    @classmethod
    def none(cls) -> Retry:
        """A Retry that never retries."""
        return cls(attempts=0, backoff=NoBackoff())


@dataclass(frozen=True, slots=True)
class TLS:
    """TLS settings for ``https://`` endpoints.

    Verification is on by default: the system trust store is used when ``ca_file`` is None.
    ``cert_file``/``key_file`` give a client certificate (etcd ``--client-cert-auth``).
    ``server_hostname`` overrides the name checked against the certificate.
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_hostname: str | None = None
    verify: bool = True

    def __post_init__(self) -> None:
        for name in ("ca_file", "cert_file", "key_file", "server_hostname"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise InvalidType(f"TLS.{name} must be a str path, got {type(value).__name__}")
        if not isinstance(self.verify, bool):
            raise InvalidType(f"TLS.verify must be a bool, got {type(self.verify).__name__}")
        if self.key_file is not None and self.cert_file is None:
            raise InvalidArgument("TLS.key_file needs TLS.cert_file")
