"""The keepalive machinery of leases: :class:`KeepAlive`, ONE greenlet per client.

It owns the scheduling and batching of lease refreshes and its counters
(:class:`KeepAliveStats`); the core builds it (without I/O) as ``core.keepalive``.
:mod:`geetcd.lease` owns the leases themselves (``Lease``, ``Session``,
grant/revoke/time-to-live, ``keepalive_of``) and re-exports every public name of this module.

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

:mod:`geetcd.lease` imports this module and never the other way round: the keepalive knows
a lease only through the named interface :class:`KeptLease` (its id, TTL, loss reason and
:class:`Schedule` record, and two callbacks), and a session through :class:`KeptSession`.
:class:`LeaseLoss` lives here for that reason (re-exported by :mod:`geetcd.lease`).
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import gevent
import gevent.event
import gevent.lock

from geetcd.config import ExponentialBackoff
from geetcd.errors import (
    ClientClosed,
    EtcdError,
    InvalidArgument,
    MalformedResponse,
)
from geetcd.keepalive_ws import KeepAliveChannels
from geetcd.protocol import lease as proto
from geetcd.protocol.errors import error_from_body

if TYPE_CHECKING:
    from geetcd._executor import Attempt
    from geetcd.cluster import Member
    from geetcd.core_api import CoreAPI as Core
    from geetcd.transport import RawResponse

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_CONCURRENCY",
    "KeepAlive",
    "KeepAliveStats",
    "KeptLease",
    "KeptSession",
    "LeaseLoss",
    "Schedule",
]

log = logging.getLogger(__name__)
_monotonic = time.monotonic
_INF = float("inf")

# IDs per keepalive POST, measured with loadtests/bench_keepalive.py on etcd 3.5.1. The
# gateway answers every ID it decoded before its first answer is flushed: always those in the
# first 512-byte read of the body (19 IDs of 19 digits), the rest only if it wins a race, so a
# bigger POST is often answered partially and its unanswered IDs are re-sent. The per-POST
# cost dominates anyway: 64 IDs per POST took ~1/2 the client CPU and ~1/3 the requests of 19
# per POST (10,000 leases: 4.9% vs 9.1% of a core; re-sends included).
DEFAULT_BATCH_SIZE = 64
# IDs per refresh on a keepalive WebSocket: every ID gets its own answer there, so the
# batch only bounds how long one refresh call waits for its answers.
WEBSOCKET_BATCH_SIZE = 512
# Keepalive POSTs in flight at once (per client).
DEFAULT_MAX_CONCURRENCY = 4
# Leases due within this window (capped at a quarter of their refresh interval) share a POST.
_MAX_WINDOW = 1.0
# Shortest read timeout of one keepalive attempt.
_MIN_ATTEMPT_TIMEOUT = 0.5
RETRY_BACKOFF = ExponentialBackoff(base=0.1, cap=1.0)
"""The pause before a failed refresh is tried again (the one jittered exponential backoff)."""
# Time given to each session's best-effort revoke when the client closes.
_CLOSE_REVOKE_TIMEOUT = 1.0


class LeaseLoss(enum.StrEnum):
    """Why a lease's ``lost`` event was set (``Lease.lost_reason``)."""

    EXPIRED = "expired"
    """etcd says the lease does not exist: it expired, or was revoked by someone else."""
    REVOKED = "revoked"
    """This client revoked it (``revoke()``, ``client.revoke_lease``, a closed Session)."""
    UNREACHABLE = "unreachable"
    """No refresh succeeded before its last known expiry (the cluster was unreachable)."""
    CLOSED = "closed"
    """The client was closed while the lease was kept alive; nothing refreshes it any more."""
    INHERITED = "inherited"
    """This process was forked from the one that keeps the lease alive: the parent still
    refreshes it, this process does not (and does not revoke it when its client closes)."""


@dataclass(slots=True)
class Schedule:
    """The keepalive's record of one lease (owned by the keepalive, carried by the lease).

    ``expires_at``: monotonic time before which the lease surely exists (a refresh's send
    time plus the TTL it got). ``kept``: the keepalive refreshes it. ``due``: the next
    refresh time; ``seq``: the heap entry that is current (-1: none, or in flight);
    ``failures``: refreshes failed in a row.
    """

    expires_at: float
    kept: bool = False
    due: float = _INF
    seq: int = -1
    failures: int = 0


