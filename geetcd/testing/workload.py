"""A mixed read/write workload that records every call and verifies acknowledged writes.

Used by the fault-injection tests and the failover benchmark, and usable in your own chaos
tests::

    load = MixedWorkload(client, greenlets=64).start()
    gevent.sleep(2); member.kill(); gevent.sleep(5)
    load.stop()
    report = load.report(since=fault_time)      # gaps, errors by type, stuck calls
    load.verify()                               # raises AssertionError on a lost/doubled write

Each greenlet owns its keys and writes increasing counters to them, one at a time, so the
final state is checkable:

* no write applied twice: etcd's ``version`` of a key (number of puts applied) lies between
  the number of acknowledged puts and that plus the number of puts whose outcome was unknown;
* no acknowledged write lost: reading the key at the revision its last acknowledged put
  returned gives that put's value;
* the stored value is the last acknowledged one or one whose outcome was unknown. etcd may
  apply an unknown-outcome write LATE (a proposal forwarded to a hung leader is committed
  after the leader recovers), even after later acknowledged writes: such late writes are
  counted in ``late_unknown_writes``, not treated as errors — this is exactly why geetcd
  raises OutcomeUnknown instead of retrying.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import gevent
import gevent.pool

from geetcd.client import Client
from geetcd.errors import EtcdError, OutcomeUnknown

__all__ = ["CallRecord", "MixedWorkload", "WorkloadReport"]


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call: operation, monotonic start/end, and the error class name (None if ok)."""

    op: str
    start: float
    end: float
    error: str | None


@dataclass(frozen=True, slots=True)
class WorkloadReport:
    """What callers saw in a time window."""

    calls: int
    ok: int
    errors: dict[str, int]
    read_errors: dict[str, int]
    write_errors: dict[str, int]
    max_gap: float
    max_read_gap: float
    max_write_gap: float
    slowest_call: float
    stuck_calls: int

    def summary(self) -> str:
        """One line for logs and benchmark tables."""
        return (
            f"calls={self.calls} ok={self.ok} max_gap={self.max_gap:.3f}s "
            f"read_gap={self.max_read_gap:.3f}s write_gap={self.max_write_gap:.3f}s "
            f"read_errors={dict(self.read_errors)} write_errors={dict(self.write_errors)} "
            f"slowest={self.slowest_call:.2f}s stuck={self.stuck_calls}"
        )


@dataclass
class _KeyBook:
    acked: int = 0
    unknown: int = 0
    last_acked_value: int = 0
    last_acked_revision: int = 0
    unknown_values: list[int] = field(default_factory=list)
    next_value: int = 1


def _max_gap(ends: list[float], since: float, until: float) -> float:
    points = sorted(e for e in ends if since <= e <= until)
    if not points:
        return until - since
    edges = [since, *points, until]
    return max(b - a for a, b in itertools.pairwise(edges))


