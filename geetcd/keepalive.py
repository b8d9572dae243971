"""The keepalive machinery of leases: :class:`KeepAlive`, ONE greenlet per client.

It owns the scheduling and batching of lease refreshes, its counters
(:class:`KeepAliveStats`) and :func:`keepalive_of`, which creates a client's keepalive on
first use. :mod:`geetcd.lease` owns the leases themselves (``Lease``, ``LeaseLoss``,
``Session``, grant/revoke/time-to-live) and re-exports every public name of this module.

A kept-alive lease (``lease.keep_alive()``, or inside ``with lease:``) is refreshed by the
client's keepalive, which batches the refreshes of many leases into few
``POST /v3/lease/keepalive`` requests (the gateway cannot hold a keepalive stream open over
HTTP/1.1, ETCD-PROTOCOL.md §3.3):

* each lease is refreshed about every TTL/3, scheduled by its own deadline; leases that are
  due within a short window of each other share a POST (``KeepAlive.batch_size`` IDs each,
  at most ``KeepAlive.max_concurrency`` POSTs in flight);
* the gateway may answer fewer lines than IDs; the unanswered IDs are sent again at once;
* a POST that fails moves to another member at once (keepalive is idempotent), benching the
  failed member in the shared cluster state; leases that could not be refreshed are retried
  soon (backoff 0.1 s doubling to 1 s), never later than their deadline;
* a lease is **lost** (``lease.lost`` set, callbacks run, no more refreshes) as soon as it is
  known to be gone: an answer without TTL (expired, or revoked elsewhere), a revoke, or no
  successful refresh before its last known expiry. That expiry is computed from the time the
  refresh was *sent*, so the client never believes a lease alive after the server let it go.

:mod:`geetcd.lease` imports this module, so this one imports :mod:`geetcd.lease` only for
type checking, and ``LeaseLoss`` inside the functions that set a loss reason.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import gevent.lock

from geetcd.errors import (
    ClusterUnavailable,
    EtcdError,
    InvalidArgument,
    InvalidAuthToken,
    MalformedResponse,
)
from geetcd.protocol import lease as proto
from geetcd.protocol.errors import error_from_body

if TYPE_CHECKING:
    from geetcd.client import Client
    from geetcd.cluster import Member
    from geetcd.lease import Lease, LeaseLoss, Session
    from geetcd.transport import RawResponse

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_CONCURRENCY",
    "KeepAlive",
    "KeepAliveStats",
    "keepalive_of",
]

# The keepalive has always logged as "geetcd.lease"; kept so that logging configuration (and
# log filters) written for that name still see its messages.
log = logging.getLogger("geetcd.lease")
_monotonic = time.monotonic
_INF = float("inf")

# IDs per keepalive POST, measured with loadtests/bench_keepalive.py on etcd 3.5.1. The
# gateway answers every ID it decoded before its first answer is flushed: always those in the
# first 512-byte read of the body (19 IDs of 19 digits), the rest only if it wins a race, so a
# bigger POST is often answered partially and its unanswered IDs are re-sent. The per-POST
# cost dominates anyway: 64 IDs per POST took ~1/2 the client CPU and ~1/3 the requests of 19
# per POST (10,000 leases: 4.9% vs 9.1% of a core; re-sends included).
DEFAULT_BATCH_SIZE = 64
# Keepalive POSTs in flight at once (per client).
DEFAULT_MAX_CONCURRENCY = 4
# Leases due within this window (capped at a quarter of their refresh interval) share a POST.
_MAX_WINDOW = 1.0
# Shortest read timeout of one keepalive attempt.
_MIN_ATTEMPT_TIMEOUT = 0.5
# Retry delays of a lease whose refresh failed: 0.1 s doubling up to 1 s, jittered.
_RETRY_BASE = 0.1
_RETRY_CAP = 1.0
# Time given to each session's best-effort revoke when the client closes.
_CLOSE_REVOKE_TIMEOUT = 1.0
_ATTR = "_geetcd_keepalive"


def _retry_delay(failures: int) -> float:
    delay = min(_RETRY_CAP, _RETRY_BASE * (2.0 ** min(max(0, failures - 1), 64)))
    return delay / 2 + random.uniform(0.0, delay / 2)


def _interval(ttl: int) -> float:
    return ttl / 3.0


def _window(ttl: int) -> float:
    return min(_MAX_WINDOW, _interval(ttl) / 4.0)


@dataclass(slots=True)
class KeepAliveStats:
    """Counters of one client's keepalive greenlet (for monitoring and the benchmark)."""

    posts: int = 0
    """keepalive POSTs sent (re-sends of unanswered IDs included)."""
    ids_sent: int = 0
    """lease IDs sent, over all POSTs."""
    unanswered: int = 0
    """IDs sent that got no answer line (sent again)."""
    refreshed: int = 0
    """successful lease refreshes."""
    failed_posts: int = 0
    """POSTs that failed (connection, timeout, error answer)."""
    lost: int = 0
    """leases found gone or unreachable."""