class KeptLease(Protocol):
    """What the keepalive needs from a lease (:class:`geetcd.Lease` implements it)."""

    id: int
    ttl: int
    schedule: Schedule

    @property
    def lost_reason(self) -> LeaseLoss | None:
        """Why the lease was lost (None while it lives)."""

    def keepalive_refreshed(self, ttl: int, sent_at: float) -> None:
        """A refresh sent at ``sent_at`` got ``ttl`` seconds."""

    def keepalive_lost(self, reason: LeaseLoss, *, inline: bool = False) -> None:
        """The lease is gone for ``reason`` (callbacks run here when ``inline``)."""


class KeptSession(Protocol):
    """What the keepalive needs from a session: closing it (revoke, best effort)."""

    def close(self, *, timeout: float | None = None) -> None:
        """Stop the keepalive and revoke the lease; never raises an etcd error."""


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


class KeepAlive:
    """Refreshes every kept-alive lease of one client from one scheduler greenlet.

    ``batch_size`` (IDs per POST) and ``max_concurrency`` (POSTs in flight) may be tuned
    before the first lease is kept alive. ``stats`` counts POSTs, refreshes and losses.
    All greenlets belong to the core's group; :meth:`close` runs from ``client.close()``.
    Building it does no I/O and starts no greenlet (the scheduler starts with the first lease).
    """

    def __init__(
        self,
        core: Core,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        self._core = core
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.stats = KeepAliveStats()
        self._kept: dict[int, KeptLease] = {}
        self._heap: list[tuple[float, int, KeptLease]] = []
        self._seq = itertools.count()
        self._wake = gevent.event.Event()
        self._next_wake = _INF
        self._runner: gevent.Greenlet[..., Any] | None = None
        self._slots: gevent.lock.BoundedSemaphore | None = None
        self._sessions: dict[int, KeptSession] = {}
        self._closed = False
        # Keepalives on one WebSocket per member (Client(streams="websocket")).
        self.channels = KeepAliveChannels(core)
        core.on_close(self.close)

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

    def get(self, lease_id: int) -> KeptLease | None:
        """The kept-alive Lease with ``lease_id``, or None."""
        return self._kept.get(lease_id)

    def leases(self) -> list[KeptLease]:
        """The leases currently kept alive."""
        return list(self._kept.values())

    # ------------------------------------------------------------------ registration
    def add(self, lease: KeptLease) -> None:
        """Start refreshing ``lease`` (see :meth:`Lease.keep_alive`)."""
        if self._closed:
            raise ClientClosed()
        current = self._kept.get(lease.id)
        if current is lease:
            return
        if current is not None:
            raise InvalidArgument(f"lease {lease.id} is already kept alive by another Lease")
        self._kept[lease.id] = lease
        lease.schedule.kept = True
        if self._core.observers.active:
            self._core.observers.emit("lease_kept", 1)
        now = _monotonic()
        if lease.schedule.expires_at <= now:
            lease.schedule.expires_at = now + lease.ttl
            due = now
        else:
            due = self._next_due(lease, lease.schedule.expires_at - lease.ttl)
        self._schedule(lease, due)
        if self._runner is None or self._runner.dead:
            if self._slots is None:
                self._slots = gevent.lock.BoundedSemaphore(max(1, self.max_concurrency))
            self._runner = self._core.spawn(self._run)

    def discard(self, lease: KeptLease) -> None:
        """Stop refreshing ``lease`` (its heap entry becomes stale). No I/O."""
        if self._kept.get(lease.id) is lease:
            del self._kept[lease.id]
            if self._core.observers.active:
                self._core.observers.emit("lease_kept", -1)
        lease.schedule.kept = False
        lease.schedule.seq = -1

    @staticmethod
    def _next_due(lease: KeptLease, refreshed_at: float) -> float:
        # The latest refresh time; the lease may go up to one window earlier to share a POST.
        return refreshed_at + _interval(lease.ttl) + _window(lease.ttl) / 2

    def _schedule(self, lease: KeptLease, due: float) -> None:
        seq = next(self._seq)
        lease.schedule.due = due
        lease.schedule.seq = seq
        heapq.heappush(self._heap, (due, seq, lease))
        if due < self._next_wake:
            self._wake.set()

    # ------------------------------------------------------------------ scheduler
    def _run(self) -> None:
        while not self._closed and not self._core.forked:
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
            size = WEBSOCKET_BATCH_SIZE if self.channels.enabled else self.batch_size
            for batch in _batches(ready, max(1, size)):
                slots.acquire()
                if self.closed:
                    slots.release()
                    return
                self._core.spawn(self._send, batch)
            return
        self._next_wake = self._heap[0][0] if self._heap else _INF
        self._wake.clear()
        timeout = None if not self._heap else max(0.0, self._next_wake - _monotonic())
        self._wake.wait(timeout)

    def _collect(self, now: float) -> list[KeptLease]:
        """Pop the leases to refresh now: every lease due, plus those due within their window."""
        heap = self._heap
        if len(heap) > 2 * len(self._kept) + 1024:
            self._heap = heap = [
                e for e in heap if e[2].schedule.seq == e[1] and e[2].schedule.kept
            ]
            heapq.heapify(heap)
        ready: list[KeptLease] = []
        deferred: list[tuple[float, int, KeptLease]] = []
        horizon = now + _MAX_WINDOW
        while heap and heap[0][0] <= horizon:
            entry = heapq.heappop(heap)
            due, seq, lease = entry
            if seq != lease.schedule.seq or not lease.schedule.kept:
                continue
            if due - _window(lease.ttl) > now:
                deferred.append(entry)
                continue
            if now >= lease.schedule.expires_at:
                self._lose(lease, LeaseLoss.UNREACHABLE)
                continue
            lease.schedule.seq = -1  # in flight
            ready.append(lease)
        for entry in deferred:
            heapq.heappush(heap, entry)
        return ready

    def _lose(self, lease: KeptLease, reason: LeaseLoss) -> None:
        if lease.lost_reason is None:
            self.stats.lost += 1
        lease.keepalive_lost(reason)

    # ------------------------------------------------------------------ one batch
    def _send(self, batch: list[KeptLease]) -> None:
        slots = self._slots
        try:
            self._refresh(batch)
        except Exception:
            log.exception("keepalive of %d lease(s) failed unexpectedly", len(batch))
        finally:
            if slots is not None:
                slots.release()

    def _refresh(self, batch: list[KeptLease]) -> None:
        """Refresh ``batch`` (moving between members, re-sending unanswered IDs) until each
        lease is refreshed, found gone, past its expiry, or the client's timeout passed;
        reschedule every lease still kept alive.

        Each POST is one attempt of :meth:`Executor.run` (the client's one attempt loop:
        member pick, auth headers and the token-refresh rule, in-flight count, benching);
        the loop here only re-sends the IDs an answer left out and drops expired leases.
        """
        core = self._core
        executor = core.executor
        pending = {lease.id: lease for lease in batch if lease.schedule.kept}
        if not pending:
            return
        start = _monotonic()
        deadline = min(
            start + executor.timeout, max(le.schedule.expires_at for le in pending.values())
        )
        stats = self.stats

        def post(attempt: Attempt) -> None:
            member = attempt.member
            ids = list(pending)
            sent_at = _monotonic()
            stats.posts += 1
            stats.ids_sent += len(ids)
            if self.channels.enabled:
                try:
                    ttls = self.channels.refresh(attempt, ids)
                except EtcdError as exc:
                    stats.failed_posts += 1
                    self._observe_sent(member, len(ids), exc)
                    raise
                if ttls is not None:
                    self._apply(ttls, pending, sent_at)
                    self._observe_sent(member, len(ids), None)
                    return
            try:
                response = core.transport.request(
                    member.url,
                    "POST",
                    executor.api_prefix + proto.KEEPALIVE,
                    proto.keepalive_body(ids),
                    connect_timeout=attempt.connect_timeout,
                    read_timeout=attempt.read_timeout,
                    deadline=attempt.deadline,
                    headers=attempt.headers,
                    what="lease keepalive",
                    abandon=member.benched,
                )
                error = self._answered(response, member, pending, sent_at)
            except EtcdError as exc:
                stats.failed_posts += 1
                self._observe_sent(member, len(ids), exc)
                raise
            self._observe_sent(member, len(ids), error)
            if error is not None:
                stats.failed_posts += 1
                raise error

        failures = 0
        try:
            while pending and not self._closed:
                now = _monotonic()
                for lease in [le for le in pending.values() if now >= le.schedule.expires_at]:
                    del pending[lease.id]
                    self._lose(lease, LeaseLoss.UNREACHABLE)
                if not pending or now >= deadline:
                    break
                soonest = min(le.schedule.expires_at for le in pending.values())
                per_attempt = min(
                    executor.attempt_timeout, max(_MIN_ATTEMPT_TIMEOUT, (soonest - now) / 2)
                )
                try:
                    executor.run(
                        post,
                        what="lease keepalive",
                        idempotent=True,
                        deadline=min(deadline, soonest),
                        attempt_timeout=per_attempt,
                    )
                except ClientClosed:
                    break
                except EtcdError as exc:
                    if not exc.transient and not exc.waited_out:
                        log.warning("keepalive of %d lease(s) refused: %s", len(pending), exc)
                        break
                    failures += 1
                    log.debug("keepalive of %d lease(s) failed: %s", len(pending), exc)
                    pause = min(RETRY_BACKOFF.compute(failures), max(0.0, soonest - _monotonic()))
                    gevent.sleep(pause)
        finally:
            self._reschedule(batch, pending)

    def _observe_sent(self, member: Member, leases: int, error: EtcdError | None) -> None:
        if self._core.observers.active:
            self._core.observers.emit("keepalive_sent", member.url, leases, error)

    def _answered(
        self, response: RawResponse, member: Member, pending: dict[int, KeptLease], sent_at: float
    ) -> EtcdError | None:
        """Apply one keepalive answer to ``pending``; return the error to act on, if any."""
        if response.status != 200:
            return error_from_body(response.status, response.data, member.url)
        answer = proto.parse_keepalive(response.data, member.url)
        asked = len(pending)
        self._apply(answer.ttls, pending, sent_at)
        if answer.error is not None:
            return answer.error
        if pending and len(pending) == asked:
            return MalformedResponse(
                f"keepalive answer from {member.url} named none of the {asked} leases",
                member=member.url,
            )
        return None

    def _apply(self, ttls: dict[int, int], pending: dict[int, KeptLease], sent_at: float) -> None:
        """Apply answered TTLs (0: the lease is gone) to the leases in ``pending``."""
        stats = self.stats
        for lease_id, ttl in ttls.items():
            lease = pending.pop(lease_id, None)
            if lease is None:
                continue
            if ttl > 0:
                stats.refreshed += 1
                lease.ttl = ttl
                lease.keepalive_refreshed(ttl, sent_at)
            else:
                self._lose(lease, LeaseLoss.EXPIRED)
        stats.unanswered += len(pending)

    def _reschedule(self, batch: list[KeptLease], pending: dict[int, KeptLease]) -> None:
        now = _monotonic()
        for lease in batch:
            if not lease.schedule.kept or lease.lost_reason is not None:
                continue
            if lease.schedule.seq != -1:
                continue  # re-added (keep_alive) meanwhile: already scheduled
            if lease.id in pending:
                lease.schedule.failures += 1
                due = min(
                    now + RETRY_BACKOFF.compute(lease.schedule.failures), lease.schedule.expires_at
                )
            else:
                due = self._next_due(lease, lease.schedule.expires_at - lease.ttl)
            self._schedule(lease, due)

    def drop_inherited(self) -> None:
        """In a forked child (see :meth:`Core.start`): every lease kept alive by the parent
        is lost here (LeaseLoss.INHERITED) and forgotten with its session, without I/O; the
        scheduler starts afresh with the next kept-alive lease. Never raises."""
        runner, self._runner = self._runner, None
        if runner is not None and runner is not gevent.getcurrent():
            runner.kill(block=False)
        self._slots = None
        self.channels.close()
        self._sessions.clear()
        leases = list(self._kept.values())
        self._kept.clear()
        self._heap.clear()
        if leases and self._core.observers.active:
            self._core.observers.emit("lease_kept", -len(leases))
        for lease in leases:
            lease.keepalive_lost(LeaseLoss.INHERITED)

    # ------------------------------------------------------------------ sessions and close
    def add_session(self, session: KeptSession) -> None:
        self._sessions[id(session)] = session

    def remove_session(self, session: KeptSession) -> None:
        self._sessions.pop(id(session), None)

    def close(self) -> None:
        """Run by ``client.close()``: revoke open sessions (best effort, concurrently, about
        1 s), then set ``lost`` (CLOSED) on every other kept-alive lease, running their
        callbacks here. Never raises."""
        if self._closed:
            return
        sessions = list(self._sessions.values())
        if sessions:
            closers = [self._core.spawn(_close_session, s) for s in sessions]
            gevent.joinall(closers, timeout=_CLOSE_REVOKE_TIMEOUT + 0.5)
        self._closed = True
        self._wake.set()
        self.channels.close()
        for lease in list(self._kept.values()):
            lease.keepalive_lost(LeaseLoss.CLOSED, inline=True)
        self._kept.clear()
        self._heap.clear()


def _close_session(session: KeptSession) -> None:
    session.close(timeout=_CLOSE_REVOKE_TIMEOUT)


def _batches(items: list[KeptLease], size: int) -> Iterator[list[KeptLease]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