class MixedWorkload:
    """``greenlets`` workers doing reads (``read_ratio``) and writes on their own keys.

    Every call is bounded by ``timeout`` (passed to the client per call); a call that takes
    longer than ``timeout + slack`` is counted as stuck. Loops stop by themselves after
    ``max_seconds`` even if :meth:`stop` is never called.
    """

    def __init__(
        self,
        client: Client,
        *,
        greenlets: int = 64,
        keys_per_greenlet: int = 2,
        read_ratio: float = 0.5,
        timeout: float = 5.0,
        prefix: str = "/workload/",
        max_seconds: float = 120.0,
        pause: float = 0.0,
    ) -> None:
        self.client = client
        self.greenlets = greenlets
        self.keys_per_greenlet = keys_per_greenlet
        self.read_ratio = read_ratio
        self.timeout = timeout
        self.prefix = prefix
        self.max_seconds = max_seconds
        self.pause = pause
        self.records: list[CallRecord] = []
        self.books: dict[str, _KeyBook] = {}
        self.late_unknown_writes = 0
        self._group = gevent.pool.Group()
        self._stopping = False

    def start(self) -> MixedWorkload:
        """Spawn the workers and return at once."""
        for worker in range(self.greenlets):
            self._group.spawn(self._run, worker)
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Ask the workers to finish their current call and wait for them."""
        self._stopping = True
        self._group.join(timeout=timeout if timeout is not None else self.timeout + 5.0)
        self._group.kill(block=True, timeout=2.0)

    def _run(self, worker: int) -> None:
        rng = random.Random(worker)
        keys = [f"{self.prefix}w{worker}/k{i}" for i in range(self.keys_per_greenlet)]
        for key in keys:
            self.books[key] = _KeyBook()
        give_up = time.monotonic() + self.max_seconds
        while not self._stopping and time.monotonic() < give_up:
            key = rng.choice(keys)
            if rng.random() < self.read_ratio:
                self._read(key)
            else:
                self._write(key)
            if self.pause:
                gevent.sleep(self.pause)
            else:
                gevent.idle()

    def _read(self, key: str) -> None:
        started = time.monotonic()
        error = None
        try:
            self.client.get(key, timeout=self.timeout)
        except EtcdError as exc:
            error = type(exc).__name__
        self.records.append(CallRecord("read", started, time.monotonic(), error))

    def _write(self, key: str) -> None:
        book = self.books[key]
        value = book.next_value
        book.next_value += 1
        started = time.monotonic()
        error = None
        try:
            response = self.client.put(key, str(value), timeout=self.timeout)
            book.acked += 1
            book.last_acked_value = value
            book.last_acked_revision = response.header.revision
        except OutcomeUnknown:
            error = "OutcomeUnknown"
            book.unknown += 1
            book.unknown_values.append(value)
        except EtcdError as exc:
            error = type(exc).__name__  # surely not applied (retry-safe error exhausted)
        self.records.append(CallRecord("write", started, time.monotonic(), error))

    def report(self, since: float = 0.0, until: float | None = None) -> WorkloadReport:
        """Gaps and errors for calls that ended in ``[since, until]`` (monotonic times)."""
        until = until if until is not None else time.monotonic()
        window = [r for r in self.records if since <= r.end <= until]
        ok_ends = [r.end for r in window if r.error is None]
        read_ends = [r.end for r in window if r.error is None and r.op == "read"]
        write_ends = [r.end for r in window if r.error is None and r.op == "write"]
        errors = Counter(r.error for r in window if r.error)
        read_errors = Counter(r.error for r in window if r.error and r.op == "read")
        write_errors = Counter(r.error for r in window if r.error and r.op == "write")
        durations = [r.end - r.start for r in window]
        return WorkloadReport(
            calls=len(window),
            ok=len(ok_ends),
            errors=dict(errors),
            read_errors=dict(read_errors),
            write_errors=dict(write_errors),
            max_gap=_max_gap(ok_ends, since, until),
            max_read_gap=_max_gap(read_ends, since, until) if self.read_ratio > 0 else 0.0,
            max_write_gap=_max_gap(write_ends, since, until) if self.read_ratio < 1 else 0.0,
            slowest_call=max(durations, default=0.0),
            stuck_calls=sum(1 for d in durations if d > self.timeout + 1.0),
        )

    def verify(self, client: Client | None = None) -> int:
        """Check every key against its book; returns the number of keys checked.

        Raises AssertionError naming the key when an acknowledged write is missing or a
        write was applied more often than it was sent.
        """
        reader = client or self.client
        checked = 0
        for key, book in self.books.items():
            kv = reader.get(key, timeout=30.0)
            version = kv.version if kv is not None else 0
            stored = int(kv.value) if kv is not None else 0
            if not book.acked <= version <= book.acked + book.unknown:
                raise AssertionError(
                    f"{key}: {version} puts applied, but {book.acked} acknowledged and "
                    f"{book.unknown} unknown were sent"
                )
            if stored != book.last_acked_value and stored not in book.unknown_values:
                raise AssertionError(
                    f"{key}: holds {stored}, last acknowledged {book.last_acked_value}, "
                    f"unknown {book.unknown_values}"
                )
            if book.last_acked_revision:
                at = reader.get(key, revision=book.last_acked_revision, timeout=30.0)
                if at is None or int(at.value) != book.last_acked_value:
                    raise AssertionError(
                        f"{key}: acknowledged {book.last_acked_value} at revision "
                        f"{book.last_acked_revision} not found there ({at!r})"
                    )
            if stored < book.last_acked_value:
                self.late_unknown_writes += 1
            checked += 1
        return checked
