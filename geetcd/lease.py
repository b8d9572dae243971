"""Leases: :class:`Lease`, :class:`LeaseLoss`, :class:`Session` and the one-shot lease calls.

A lease is granted with ``client.lease(ttl)`` (:func:`grant`); :func:`revoke`,
:func:`time_to_live` and :func:`list_leases` back the other lease calls. All of them take
the core; :class:`Leases` is the lease API on a core (the client is a Leases). Kept alive
(``lease.keep_alive()``, or inside ``with lease:``), a lease is refreshed about every TTL/3
by the core's keepalive greenlet, which lives in :mod:`geetcd.keepalive` (scheduling,
batching, retries; see there). Its public names (``KeepAlive``, ``KeepAliveStats``,
``DEFAULT_BATCH_SIZE``, ``DEFAULT_MAX_CONCURRENCY``) are re-exported here;
:func:`keepalive_of` returns it.

A lease is **lost** (``lease.lost`` set, callbacks run, no more refreshes) as soon as it is
known to be gone; :class:`LeaseLoss` says why.

Lease grant is not idempotent: a grant whose answer is lost raises OutcomeUnknown, except
with an explicit ``id`` (see :func:`grant`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent.event

from geetcd.core import Core
from geetcd.errors import (
    EtcdError,
    InvalidArgument,
    LeaseExists,
    LeaseNotFound,
    MalformedResponse,
    OutcomeUnknown,
)
from geetcd.feature import Feature, HasCore, core_of
from geetcd.keepalive import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_CONCURRENCY,
    KeepAlive,
    KeepAliveStats,
    LeaseLoss,
    Schedule,
)
from geetcd.models import LeaseInfo
from geetcd.protocol import lease as proto
from geetcd.protocol.errors import error_from_body
from geetcd.txn import lease_id as _lease_id

if TYPE_CHECKING:
    from geetcd._executor import Executor
    from geetcd.cluster import Member
    from geetcd.config import Retry
    from geetcd.transport import RawResponse

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_CONCURRENCY",
    "KeepAlive",
    "KeepAliveStats",
    "Lease",
    "LeaseLoss",
    "Leases",
    "Session",
    "grant",
    "keepalive_of",
    "list_leases",
    "revoke",
    "time_to_live",
]

log = logging.getLogger(__name__)
_monotonic = time.monotonic


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
        "_core",
        "id",
        "lost",
        "lost_reason",
        "schedule",
        "ttl",
    )

    def __init__(self, core: Core, lease_id: int, ttl: int, sent_at: float) -> None:
        self._core = core
        self.id = lease_id
        self.ttl = ttl
        self.lost = gevent.event.Event()
        self.lost_reason: LeaseLoss | None = None
        self._callbacks: list[Callable[[Lease], None]] = []
        # The keepalive's record; expires_at: the lease surely exists before it.
        self.schedule = Schedule(expires_at=sent_at + ttl)

    def __repr__(self) -> str:
        if self.lost_reason is not None:
            state = f"lost({self.lost_reason.value})"
        else:
            state = f"remaining~{self.remaining:.1f}s"
            if self.schedule.kept:
                state = "kept-alive " + state
        return f"<Lease id={self.id} ({self.id:x}) ttl={self.ttl} {state}>"

    # ------------------------------------------------------------------ state (no I/O)
    @property
    def kept_alive(self) -> bool:
        """True while the client's keepalive greenlet refreshes this lease."""
        return self.schedule.kept

    @property
    def remaining(self) -> float:
        """Seconds the lease surely still lives, from this client's last successful refresh
        (0.0 when that time has passed or the lease is lost). A local estimate, no I/O."""
        if self.lost_reason is not None:
            return 0.0
        return max(0.0, self.schedule.expires_at - _monotonic())

    def on_lost(self, callback: Callable[[Lease], None]) -> None:
        """Call ``callback(lease)`` once when ``lost`` is set (at once if it already is).

        Callbacks run one after the other in a greenlet of the client; an exception is
        logged with its traceback and does not stop the next callback.
        """
        if not callable(callback):
            raise InvalidArgument(f"on_lost needs a callable, got {callback!r}")
        if self.lost_reason is not None:
            self._core.spawn(_run_callbacks, self, [callback])
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
        self._core.keepalive.add(self)
        return self

    def stop_keep_alive(self) -> None:
        """Stop refreshing this lease (it then expires after its TTL). No I/O; idempotent."""
        self._core.keepalive.discard(self)

    # ------------------------------------------------------------------ calls
    def refresh(self, *, timeout: float | None = None) -> int:
        """Send one keepalive now; return the lease's new TTL.

        Retried on any member until ``timeout``. Raises LeaseNotFound (and sets ``lost``)
        if the lease no longer exists.
        """
        executor = self._core.executor
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
            self.keepalive_lost(LeaseLoss.EXPIRED)
            raise LeaseNotFound(f"lease {self.id} not found (expired or revoked)")
        self.keepalive_refreshed(ttl, sent_at)
        return ttl

    def time_to_live(self, keys: bool = False, *, timeout: float | None = None) -> LeaseInfo:
        """The lease's remaining TTL as etcd sees it (``ttl`` -1 when it does not exist, which
        also sets ``lost``), its granted TTL, and with ``keys`` the attached keys."""
        sent_at = _monotonic()
        info = time_to_live(self._core, self.id, keys, timeout)
        if info.ttl < 0:
            self.keepalive_lost(LeaseLoss.EXPIRED)
        elif info.ttl > 0:
            self.schedule.expires_at = max(self.schedule.expires_at, sent_at + info.ttl)
        return info

    def revoke(self, *, timeout: float | None = None) -> None:
        """Stop the keepalive and revoke the lease (its keys are deleted); sets ``lost``.

        Raises LeaseNotFound if etcd no longer knows the lease (then ``lost`` is set too).
        A revoke whose answer is lost is checked with a time-to-live call and sent again if
        the lease still exists, so this never raises OutcomeUnknown.
        """
        self.stop_keep_alive()
        try:
            revoke(self._core, self.id, timeout)
        except LeaseNotFound:
            self.keepalive_lost(LeaseLoss.EXPIRED)
            raise
        self.keepalive_lost(LeaseLoss.REVOKED)

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

    # ------------------------------------------------------------------ the keepalive's callbacks
    def keepalive_refreshed(self, ttl: int, sent_at: float) -> None:
        """A refresh sent at ``sent_at`` got ``ttl`` seconds (called by the keepalive)."""
        self.schedule.expires_at = max(self.schedule.expires_at, sent_at + ttl)
        self.schedule.failures = 0

    def keepalive_lost(self, reason: LeaseLoss, *, inline: bool = False) -> None:
        """Set ``lost`` once for ``reason``; run the callbacks in a client greenlet (or here
        if ``inline``). Called by the keepalive and by this module; not for users."""
        if self.lost_reason is not None:
            return
        self.lost_reason = reason
        self._core.keepalive.discard(self)
        if self._core.observers.active:
            self._core.observers.emit("lease_lost", reason.value)
        if reason is not LeaseLoss.REVOKED:
            log.info("lease %d lost: %s", self.id, reason.value)
        self.lost.set()
        callbacks, self._callbacks = self._callbacks, []
        if callbacks:
            if inline:
                _run_callbacks(self, callbacks)
            else:
                self._core.spawn(_run_callbacks, self, callbacks)


