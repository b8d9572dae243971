"""Frozen value objects that configure a client: :class:`Retry`, backoff strategies, :class:`TLS`.

None of them is ever mutated: ``Retry.increment()`` returns a new object, backoff strategies
are stateless functions of the attempt number.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Protocol

__all__ = [
    "Backoff",
    "ConstantBackoff",
    "ExponentialBackoff",
    "NoBackoff",
    "Retry",
    "RetryExhausted",
    "TLS",
]


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
    was not applied). ``history`` holds the errors seen so far, oldest first.
    """

    attempts: int = 8
    backoff: Backoff = field(default_factory=ExponentialBackoff)
    retry_writes_when_safe: bool = True
    history: tuple[BaseException, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or isinstance(self.attempts, bool):
            raise TypeError(f"Retry.attempts must be an int, got {type(self.attempts).__name__}")
        if self.attempts < 0:
            raise ValueError(f"Retry.attempts must be >= 0, got {self.attempts}")

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
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("TLS.key_file needs TLS.cert_file")
