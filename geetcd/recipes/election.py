"""Leader election with the key layout and semantics of Go's ``concurrency.Election``.

``client.election(name)`` returns an :class:`Election`. Candidates are the waiter keys of
:mod:`geetcd.recipes.queue` (``name/<lease-hex>``, value = the candidate's proposal); the
leader is the candidate whose key has the lowest create revision. So it interoperates with
``etcdctl elect name proposal`` (a candidate) and ``etcdctl elect -l name`` (an observer),
and with Go programs using ``concurrency.Election``.

As with locks, the candidates of one client on one name queue locally first (a FIFO gate),
so that one client never has two keys in the same election.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import gevent
import gevent.event

from geetcd.config import ExponentialBackoff
from geetcd.errors import (
    ClientClosed,
    CompactedRevision,
    DeadlineExceeded,
    EtcdError,
    InvalidArgument,
    NotLeader,
    OutcomeUnknown,
    WatchError,
)
from geetcd.models import EventType, KeyValue
from geetcd.protocol.codec import to_bytes
from geetcd.recipes.gate import FifoGate, deadline_of, remaining
from geetcd.recipes.lock import prefix_of
from geetcd.recipes.queue import (
    Cleanup,
    Queued,
    Turn,
    enqueue,
    enter_gate,
    leave_gate,
    wait_turn,
    waiter_key,
)
from geetcd.recipes.sessions import SessionPool, check_ttl
from geetcd.txn import Compare, Comparison, Op

if TYPE_CHECKING:
    from geetcd.lease import Session
    from geetcd.recipes._api import KVClient

__all__ = ["Election"]

log = logging.getLogger(__name__)
_OBSERVE_BACKOFF = ExponentialBackoff(base=0.1, cap=2.0)


def _identity(kv: KeyValue) -> tuple[bytes, int, int]:
    return kv.key, kv.create_revision, kv.mod_revision


class Election:
    """An election on ``name``; create it with ``client.election(name, ttl=60)`` (no I/O).

    One Election object is one candidate. :meth:`campaign` blocks until it is the leader;
    :meth:`proclaim` changes the leader's value; :meth:`resign` steps down (or leaves the
    queue). :meth:`leader` and :meth:`observe` work for any object, candidate or not.
    ``lost`` is set when the leader's session lease is lost (its key is then gone and
    another candidate may lead). ``key``, ``revision``, ``is_leader`` and ``lost`` do no I/O.
    """

    __slots__ = (
        "_busy",
        "_client",
        "_held",
        "_pool",
        "_prefix",
        "_session",
        "lost",
        "name",
        "ttl",
    )

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
        self._held: Queued | None = None
        self._session: Session | None = None
        self._busy = False
        #: Set when the leader's session is lost (cleared by a successful campaign).
        self.lost = gevent.event.Event()

    def __repr__(self) -> str:
        held = self._held
        state = f"leader revision={held.revision}" if held is not None else "candidate"
        if self.lost.is_set():
            state += " lost"
        return f"<Election name={self.name!r} ttl={self.ttl} {state}>"

    # ------------------------------------------------------------------ state (no I/O)
    @property
    def is_leader(self) -> bool:
        """True between a won campaign and resign (False once ``lost`` or not proclaimed)."""
        return self._held is not None and not self.lost.is_set()

    @property
    def key(self) -> bytes | None:
        """This leader's key (``name/<lease-hex>``), or None when not leader."""
        return None if self._held is None else self._held.key

    @property
    def revision(self) -> int | None:
        """The create revision of this leader's key (a fencing token), or None."""
        return None if self._held is None else self._held.revision

    def is_leader_compare(self) -> Comparison:
        """A compare for ``client.txn`` that holds while this candidate still leads.
        NotLeader when it does not. No I/O."""
        held = self._held
        if held is None:
            raise NotLeader(f"not the leader of {self.name!r}")
        return Compare.create_revision(held.key) == held.revision

    # ------------------------------------------------------------------ candidate
    def campaign(self, value: str | bytes, timeout: float | None = None) -> bool:
        """Become a candidate with ``value`` and block until leader (True) or until
        ``timeout`` seconds pass (False; the candidacy is then withdrawn).

        Already leader: the value is proclaimed if it differs, and True returned. A candidate
        that gives up (timeout, kill, error) deletes its key before the exception goes on.
        InvalidType / InvalidArgument for a bad value or timeout before any I/O;
        ClientClosed when the client is closed (also at once while queued locally).
        """
        raw = to_bytes(value, "value")
        deadline = deadline_of(timeout)
        if self._held is not None and not self.lost.is_set():
            self.proclaim(raw)
            return True
        if self._held is not None:
            self._step_down()
        if self._busy:
            raise InvalidArgument(
                f"another greenlet is campaigning with this Election on {self.name!r}"
            )
        self._busy = True
        try:
            client, pool, prefix = self._client, self._pool, self._prefix
            while True:
                if client.closed:
                    raise ClientClosed()
                gate, handed = enter_gate(client, pool, prefix, deadline, wait=True)
                if gate is None:
                    if client.closed:
                        raise ClientClosed()
                    return False
                if handed is None:
                    return self._campaign(gate, raw, deadline)
                # A key a Lock of this client on the same name handed over: not a
                # candidacy. Delete it, let the gate go on, and queue again.
                leftover = Cleanup(handed.session, handed.queued.key, handed.queued)
                leave_gate(client, pool, prefix, gate, leftover)
        finally:
            self._busy = False

    def _campaign(self, gate: FifoGate, value: bytes, deadline: float | None) -> bool:
        client = self._client
        cleanup: Cleanup | None = None
        won = False
        try:
            while True:
                session = self._pool.session(self.ttl, deadline=deadline)
                cleanup = Cleanup(session, waiter_key(self._prefix, session.id), None)
                queued = enqueue(client, self._prefix, session, value, deadline)
                cleanup.queued = queued
                turn = wait_turn(client, self._prefix, queued, deadline, session.lost)
                if turn is Turn.OWNER:
                    won = True
                    break
                if turn is Turn.TIMEOUT:
                    return False
                log.info("election %r: our key is gone while waiting; again", self.name)
        except DeadlineExceeded:
            if deadline is not None and remaining(deadline) == 0.0:
                return False
            raise
        finally:
            if not won:
                leave_gate(self._client, self._pool, self._prefix, gate, cleanup)
        self._held, self._session = queued, session
        self.lost.clear()
        session.lost.rawlink(self._on_session_lost)
        return True

    def proclaim(self, value: str | bytes) -> None:
        """Set the leader's value without a new election. NotLeader when this candidate is
        not the leader (never won, resigned, key deleted or session lost); the candidacy
        then ends. A proclaim whose answer is lost is sent again, up to 3 times (it is guarded
        by the key's create revision, so applying it twice only writes the same value twice:
        observers may then see it twice, at two mod revisions); OutcomeUnknown after that."""
        raw = to_bytes(value, "value")
        held, session = self._held, self._session
        if held is None or session is None:
            raise NotLeader(f"not the leader of {self.name!r}")
        if self.lost.is_set():
            self._step_down()
            raise NotLeader(f"the session of the leader of {self.name!r} was lost")
        for attempt in range(3):
            try:
                response = self._client.txn(
                    [Compare.create_revision(held.key) == held.revision],
                    [Op.put(held.key, raw, lease=session.id)],
                )
            except OutcomeUnknown:
                if attempt == 2:
                    raise
                continue
            if response.succeeded:
                return
            break
        self._step_down()
        raise NotLeader(f"no longer the leader of {self.name!r}: its key is gone")

    def resign(self) -> None:
        """Stop leading (delete the key; the next candidate, and only it, is woken). A no-op
        when not leader. Never raises an etcd error: a failed delete is retried in the
        background until it succeeds or the session ends."""
        self._step_down()

    def _step_down(self) -> None:
        held, session = self._held, self._session
        self._held = self._session = None
        if held is None or session is None:
            return
        session.lost.unlink(self._on_session_lost)
        gate = self._pool.gate(self._prefix)
        leave_gate(self._client, self._pool, self._prefix, gate, Cleanup(session, held.key, held))

    def _on_session_lost(self, _event: object) -> None:
        session = self._session
        if session is not None and session.lost.is_set():
            self.lost.set()

    # ------------------------------------------------------------------ anyone
    def leader(self, *, timeout: float | None = None) -> KeyValue | None:
        """The leader's KeyValue (key, value = its proclamation, create revision), or None
        when there is no candidate. One linearizable read, retried on any member."""
        response = self._client.range(
            self._prefix,
            prefix=True,
            limit=1,
            sort_order="ascend",
            sort_target="create",
            timeout=timeout,
        )
        return response.kvs[0] if response.kvs else None

    def observe(self) -> Iterator[KeyValue]:
        """Yield the leader's KeyValue now (once there is a leader) and at every change:
        a new leader, or a new value proclaimed. Every leader state (leader key, value, mod
        revision) is yielded exactly once and in order: each proclamation of each leader,
        the next leader read at the revision of the old one's deletion. Member failures do
        not break that (the watch resumes on another member from the last revision). After
        an error the watch cannot resume from (the cluster unreachable past the client's
        retries, a compacted revision), the current leader is read again: states between
        may be missed, none is repeated. Blocks between changes; ends when the client is
        closed; raises non-recoverable errors (PermissionDenied...). Close the generator
        (or break out of the loop) to stop watching."""
        client = self._client
        last: tuple[bytes, int, int] | None = None
        failures = 0
        while True:
            if client.closed:
                return
            try:
                for kv in self._leader_states():
                    if _identity(kv) != last:
                        last = _identity(kv)
                        failures = 0
                        yield kv
            except EtcdError as exc:
                if self._client.closed:  # closed while reading: end, not an error
                    return
                # A member failure, time that ran out, or a watch problem: read the leader again.
                if not (exc.transient or exc.waited_out or isinstance(exc, WatchError)):
                    raise
                log.info("election %r: observe recovers from %r", self.name, exc)
                gevent.sleep(_OBSERVE_BACKOFF.compute(failures))
                failures += 1

    def _leader_states(self) -> Iterator[KeyValue]:
        """The leader states from now on: the current leader, its proclamations until its key
        is deleted, then the leader right after that deletion (read at the deletion's
        revision, so a proclamation the next leader makes at once is not skipped), and so
        on. Raises the client's errors."""
        client = self._client
        at: int | None = None  # the revision to read the leader at (None: now)
        while True:
            try:
                response = client.range(
                    self._prefix,
                    prefix=True,
                    limit=1,
                    sort_order="ascend",
                    sort_target="create",
                    revision=at,
                )
            except CompactedRevision:  # that history is gone: go on from now
                at = None
                continue
            first: KeyValue | None = response.kvs[0] if response.kvs else None
            if at is None:
                at = response.header.revision
            if first is None:
                first = self._first_put(at)
                if first is None:
                    return
                at = first.mod_revision
            kv = first
            yield kv
            deleted: int | None = None
            with client.watch(kv.key, start_revision=at + 1) as watch:
                for event in watch:
                    if event.type is EventType.DELETE:
                        deleted = event.kv.mod_revision
                        break
                    yield event.kv
            if deleted is None:
                return  # the watch ended (client closed)
            at = deleted

    def _first_put(self, at: int) -> KeyValue | None:
        """The first key put under the prefix after revision ``at`` (None: watch ended)."""
        with self._client.watch(
            self._prefix, prefix=True, start_revision=at + 1, filters="nodelete"
        ) as watch:
            for event in watch:
                return event.kv
        return None