def _run_callbacks(lease: Lease, callbacks: list[Callable[[Lease], None]]) -> None:
    for callback in callbacks:
        try:
            callback(lease)
        except Exception:
            log.exception("on_lost callback %r of lease %d raised", callback, lease.id)


def keepalive_of(owner: Core | HasCore) -> KeepAlive:
    """The keepalive of a core, or of the client (or feature) standing on one
    (``client.core.keepalive``, built with the core)."""
    return core_of(owner).keepalive


# ---------------------------------------------------------------------- one-shot calls
def _revalidated(lease: object) -> int:
    value = _lease_id(lease)
    return proto.check_lease_id(value)


def grant(
    core: Core,
    ttl: int,
    lease_id: int | None = None,
    *,
    keepalive: bool = False,
    timeout: float | None = None,
    retry: Retry | None = None,
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
    executor = core.executor
    deadline = executor.deadline(timeout)
    body = proto.grant_body(ttl, lease_id)
    sent_at = _monotonic()
    try:
        _header, granted_id, granted_ttl = core.call(
            proto.GRANT, body, proto.parse_grant, False, timeout, retry
        )
    except OutcomeUnknown as unknown:
        if lease_id is None:
            raise
        granted_id, granted_ttl, sent_at = _resolve_grant(core, body, lease_id, deadline, unknown)
    lease = Lease(core, granted_id, granted_ttl, sent_at)
    if keepalive:
        lease.keep_alive()
    return lease


def _remaining(executor: Executor, lease_id: int, deadline: float) -> LeaseInfo:
    """The lease's time to live (``ttl`` -1: gone), asked within ``deadline``."""
    info: LeaseInfo = executor.call(
        proto.TIME_TO_LIVE,
        proto.time_to_live_body(lease_id),
        proto.parse_time_to_live,
        idempotent=True,
        deadline=deadline,
    )
    return info


def _resolve_grant(
    owner: Core | HasCore,
    body: dict[str, Any],
    lease_id: int,
    deadline: float,
    unknown: OutcomeUnknown,
) -> tuple[int, int, float]:
    executor = core_of(owner).executor
    while True:
        if _monotonic() >= deadline:
            raise unknown
        checked_at = _monotonic()
        info = _remaining(executor, lease_id, deadline)
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


def revoke(
    core: Core, lease: object, timeout: float | None = None, retry: Retry | None = None
) -> None:
    """Revoke a lease (an id or a Lease); its attached keys are deleted.

    Raises LeaseNotFound if it does not exist. A revoke whose answer is lost is resolved with
    a time-to-live call (gone: done; still there: sent again) until ``timeout``. A Lease of
    this client with that id stops being kept alive and its ``lost`` is set (REVOKED).
    """
    lease_id = _revalidated(lease)
    keeper = core.keepalive
    kept = keeper.get(lease_id)
    if kept is not None:
        keeper.discard(kept)
    executor = core.executor
    deadline = executor.deadline(timeout)
    body = proto.lease_body(lease_id)
    try:
        core.call(proto.REVOKE, body, _ignore, False, timeout, retry)
    except LeaseNotFound:
        if kept is not None:
            kept.keepalive_lost(LeaseLoss.EXPIRED)
        raise
    except OutcomeUnknown as unknown:
        while True:
            if _monotonic() >= deadline:
                raise unknown
            info = _remaining(executor, lease_id, deadline)
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
        kept.keepalive_lost(LeaseLoss.REVOKED)


def _ignore(obj: dict[str, Any]) -> None:
    return None


def time_to_live(
    core: Core,
    lease: object,
    keys: bool = False,
    timeout: float | None = None,
    retry: Retry | None = None,
) -> LeaseInfo:
    """``LeaseInfo(id, ttl, granted_ttl, keys)``; ``ttl`` is -1 when the lease does not exist.

    ``keys`` (a bool) asks for the attached keys, namespace stripped (keys outside the
    client's namespace are left out). Retried on any member.
    """
    lease_id = _revalidated(lease)
    if not isinstance(keys, bool):
        raise InvalidArgument(f"keys must be a bool, got {keys!r}")
    ks = core.ks

    def parse(obj: dict[str, Any]) -> LeaseInfo:
        return proto.parse_time_to_live(obj, ks)

    info: LeaseInfo = core.call(
        proto.TIME_TO_LIVE, proto.time_to_live_body(lease_id, keys), parse, True, timeout, retry
    )
    return info


def list_leases(core: Core, timeout: float | None = None, retry: Retry | None = None) -> list[int]:
    """The IDs of every lease in the cluster (any order). Retried on any member."""
    ids: list[int] = core.call(proto.LEASES, {}, proto.parse_leases, True, timeout, retry)
    return ids


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
        lease._core.keepalive.add_session(self)

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
        self.lease._core.keepalive.remove_session(self)
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
            lease.keepalive_lost(LeaseLoss.CLOSED)


# ---------------------------------------------------------------------- the feature group
class Leases(Feature):
    """The lease API on a core (Go's ``clientv3.NewLease``): :meth:`lease`, :meth:`session`,
    :meth:`leases`, :meth:`revoke_lease`, :meth:`lease_time_to_live`. :class:`geetcd.Client`
    is a Leases; ``Leases(core)`` works on its own. Building it does no I/O."""

    def lease(
        self,
        ttl: int,
        *,
        id: int | None = None,
        keepalive: bool = False,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> Lease:
        """Grant a lease of ``ttl`` seconds (int >= 1; etcd raises it to its 2 s minimum) and
        return it as a :class:`geetcd.Lease` (kept alive at once if ``keepalive``).

        InvalidArgument before sending for a bad ttl; LeaseTTLTooLarge (over ~9e9 s) and
        LeaseExists (``id`` taken) come from etcd. Not idempotent: OutcomeUnknown if the
        answer is lost, except with an explicit ``id`` (then the lease's existence is
        checked and the grant resent if needed; see geetcd.lease.grant).
        """
        return grant(self._core, ttl, id, keepalive=keepalive, timeout=timeout, retry=retry)

    def session(
        self, ttl: int = 10, *, timeout: float | None = None, retry: Retry | None = None
    ) -> Session:
        """A :class:`geetcd.Session`: a lease of ``ttl`` seconds kept alive until
        ``session.close()`` or :meth:`close` (then revoked, best effort)."""
        return Session(grant(self._core, ttl, timeout=timeout, retry=retry))

    def leases(self, *, timeout: float | None = None, retry: Retry | None = None) -> list[int]:
        """The IDs of every lease in the cluster (any order)."""
        return list_leases(self._core, timeout, retry)

    def revoke_lease(
        self, lease: object, *, timeout: float | None = None, retry: Retry | None = None
    ) -> None:
        """Revoke a lease (an id or a Lease): its keys are deleted. LeaseNotFound if unknown."""
        revoke(self._core, lease, timeout, retry)

    def lease_time_to_live(
        self,
        lease: object,
        keys: bool = False,
        *,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> LeaseInfo:
        """``LeaseInfo(id, ttl, granted_ttl, keys)`` of a lease (an id or a Lease); ``ttl``
        is -1 when it does not exist (not an error)."""
        return time_to_live(self._core, lease, keys, timeout, retry)
