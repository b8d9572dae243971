"""A distributed lock with the key layout of Go's ``concurrency.Mutex``.

``client.lock(name)`` returns a :class:`Lock`. It excludes every other holder of ``name``:
other Lock objects of the same client (other greenlets), other clients and processes, and
``etcdctl lock name`` or a Go ``concurrency.Mutex`` on ``name``.

How: the greenlets of one client that want ``name`` queue in a local FIFO
(:class:`~geetcd.recipes.gate.FifoGate`); the first of them queues in etcd with the key
``name/<lease-hex>`` of the client's session of that TTL (see :mod:`geetcd.recipes.queue`).
So a client has at most one waiter key per name. Release deletes the key, which wakes the
next waiter in etcd (only that one), and lets the next local greenlet in, which gets a
fresh key: every acquisition has its own create revision, strictly above that of the
acquisition before it (the fencing token).

When another greenlet of the client waits, release does both in one txn: it deletes the
holder's key and creates the next greenlet's key, named after the client's second
(partner) session lease of that TTL. The new key queues behind every key created before
it, so remote waiters keep their turn; a hand-off between greenlets costs one request.
The partner session is granted in the background at the first release that finds a local
waiter (until then, and whenever that txn fails, release deletes and the next greenlet
creates, two requests).

Requests per acquisition: 1 between greenlets of one client; about 5 between clients
(the holder's delete, then the next waiter's create, one watch of its predecessor and two
reads), whatever the number of waiters.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import gevent
import gevent.event

from geetcd.errors import ClientClosed, DeadlineExceeded, InvalidArgument
from geetcd.protocol.codec import to_bytes
from geetcd.recipes.gate import FifoGate, deadline_of, remaining
from geetcd.recipes.queue import (
    Cleanup,
    Queued,
    Turn,
    enqueue,
    enter_gate,
    hand_over,
    leave_gate,
    wait_turn,
    waiter_key,
)
from geetcd.recipes.sessions import Handed, SessionPool, check_ttl
from geetcd.txn import Compare, Comparison

if TYPE_CHECKING:
    from types import TracebackType

    from geetcd.lease import Session
    from geetcd.recipes._api import KVClient

__all__ = ["Lock", "prefix_of"]

log = logging.getLogger(__name__)


def prefix_of(name: object) -> bytes:
    """``name`` (str or bytes, not empty) + ``b"/"``: the key prefix Go's recipes use.
    InvalidType / InvalidArgument before any I/O."""
    raw = to_bytes(name, "name")
    if not raw:
        raise InvalidArgument("name must not be empty")
    return raw + b"/"


class _Held:
    __slots__ = ("queued", "session")

    def __init__(self, queued: Queued, session: Session) -> None:
        self.queued = queued
        self.session = session


class Lock:
    """A lock on ``name``; create it with ``client.lock(name, ttl=60)`` (no I/O).

    One Lock object is one holder: give each greenlet its own (``client.lock(name)`` is
    cheap); they exclude each other. Guarantees:

    * :meth:`acquire` is FIFO-fair: among this client's greenlets by arrival, in etcd by
      create revision. A waiter that gives up (timeout, ``GreenletExit``,
      ``gevent.Timeout``, an error) deletes its key before the exception goes on (if that
      delete fails, a greenlet of the client retries it until it succeeds or the session
      ends, and the client's next greenlet for ``name`` waits until then).
    * Every acquisition has a :attr:`revision` (the key's create revision), strictly greater
      than that of any earlier acquisition of ``name``: use it as a fencing token, or guard
      writes with :meth:`is_owner` inside ``client.txn``.
    * :attr:`lost` is set when the session lease of the holding acquisition is lost (expired,
      revoked elsewhere, client closed): within about TTL/3 plus a request timeout of the
      lease ending. The key is then gone and another holder may already own ``name``.

    ``key``, ``revision``, ``held`` and ``lost`` do no I/O.
    """

    __slots__ = ("_busy", "_client", "_held", "_pool", "_prefix", "lost", "name", "ttl")

    def __init__(
        self, client: KVClient, name: str | bytes, *, ttl: int = 60, sessions: SessionPool
    ) -> None:
        self._prefix = prefix_of(name)
        self.name = self._prefix[:-1]
        self.ttl = check_ttl(ttl)
        if not isinstance(sessions, SessionPool):
            raise InvalidArgument(f"sessions must be a SessionPool, got {sessions!r}")
        self._client = client
        self._pool = sessions
        self._held: _Held | None = None
        self._busy = False
        #: Set when the session of the holding acquisition is lost (cleared by acquire).
        self.lost = gevent.event.Event()

    def __repr__(self) -> str:
        held = self._held
        state = f"held revision={held.queued.revision}" if held is not None else "free"
        if self.lost.is_set():
            state += " lost"
        return f"<Lock name={self.name!r} ttl={self.ttl} {state}>"

    # ------------------------------------------------------------------ state (no I/O)
    @property
    def held(self) -> bool:
        """True between a successful acquire and the release (even once ``lost``)."""
        return self._held is not None

    @property
    def key(self) -> bytes | None:
        """The waiter key of the holding acquisition (``name/<lease-hex>``), or None."""
        return None if self._held is None else self._held.queued.key

    @property
    def revision(self) -> int | None:
        """The create revision of the holding acquisition's key (the fencing token), or None."""
        return None if self._held is None else self._held.queued.revision

    def is_owner(self) -> Comparison:
        """A compare for ``client.txn``: true while this acquisition's key still exists, i.e.
        while this Lock is the owner (``Compare.create_revision(key) == revision``).
        InvalidArgument when the lock is not held. No I/O."""
        held = self._held
        if held is None:
            raise InvalidArgument(f"lock {self.name!r} is not held")
        return Compare.create_revision(held.queued.key) == held.queued.revision

    # ------------------------------------------------------------------ acquire / release
    def acquire(self, timeout: float | None = None) -> bool:
        """Block until this Lock holds ``name`` (True) or ``timeout`` seconds pass (False).

        A no-op returning True when already held. InvalidType / InvalidArgument for a bad
        ``timeout`` (bool, NaN, infinite, negative) before any I/O; InvalidArgument if
        another greenlet is inside acquire() of this same object. Raises the client's
        errors (ClusterUnavailable...) when etcd cannot be reached, and ClientClosed when
        the client is closed (also at once for greenlets waiting in its local queue); a
        waiter whose session is lost while it waits queues again with a fresh session.
        """
        return self._acquire(deadline_of(timeout), wait=True)

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it or waits for it; never waits for a holder.

        False at once (no I/O) when another greenlet of this client holds or wants it;
        otherwise one txn (plus one delete when another holder is found in etcd).
        """
        return self._acquire(None, wait=False)

    def release(self) -> None:
        """Delete the key (waking the next waiter in etcd, and only it) and let the next
        greenlet of this client in (in the same txn that creates that greenlet's key, when
        the client's partner session exists). A no-op when not held. Never raises an etcd
        error: if the delete fails it is retried in the background until it succeeds or the
        session ends."""
        held, self._held = self._held, None
        if held is None:
            return
        self._release_key(held.queued, held.session)

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    # ------------------------------------------------------------------ internals
    def _acquire(self, deadline: float | None, *, wait: bool) -> bool:
        if self._held is not None:
            if not self.lost.is_set():
                return True
            self.release()  # the key went with the lease: queue again
        if self._busy:
            raise InvalidArgument(
                f"another greenlet is acquiring this Lock on {self.name!r}: "
                "give each greenlet its own client.lock(name)"
            )
        if self._client.closed:
            raise ClientClosed()
        self._busy = True
        try:
            gate, handed = enter_gate(self._client, self._pool, self._prefix, deadline, wait=wait)
            if gate is None:
                if self._client.closed:
                    raise ClientClosed()
                return False
            return self._acquire_in_etcd(gate, deadline, wait, handed)
        finally:
            self._busy = False

    def _acquire_in_etcd(
        self, gate: FifoGate, deadline: float | None, wait: bool, handed: Handed | None
    ) -> bool:
        """With the local gate held: queue in etcd until owner (starting from the key
        ``handed`` over by the previous holder, if any). On any way out but success (False,
        an exception, a kill) our key is deleted and the gate handed on."""
        client = self._client
        cleanup: Cleanup | None = None
        won = False
        try:
            while True:
                if handed is not None:
                    session, queued = handed.session, handed.queued
                    cleanup = Cleanup(session, queued.key, queued)
                    handed = None
                else:
                    session = self._pool.session(self.ttl, deadline=deadline)
                    cleanup = Cleanup(session, waiter_key(self._prefix, session.id), None)
                    queued = enqueue(client, self._prefix, session, b"", deadline)
                    cleanup.queued = queued
                if not wait and not (queued.checked and queued.predecessor is None):
                    return False
                turn = wait_turn(client, self._prefix, queued, deadline, session.lost)
                if turn is Turn.OWNER:
                    won = True
                    break
                if turn is Turn.TIMEOUT:
                    return False
                log.info("lock %r: our key is gone while waiting; queueing again", self.name)
        except DeadlineExceeded:
            if deadline is not None and remaining(deadline) == 0.0:
                return False
            raise
        finally:
            if not won:
                self._leave(gate, cleanup)
        self._held = _Held(queued, session)
        self.lost.clear()
        session.lost.rawlink(self._on_session_lost)
        return True

    def _on_session_lost(self, _event: object) -> None:
        held = self._held
        if held is not None and held.session.lost.is_set():
            self.lost.set()

    def _release_key(self, queued: Queued, session: Session) -> None:
        session.lost.unlink(self._on_session_lost)
        pool, prefix = self._pool, self._prefix
        gate = pool.gate(prefix)
        if gate.waiters and not session.lost.is_set():
            partner = pool.partner(self.ttl, session)
            if partner is not None:
                self._hand_over(gate, queued, session, partner)
                return
        self._leave(gate, Cleanup(session, queued.key, queued))

    def _hand_over(
        self, gate: FifoGate, queued: Queued, session: Session, partner: Session
    ) -> None:
        """Release to the next greenlet of this client in one txn (see queue.hand_over)."""
        pool, prefix = self._pool, self._prefix
        done = False
        try:
            handed = hand_over(self._client, prefix, queued, partner, b"")
            if handed is None:
                # Not applied, or unknown: our key may remain, the partner's may exist.
                extra = Cleanup(partner, waiter_key(prefix, partner.id), None)
                done = True
                self._leave(gate, Cleanup(session, queued.key, queued), extra)
            elif gate.waiters:
                done = True
                pool.hand(prefix, gate, Handed(handed, partner))
            else:  # the waiter left meanwhile: nobody takes the new key
                done = True
                self._leave(gate, Cleanup(partner, handed.key, handed))
        finally:
            if not done:  # interrupted: clean both up, whatever was applied
                extra = Cleanup(partner, waiter_key(prefix, partner.id), None)
                self._leave(gate, Cleanup(session, queued.key, queued), extra)

    def _leave(self, gate: FifoGate, cleanup: Cleanup | None, *more: Cleanup) -> None:
        leave_gate(self._client, self._pool, self._prefix, gate, cleanup, *more)
