"""The session pool of one client: kept-alive :class:`geetcd.Session` objects per TTL, shared
by the client's locks and elections, and the per-name FIFO gates in front of etcd.

Created once per client by ``client.lock`` / ``client.election`` on first use. Each TTL has
a main session (slot 0), granted by the first acquire or campaign with that TTL, and a
partner session (slot 1), granted in the background the first time a lock is released
while another greenlet of the client waits for it: a hand-off between two greenlets then
deletes the holder's key and creates the next one's (named after the other lease) in one
txn. Sessions are replaced by fresh ones when lost, and revoked when the client closes
(``client.close()`` closes every session of the client; a revoke deletes every lock and
election key of the session at once). A session lost because no refresh got through
(``LeaseLoss.UNREACHABLE``) may still exist in etcd (a new raft leader extends every lease
by its TTL), its keys still queued in front of other waiters: the pool revokes it in the
background, retrying for up to one TTL, so that those keys go at once.

The records the pool keeps for a hand-off live here too: :class:`Queued` (a waiter key, as
:mod:`geetcd.recipes.queue` creates it; re-exported there) and :class:`Handed`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gevent
import gevent.event

from geetcd.config import ExponentialBackoff
from geetcd.errors import DeadlineExceeded, EtcdError, InvalidArgument, InvalidType, LeaseNotFound
from geetcd.lease import LeaseLoss
from geetcd.recipes.gate import FifoGate, remaining

if TYPE_CHECKING:
    from geetcd.lease import Session
    from geetcd.recipes._api import KVClient

__all__ = ["Handed", "Queued", "SessionPool", "check_ttl"]

log = logging.getLogger(__name__)
_REVOKE_BACKOFF = ExponentialBackoff(base=0.5, cap=5.0)


@dataclass(frozen=True, slots=True)
class Queued:
    """A waiter key in etcd: ``key``, its ``revision`` (create revision) and what the enqueue
    saw before it: ``predecessor`` (None: nobody, when ``checked``) read at ``at``."""

    key: bytes
    revision: int
    predecessor: bytes | None
    at: int
    checked: bool


@dataclass(frozen=True, slots=True)
class Handed:
    """A waiter key created by a releasing holder for the next holder of the gate:
    ``queued`` in etcd under ``session``'s lease."""

    queued: Queued
    session: Session


def check_ttl(ttl: object) -> int:
    """``ttl`` as an int of seconds >= 1; InvalidType for a non-int or a bool,
    InvalidArgument below 1. No I/O."""
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        raise InvalidType(f"ttl must be an int of seconds, got {type(ttl).__name__}")
    if ttl < 1:
        raise InvalidArgument(f"ttl must be >= 1 second, got {ttl}")
    return ttl