def keepalive_of(client: Client) -> KeepAlive:
    """The keepalive of ``client``, created on first use (its close hook is registered)."""
    keeper: KeepAlive | None = getattr(client, _ATTR, None)
    if keeper is None:
        keeper = KeepAlive(client)
        setattr(client, _ATTR, keeper)
        client.core.on_close(keeper.close)
    return keeper


class KeepAlive:
    """Refreshes every kept-alive lease of one client from one scheduler greenlet.

    ``batch_size`` (IDs per POST) and ``max_concurrency`` (POSTs in flight) may be tuned
    before the first lease is kept alive. ``stats`` counts POSTs, refreshes and losses.
    All greenlets belong to the client's group; :meth:`close` runs from ``client.close()``.
    """

    def __init__(
        self,
        client: Client,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        self._client = client
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.stats = KeepAliveStats()
        self._kept: dict[int, Lease] = {}
        self._heap: list[tuple[float, int, Lease]] = []
        self._seq = itertools.count()
        self._wake = gevent.event.Event()
        self._next_wake = _INF
        self._runner: gevent.Greenlet[..., Any] | None = None
        self._slots: gevent.lock.BoundedSemaphore | None = None
        self._sessions: dict[int, Session] = {}
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._runner else "idle"
        return (
            f"<KeepAlive {state} leases={len(self._kept)} batch_size={self.batch_size} "
            f"posts={self.stats.posts} refreshed={self.stats.refreshed} lost={self.stats.lost}>"
        )

    @property
    def closed(self) -> bool:
        """True once the client closed this keepalive."""
        return self._closed

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, lease_id: int) -> Lease | None:
        """The kept-alive Lease with ``lease_id``, or None."""
        return self._kept.get(lease_id)

    def leases(self) -> list[Lease]:
        """The leases currently kept alive."""
        return list(self._kept.values())

    # ------------------------------------------------------------------ registration
    def add(self, lease: Lease) -> None:
        """Start refreshing ``lease`` (see :meth:`Lease.keep_alive`)."""
        if self._closed:
            raise ClusterUnavailable("client is closed", errors={})
        current = self._kept.get(lease.id)
        if current is lease:
            return
        if current is not None:
            raise InvalidArgument(f"lease {lease.id} is already kept alive by another Lease")
        self._kept[lease.id] = lease
        lease._kept = True
        now = _monotonic()
        if lease._expires_at <= now:
            lease._expires_at = now + lease.ttl
            due = now
        else:
            due = self._next_due(lease, lease._expires_at - lease.ttl)
        self._schedule(lease, due)
        if self._runner is None or self._runner.dead:
            if self._slots is None:
                self._slots = gevent.lock.BoundedSemaphore(max(1, self.max_concurrency))
            self._runner = self._client.spawn(self._run)

    def discard(self, lease: Lease) -> None:
        """Stop refreshing ``lease`` (its heap entry becomes stale). No I/O."""
        if self._kept.get(lease.id) is lease:
            del self._kept[lease.id]
        lease._kept = False
        lease._seq = -1

    @staticmethod
    def _next_due(lease: Lease, refreshed_at: float) -> float:
        # The latest refresh time; the lease may go up to one window earlier to share a POST.
        return refreshed_at + _interval(lease.ttl) + _window(lease.ttl) / 2

    def _schedule(self, lease: Lease, due: float) -> None:
        seq = next(self._seq)
        lease._due = due
        lease._seq = seq
        heapq.heappush(self._heap, (due, seq, lease))
        if due < self._next_wake:
            self._wake.set()

    # ------------------------------------------------------------------ scheduler
    def _run(self) -> None:
        while not self._closed:
            try:
                self._run_once()
            except Exception:
                # A bug here must not silently stop every refresh: log it and go on.
                log.exception("keepalive scheduler error; continuing")
                gevent.sleep(0.1)

    def _run_once(self) -> None:
        """Dispatch the leases due now, or wait until the next one is due (or a wake-up)."""
        slots = self._slots
        assert slots is not None
        ready = self._collect(_monotonic())
        if ready:
            for batch in _batches(ready, max(1, self.batch_size)):
                slots.acquire()
                if self.closed:
                    slots.release()
                    return
                self._client.spawn(self._send, batch)
            return
        self._next_wake = self._heap[0][0] if self._heap else _INF
        self._wake.clear()
        timeout = None if not self._heap else max(0.0, self._next_wake - _monotonic())
        self._wake.wait(timeout)

    def _collect(self, now: float) -> list[Lease]:
        """Pop the leases to refresh now: every lease due, plus those due within their window."""
        from geetcd.lease import LeaseLoss  # runtime import: geetcd.lease imports this module

        heap = self._heap
        if len(heap) > 2 * len(self._kept) + 1024:
            self._heap = heap = [e for e in heap if e[2]._seq == e[1] and e[2]._kept]
            heapq.heapify(heap)
        ready: list[Lease] = []
        deferred: list[tuple[float, int, Lease]] = []
        horizon = now + _MAX_WINDOW
        while heap and heap[0][0] <= horizon:
            entry = heapq.heappop(heap)
            due, seq, lease = entry
            if seq != lease._seq or not lease._kept:
                continue
            if due - _window(lease.ttl) > now:
                deferred.append(entry)
                continue
            if now >= lease._expires_at:
                self._lose(lease, LeaseLoss.UNREACHABLE)
                continue
            lease._seq = -1  # in flight
            ready.append(lease)
        for entry in deferred:
            heapq.heappush(heap, entry)
        return ready

    def _lose(self, lease: Lease, reason: LeaseLoss) -> None:
        if lease.lost_reason is None:
            self.stats.lost += 1
        lease._set_lost(reason)

    # ------------------------------------------------------------------ one batch
    def _send(self, batch: list[Lease]) -> None:
        slots = self._slots
        try:
            self._refresh(batch)
        except Exception:
            log.exception("keepalive of %d lease(s) failed unexpectedly", len(batch))
        finally:
            if slots is not None:
                slots.release()

    def _refresh(self, batch: list[Lease]) -> None:
        """Refresh ``batch`` (moving between members, re-sending unanswered IDs) until each
        lease is refreshed, found gone, past its expiry, or the client's timeout passed;
        reschedule every lease still kept alive."""
        from geetcd.lease import LeaseLoss  # runtime import: geetcd.lease imports this module

        client = self._client
        executor = client.core.executor
        cluster = client.core.cluster
        transport = client.core.transport
        pending = {lease.id: lease for lease in batch if lease._kept}
        if not pending:
            return
        start = _monotonic()
        deadline = min(start + executor.timeout, max(le._expires_at for le in pending.values()))
        tried: list[Member] = []
        auth_retried = False
        failures = 0
        path = executor.api_prefix + proto.KEEPALIVE
        try:
            while pending and not self._closed:
                now = _monotonic()
                for lease in [le for le in pending.values() if now >= le._expires_at]:
                    del pending[lease.id]
                    self._lose(lease, LeaseLoss.UNREACHABLE)
                if not pending or now >= deadline:
                    break
                soonest = min(le._expires_at for le in pending.values())
                pick_deadline = min(deadline, soonest)
                try:
                    member = cluster.pick(pick_deadline, tried)
                except ClusterUnavailable:
                    if _monotonic() < pick_deadline - 0.01:
                        break  # client closed
                    continue
                if failures and len(tried) >= len(cluster.members):
                    gevent.sleep(min(_retry_delay(failures), max(0.0, soonest - _monotonic())))
                remaining = soonest - _monotonic()
                attempt = min(executor.attempt_timeout, max(_MIN_ATTEMPT_TIMEOUT, remaining / 2))
                try:
                    headers = executor.headers(deadline)
                except EtcdError as exc:
                    log.warning("keepalive: cannot get auth headers: %s", exc)
                    break
                ids = list(pending)
                sent_at = _monotonic()
                error: EtcdError | None = None
                self.stats.posts += 1
                self.stats.ids_sent += len(ids)
                member.inflight += 1
                try:
                    response = transport.request(
                        member.url,
                        "POST",
                        path,
                        proto.keepalive_body(ids),
                        connect_timeout=min(executor.connect_timeout, attempt),
                        read_timeout=attempt,
                        headers=headers,
                        what="lease keepalive",
                    )
                except EtcdError as exc:
                    error = exc
                finally:
                    member.inflight -= 1
                if error is None:
                    error = self._answered(response, member, pending, sent_at)
                if error is None:
                    cluster.mark_success(member, _monotonic() - sent_at)
                    continue
                self.stats.failed_posts += 1
                failures += 1
                if error.transient:
                    log.debug("keepalive POST to %s failed: %s", member.url, error)
                    cluster.mark_failed(member, error)
                    tried.append(member)
                    continue
                if (
                    isinstance(error, InvalidAuthToken)
                    and executor.auth is not None
                    and not auth_retried
                ):
                    auth_retried = True
                    executor.auth.invalidate(headers)
                    continue
                log.warning(
                    "keepalive of %d lease(s) refused by %s: %s", len(pending), member.url, error
                )
                break
        finally:
            self._reschedule(batch, pending)

    def _answered(
        self, response: RawResponse, member: Member, pending: dict[int, Lease], sent_at: float
    ) -> EtcdError | None:
        """Apply one keepalive answer to ``pending``; return the error to act on, if any."""
        from geetcd.lease import LeaseLoss  # runtime import: geetcd.lease imports this module

        if response.status != 200:
            return error_from_body(response.status, response.data, member.url)
        answer = proto.parse_keepalive(response.data, member.url)
        stats = self.stats
        asked = len(pending)
        for lease_id, ttl in answer.ttls.items():
            lease = pending.pop(lease_id, None)
            if lease is None:
                continue
            if ttl > 0:
                stats.refreshed += 1
                lease.ttl = ttl
                lease._refreshed(ttl, sent_at)
            else:
                self._lose(lease, LeaseLoss.EXPIRED)
        stats.unanswered += len(pending)
        if answer.error is not None:
            return answer.error
        if pending and len(pending) == asked:
            return MalformedResponse(
                f"keepalive answer from {member.url} named none of the {asked} leases",
                member=member.url,
            )
        return None

    def _reschedule(self, batch: list[Lease], pending: dict[int, Lease]) -> None:
        now = _monotonic()
        for lease in batch:
            if not lease._kept or lease.lost_reason is not None:
                continue
            if lease._seq != -1:
                continue  # re-added (keep_alive) meanwhile: already scheduled
            if lease.id in pending:
                lease._failures += 1
                due = min(now + _retry_delay(lease._failures), lease._expires_at)
            else:
                due = self._next_due(lease, lease._expires_at - lease.ttl)
            self._schedule(lease, due)

    # ------------------------------------------------------------------ sessions and close
    def add_session(self, session: Session) -> None:
        self._sessions[id(session)] = session

    def remove_session(self, session: Session) -> None:
        self._sessions.pop(id(session), None)

    def close(self) -> None:
        """Run by ``client.close()``: revoke open sessions (best effort, concurrently, about
        1 s), then set ``lost`` (CLOSED) on every other kept-alive lease, running their
        callbacks here. Never raises."""
        from geetcd.lease import LeaseLoss  # runtime import: geetcd.lease imports this module

        if self._closed:
            return
        sessions = list(self._sessions.values())
        if sessions:
            closers = [self._client.spawn(s._close_on_exit) for s in sessions]
            gevent.joinall(closers, timeout=_CLOSE_REVOKE_TIMEOUT + 0.5)
        self._closed = True
        self._wake.set()
        for lease in list(self._kept.values()):
            lease._set_lost(LeaseLoss.CLOSED, inline=True)
        self._kept.clear()
        self._heap.clear()


def _batches(items: list[Lease], size: int) -> Iterator[list[Lease]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
