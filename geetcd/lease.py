"""Leases: :class:`Lease`, the per-client :class:`KeepAlive` greenlet, and :class:`Session`.

A lease is granted with ``client.lease(ttl)``. Kept alive (``lease.keep_alive()``, or inside
``with lease:``), it is refreshed by ONE greenlet per client, which batches the refreshes of
many leases into few ``POST /v3/lease/keepalive`` requests (the gateway cannot hold a
keepalive stream open over HTTP/1.1, ETCD-PROTOCOL.md §3.3):

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

Lease grant is not idempotent: a grant whose answer is lost raises OutcomeUnknown, except
with an explicit ``id`` (see :func:`grant`).
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
import random
import time
from collections.abc import Callable, Iterator
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
    LeaseExists,
    LeaseNotFound,
    MalformedResponse,
    OutcomeUnknown,
)
from geetcd.models import LeaseInfo
from geetcd.protocol import lease as proto
from geetcd.protocol.errors import error_from_body
from geetcd.txn import lease_id as _lease_id

if TYPE_CHECKING:
    from geetcd.client import Client
    from geetcd.cluster import Member
    from geetcd.transport import RawResponse

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_CONCURRENCY",
    "KeepAlive",
    "KeepAliveStats",
    "Lease",
    "LeaseLoss",
    "Session",
    "grant",
    "keepalive_of",
    "list_leases",
    "revoke",
    "time_to_live",
]

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


def _retry_delay(failures: int) -> float:
    delay = min(_RETRY_CAP, _RETRY_BASE * (2.0 ** min(max(0, failures - 1), 64)))
    return delay / 2 + random.uniform(0.0, delay / 2)


def _interval(ttl: int) -> float:
    return ttl / 3.0


def _window(ttl: int) -> float:
    return min(_MAX_WINDOW, _interval(ttl) / 4.0)


class Lease:
    """A granted lease. Create it with ``client.lease(ttl)``; never construct it directly.

    Attributes and properties never do I/O: ``id``, ``ttl`` (the TTL etcd granted, which
    may be higher than asked: etcd's minimum is 2 s), ``lost`` (a ``gevent.event.Event``),
    ``lost_reason`` (a :class:`LeaseLoss` or None), ``kept_alive``, ``remaining``.

    ``lost`` is set as soon as the lease is known to be gone (see :class:`LeaseLoss`). For a
    lease that is not kept alive there is no timer: ``lost`` is then set only when a call on
    it (refresh, time_to_live, revoke) finds it gone.

    As a context manager it is kept alive inside the block and revoked on exit (best effort:
    an error of that revoke is logged, the lease then expires after its TTL).
    """

    __slots__ = (
        "__weakref__",
        "_callbacks",
        "_client",
        "_due",
        "_expires_at",
        "_failures",
        "_kept",
        "_seq",
        "id",
        "lost",
        "lost_reason",
        "ttl",
    )

    def __init__(self, client: Client, lease_id: int, ttl: int, sent_at: float) -> None:
        self._client = client
        self.id = lease_id
        self.ttl = ttl
        self.lost = gevent.event.Event()
        self.lost_reason: LeaseLoss | None = None
        self._callbacks: list[Callable[[Lease], None]] = []
        # Monotonic time before which the lease surely still exists (send time + TTL).
        self._expires_at = sent_at + ttl
        self._kept = False
        self._failures = 0
        self._due = _INF
        self._seq = -1

    def __repr__(self) -> str:
        if self.lost_reason is not None:
            state = f"lost({self.lost_reason.value})"
        else:
            state = f"remaining~{self.remaining:.1f}s"
            if self._kept:
                state = "kept-alive " + state
        return f"<Lease id={self.id} ({self.id:x}) ttl={self.ttl} {state}>"

    # ------------------------------------------------------------------ state (no I/O)
    @property
    def kept_alive(self) -> bool:
        """True while the client's keepalive greenlet refreshes this lease."""
        return self._kept

    @property
    def remaining(self) -> float:
        """Seconds the lease surely still lives, from this client's last successful refresh
        (0.0 when that time has passed or the lease is lost). A local estimate, no I/O."""
        if self.lost_reason is not None:
            return 0.0
        return max(0.0, self._expires_at - _monotonic())

    def on_lost(self, callback: Callable[[Lease], None]) -> None:
        """Call ``callback(lease)`` once when ``lost`` is set (at once if it already is).

        Callbacks run one after the other in a greenlet of the client; an exception is
        logged with its traceback and does not stop the next callback.
        """
        if not callable(callback):
            raise InvalidArgument(f"on_lost needs a callable, got {callback!r}")
        if self.lost_reason is not None:
            self._client.spawn(_run_callbacks, self, [callback])
            return
        self._callbacks.append(callback)

    # ------------------------------------------------------------------ keepalive
    def keep_alive(self) -> Lease:
        """Have the client's keepalive greenlet refresh this lease about every TTL/3.

        Returns the lease. Idempotent. Raises LeaseNotFound if the lease is already lost.
        If this client's last known expiry has passed, the lease is refreshed at once and
        given one TTL for that refresh to succeed.
        """
        if self.lost_reason is not None:
            raise LeaseNotFound(f"lease {self.id} is lost ({self.lost_reason.value})")
        keepalive_of(self._client).add(self)
        return self

    def stop_keep_alive(self) -> None:
        """Stop refreshing this lease (it then expires after its TTL). No I/O; idempotent."""
        keeper: KeepAlive | None = getattr(self._client, _ATTR, None)
        if keeper is not None:
            keeper.discard(self)
        self._kept = False

    # ------------------------------------------------------------------ calls
    def refresh(self, *, timeout: float | None = None) -> int:
        """Send one keepalive now; return the lease's new TTL.

        Retried on any member until ``timeout``. Raises LeaseNotFound (and sets ``lost``)
        if the lease no longer exists.
        """
        client = self._client
        executor = client._executor
        deadline = executor.deadline(timeout)
        body = proto.keepalive_body((self.id,))
        sent_at = _monotonic()

        def interpret(response: RawResponse, member: Member) -> int:
            if response.status != 200:
                raise error_from_body(response.status, response.data, member.url)
            answer = proto.parse_keepalive(response.data, member.url)
            if self.id in answer.ttls:
                return answer.ttls[self.id]
            if answer.error is not None:
                raise answer.error
            raise MalformedResponse(
                f"keepalive of lease {self.id} was not answered", member=member.url
            )

        ttl: int = executor.execute(
            "POST",
            proto.KEEPALIVE,
            body,
            interpret,
            idempotent=True,
            deadline=deadline,
            v3=True,
        )
        if ttl <= 0:
            self._set_lost(LeaseLoss.EXPIRED)
            raise LeaseNotFound(f"lease {self.id} not found (expired or revoked)")
        self._refreshed(ttl, sent_at)
        return ttl

    def time_to_live(self, keys: bool = False, *, timeout: float | None = None) -> LeaseInfo:
        """The lease's remaining TTL as etcd sees it (``ttl`` -1 when it does not exist, which
        also sets ``lost``), its granted TTL, and with ``keys`` the attached keys."""
        sent_at = _monotonic()
        info = time_to_live(self._client, self.id, keys, timeout)
        if info.ttl < 0:
            self._set_lost(LeaseLoss.EXPIRED)
        elif info.ttl > 0:
            self._expires_at = max(self._expires_at, sent_at + info.ttl)
        return info

    def revoke(self, *, timeout: float | None = None) -> None:
        """Stop the keepalive and revoke the lease (its keys are deleted); sets ``lost``.

        Raises LeaseNotFound if etcd no longer knows the lease (then ``lost`` is set too).
        A revoke whose answer is lost is checked with a time-to-live call and sent again if
        the lease still exists, so this never raises OutcomeUnknown.
        """
        self.stop_keep_alive()
        try:
            revoke(self._client, self.id, timeout)
        except LeaseNotFound:
            self._set_lost(LeaseLoss.EXPIRED)
            raise
        self._set_lost(LeaseLoss.REVOKED)

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> Lease:
        return self.keep_alive()

    def __exit__(self, *exc_info: object) -> None:
        self.stop_keep_alive()
        if self.lost_reason is not None:
            return
        try:
            self.revoke()
        except LeaseNotFound:
            pass  # already gone: the goal of the revoke
        except EtcdError as exc:
            log.warning(
                "revoke of lease %d on exit failed (it expires in %ds): %s", self.id, self.ttl, exc
            )

    # ------------------------------------------------------------------ internals
    def _refreshed(self, ttl: int, sent_at: float) -> None:
        self._expires_at = max(self._expires_at, sent_at + ttl)
        self._failures = 0

    def _set_lost(self, reason: LeaseLoss, *, inline: bool = False) -> None:
        """Set ``lost`` once; run the callbacks in a client greenlet (or here if ``inline``)."""
        if self.lost_reason is not None:
            return
        self.lost_reason = reason
        keeper: KeepAlive | None = getattr(self._client, _ATTR, None)
        if keeper is not None:
            keeper.discard(self)
        self._kept = False
        if reason is not LeaseLoss.REVOKED:
            log.info("lease %d lost: %s", self.id, reason.value)
        self.lost.set()
        callbacks, self._callbacks = self._callbacks, []
        if callbacks:
            if inline:
                _run_callbacks(self, callbacks)
            else:
                self._client.spawn(_run_callbacks, self, callbacks)


def _run_callbacks(lease: Lease, callbacks: list[Callable[[Lease], None]]) -> None:
    for callback in callbacks:
        try:
            callback(lease)
        except Exception:
            log.exception("on_lost callback %r of lease %d raised", callback, lease.id)


# ---------------------------------------------------------------------- one-shot calls
def _revalidated(lease: object) -> int:
    value = _lease_id(lease)
    return proto.check_lease_id(value)


def grant(
    client: Client,
    ttl: int,
    lease_id: int | None = None,
    *,
    keepalive: bool = False,
    timeout: float | None = None,
) -> Lease:
    """Grant a lease of ``ttl`` seconds (an int >= 1; etcd raises it to its minimum, 2 s).

    Raises InvalidArgument / InvalidType before sending, LeaseTTLTooLarge (above ~9e9 s) or
    LeaseExists (``lease_id`` taken) from etcd. Not idempotent: if the answer is lost the
    call raises OutcomeUnknown (a lease may or may not exist; it expires after ``ttl``).
    With an explicit ``lease_id`` that case is resolved instead: the lease's time-to-live is
    asked and, if a lease with that id exists, it is returned as granted by this call
    (choose ids nobody else uses); if not, the grant is sent again, until ``timeout``.
    """
    ttl = proto.check_ttl(ttl)
    if lease_id is not None:
        lease_id = proto.check_lease_id(lease_id)
    if not isinstance(keepalive, bool):
        raise InvalidArgument(f"keepalive must be a bool, got {keepalive!r}")
    executor = client._executor
    deadline = executor.deadline(timeout)
    body = proto.grant_body(ttl, lease_id)
    sent_at = _monotonic()
    try:
        _header, granted_id, granted_ttl = client._call(
            proto.GRANT, body, proto.parse_grant, False, timeout, None
        )
    except OutcomeUnknown as unknown:
        if lease_id is None:
            raise
        granted_id, granted_ttl, sent_at = _resolve_grant(client, body, lease_id, deadline, unknown)
    lease = Lease(client, granted_id, granted_ttl, sent_at)
    if keepalive:
        lease.keep_alive()
    return lease


def _resolve_grant(
    client: Client, body: dict[str, Any], lease_id: int, deadline: float, unknown: OutcomeUnknown
) -> tuple[int, int, float]:
    executor = client._executor
    while True:
        if _monotonic() >= deadline:
            raise unknown
        checked_at = _monotonic()
        info: LeaseInfo = executor.call(
            proto.TIME_TO_LIVE,
            proto.time_to_live_body(lease_id),
            proto.parse_time_to_live,
            idempotent=True,
            deadline=deadline,
        )
        if info.ttl >= 0:
            log.info(
                "lease grant %d: answer lost, but the lease exists; taken as granted", lease_id
            )
            # The remaining TTL bounds the expiry from the time the question was sent.
            return (
                lease_id,
                info.granted_ttl or info.ttl,
                checked_at - (info.granted_ttl - info.ttl),
            )
        sent_at = _monotonic()
        try:
            _header, granted_id, granted_ttl = executor.call(
                proto.GRANT, body, proto.parse_grant, idempotent=False, deadline=deadline
            )
        except (OutcomeUnknown, LeaseExists):
            continue
        return granted_id, granted_ttl, sent_at


def revoke(client: Client, lease: object, timeout: float | None = None) -> None:
    """Revoke a lease (an id or a Lease); its attached keys are deleted.

    Raises LeaseNotFound if it does not exist. A revoke whose answer is lost is resolved with
    a time-to-live call (gone: done; still there: sent again) until ``timeout``. A Lease of
    this client with that id stops being kept alive and its ``lost`` is set (REVOKED).
    """
    lease_id = _revalidated(lease)
    keeper: KeepAlive | None = getattr(client, _ATTR, None)
    kept = keeper.get(lease_id) if keeper is not None else None
    if kept is not None:
        kept.stop_keep_alive()
    executor = client._executor
    deadline = executor.deadline(timeout)
    body = proto.lease_body(lease_id)
    try:
        client._call(proto.REVOKE, body, _ignore, False, timeout, None)
    except LeaseNotFound:
        if kept is not None:
            kept._set_lost(LeaseLoss.EXPIRED)
        raise
    except OutcomeUnknown as unknown:
        while True:
            if _monotonic() >= deadline:
                raise unknown
            info: LeaseInfo = executor.call(
                proto.TIME_TO_LIVE,
                proto.time_to_live_body(lease_id),
                proto.parse_time_to_live,
                idempotent=True,
                deadline=deadline,
            )
            if info.ttl < 0:
                break
            try:
                executor.call(proto.REVOKE, body, _ignore, idempotent=False, deadline=deadline)
            except OutcomeUnknown:
                continue
            except LeaseNotFound:
                pass  # gone since the check: revoked (by the lost attempt or by expiry)
            break
    if kept is not None:
        kept._set_lost(LeaseLoss.REVOKED)


def _ignore(obj: dict[str, Any]) -> None:
    return None


def time_to_live(
    client: Client, lease: object, keys: bool = False, timeout: float | None = None
) -> LeaseInfo:
    """``LeaseInfo(id, ttl, granted_ttl, keys)``; ``ttl`` is -1 when the lease does not exist.

    ``keys`` (a bool) asks for the attached keys, namespace stripped (keys outside the
    client's namespace are left out). Retried on any member.
    """
    lease_id = _revalidated(lease)
    if not isinstance(keys, bool):
        raise InvalidArgument(f"keys must be a bool, got {keys!r}")
    ks = client._ks

    def parse(obj: dict[str, Any]) -> LeaseInfo:
        return proto.parse_time_to_live(obj, ks)

    info: LeaseInfo = client._call(
        proto.TIME_TO_LIVE, proto.time_to_live_body(lease_id, keys), parse, True, timeout, None
    )
    return info


def list_leases(client: Client, timeout: float | None = None) -> list[int]:
    """The IDs of every lease in the cluster (any order). Retried on any member."""
    ids: list[int] = client._call(proto.LEASES, {}, proto.parse_leases, True, timeout, None)
    return ids


# ---------------------------------------------------------------------- keepalive greenlet
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
        client._on_close.append(keeper.close)
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
        client = self._client
        executor = client._executor
        cluster = client._cluster
        transport = client._transport
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


# ---------------------------------------------------------------------- session
class Session:
    """A kept-alive lease for the lifetime of a piece of work; the base of locks/elections.

    Create it with ``client.session(ttl)``. ``lease``, ``id``, ``ttl``, ``lost`` and
    ``closed`` do no I/O. :meth:`close` (or leaving the ``with`` block, or closing the
    client) stops the keepalive and revokes the lease, best effort: a failed revoke is
    logged and the lease expires after its TTL. ``lost`` is set when the lease is lost
    or the session is closed.
    """

    __slots__ = ("__weakref__", "_closed", "lease")

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self._closed = False
        lease.keep_alive()
        keepalive_of(lease._client).add_session(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Session {state} {self.lease!r}>"

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def id(self) -> int:
        """The lease ID (to attach keys: ``client.put(k, v, lease=session.id)``)."""
        return self.lease.id

    @property
    def ttl(self) -> int:
        """The granted TTL of the session's lease."""
        return self.lease.ttl

    @property
    def lost(self) -> gevent.event.Event:
        """Set when the lease is lost or the session closed (see ``Lease.lost_reason``)."""
        return self.lease.lost

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def on_lost(self, callback: Callable[[Session], None]) -> None:
        """Call ``callback(session)`` once when ``lost`` is set (see :meth:`Lease.on_lost`)."""
        if not callable(callback):
            raise InvalidArgument(f"on_lost needs a callable, got {callback!r}")
        self.lease.on_lost(lambda _lease: callback(self))

    def close(self, *, timeout: float | None = None) -> None:
        """Stop the keepalive and revoke the lease (best effort). Idempotent; never raises
        an etcd error (a failed revoke is logged)."""
        if self._closed:
            return
        self._closed = True
        keeper: KeepAlive | None = getattr(self.lease._client, _ATTR, None)
        if keeper is not None:
            keeper.remove_session(self)
        lease = self.lease
        lease.stop_keep_alive()
        if lease.lost_reason is not None:
            return
        try:
            lease.revoke(timeout=timeout)
        except LeaseNotFound:
            pass  # already gone
        except EtcdError as exc:
            log.warning(
                "session close: revoke of lease %d failed (it expires in %ds): %s",
                lease.id,
                lease.ttl,
                exc,
            )
            lease._set_lost(LeaseLoss.CLOSED)

    def _close_on_exit(self) -> None:
        self.close(timeout=_CLOSE_REVOKE_TIMEOUT)


def _batches(items: list[Lease], size: int) -> Iterator[list[Lease]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