class SessionPool:
    """One kept-alive session per TTL for a client, and one :class:`FifoGate` per key prefix.

    :meth:`session` never returns a session that is known lost or closed; concurrent callers
    asking for the same TTL share one grant. :meth:`gate` returns the gate every lock and
    election of this client on that prefix queues on (greenlet-safe: gevent switches only
    inside calls that wait). :meth:`hand` / :meth:`take` pass a waiter key created by a
    releasing holder to the gate's next holder.
    """

    __slots__ = ("_client", "_gates", "_granting", "_handed", "_sessions")

    def __init__(self, client: KVClient) -> None:
        self._client = client
        self._sessions: dict[tuple[int, int], Session] = {}
        self._granting: dict[tuple[int, int], gevent.event.Event] = {}
        self._gates: dict[bytes, FifoGate] = {}
        self._handed: dict[bytes, Handed] = {}
        client.core.on_close(self._close_gates)

    def __repr__(self) -> str:
        ttls = ",".join(sorted({str(t) for t, _slot in self._sessions})) or "-"
        return f"<SessionPool ttls={ttls} gates={len(self._gates)}>"

    def current(self, ttl: int, slot: int = 0) -> Session | None:
        """The live session of ``ttl`` (in ``slot``, 0 or 1) if one exists; no I/O."""
        session = self._sessions.get((ttl, slot))
        if session is None or session.closed or session.lost.is_set():
            return None
        return session

    def session(self, ttl: int, *, deadline: float | None = None, slot: int = 0) -> Session:
        """The live session of ``ttl`` (in ``slot``), granting one (kept alive) if none.

        Raises what the lease grant raises (OutcomeUnknown, ClusterUnavailable,
        ClientClosed...), or DeadlineExceeded if ``deadline`` (monotonic) passes while another
        greenlet's grant for the same TTL is under way.
        """
        check_ttl(ttl)
        while True:
            session = self.current(ttl, slot)
            if session is not None:
                return session
            pending = self._granting.get((ttl, slot))
            if pending is None:
                return self._grant(ttl, slot, deadline)
            if not pending.wait(remaining(deadline)):
                raise DeadlineExceeded(f"no session of ttl {ttl} before the deadline")

    def partner(self, ttl: int, session: Session) -> Session | None:
        """The live session of ``ttl`` in the other slot than ``session``'s, or None (no
        I/O). When it is missing, one is granted in a greenlet of the client for next time;
        None as well when ``session`` is not one of this pool's live sessions."""
        for slot in (0, 1):
            if self._sessions.get((ttl, slot)) is session:
                other = 1 - slot
                break
        else:
            return None
        found = self.current(ttl, other)
        if found is None and (ttl, other) not in self._granting and not self._client.closed:
            self._client.spawn(self._grant_quietly, ttl, other)
        return found

    def _grant_quietly(self, ttl: int, slot: int) -> None:
        try:
            self.session(ttl, slot=slot)
        except EtcdError as exc:
            log.info("no partner session of ttl %d (%s); hand-offs take two requests", ttl, exc)

    def _grant(self, ttl: int, slot: int, deadline: float | None) -> Session:
        done = self._granting[ttl, slot] = gevent.event.Event()
        try:
            old = self._sessions.pop((ttl, slot), None)
            if old is not None:
                old.close()  # lost already: no revoke is sent, it only leaves the keepalive
            session = self._client.session(ttl, timeout=remaining(deadline))
            self._sessions[ttl, slot] = session
            session.on_lost(self._revoke_if_unreachable)
            return session
        finally:
            del self._granting[ttl, slot]
            done.set()

    def hand(self, prefix: bytes, gate: FifoGate, handed: Handed) -> None:
        """Give ``gate`` (held by the caller) to its next waiter together with ``handed``,
        which that waiter gets from :meth:`take`. No I/O, never raises, never switches.
        The caller checks that the gate has a waiter."""
        self._handed[prefix] = handed
        gate.release()

    def take(self, prefix: bytes) -> Handed | None:
        """The key handed to the caller, the new holder of the prefix's gate (no I/O)."""
        return self._handed.pop(prefix, None)

    def orphan(self, prefix: bytes, gate: FifoGate) -> Handed | None:
        """After a waiter left the gate without holding it (timeout, kill): a handed key
        that nobody holds any more, which the caller must delete. No I/O."""
        if gate.held:
            return None  # handed on to the next waiter, which takes it
        return self._handed.pop(prefix, None)

    def _revoke_if_unreachable(self, session: Session) -> None:
        """Runs in a greenlet of the client when ``session`` is lost. After UNREACHABLE,
        revoke its lease (it may still exist and hold keys), retrying for one TTL; for any
        other reason the lease is gone or not ours to revoke. Never raises an etcd error."""
        if session.lease.lost_reason is not LeaseLoss.UNREACHABLE:
            return
        client, attempt = self._client, 0
        give_up = time.monotonic() + session.ttl
        while not client.closed and time.monotonic() < give_up:
            try:
                client.revoke_lease(session.id, timeout=max(1.0, session.ttl / 3))
            except LeaseNotFound:
                return
            except EtcdError as exc:
                log.debug("revoke of unreachable session %d failed: %s", session.id, exc)
                gevent.sleep(_REVOKE_BACKOFF.compute(attempt))
                attempt += 1
                continue
            log.info("revoked session %d, lost while etcd was unreachable", session.id)
            return

    def _close_gates(self) -> None:
        """At client close: greenlets queued in a gate return at once (and raise
        ClientClosed); no I/O."""
        for gate in list(self._gates.values()):
            gate.close()

    def gate(self, prefix: bytes) -> FifoGate:
        """The FIFO gate of ``prefix`` (created on first use). Acquire it before yielding
        to other greenlets, and give it back with :meth:`leave`."""
        gate = self._gates.get(prefix)
        if gate is None:
            gate = self._gates[prefix] = FifoGate()
        return gate

    def leave(self, prefix: bytes, gate: FifoGate) -> None:
        """Forget ``gate`` if it is idle (nobody holds or waits); no I/O, never raises."""
        if gate.idle and self._gates.get(prefix) is gate:
            del self._gates[prefix]
