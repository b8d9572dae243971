"""The waiter queue of Go's ``concurrency`` package, shared by :class:`~geetcd.recipes.Lock`
and :class:`~geetcd.recipes.Election`.

Layout (as Go's ``concurrency.Mutex`` / ``Election`` and so ``etcdctl lock`` / ``elect``):
a waiter is the key ``prefix + lease-id-in-lowercase-hex`` (``prefix`` = ``name + "/"``),
created with ``create_revision == 0`` and attached to the waiter's session lease. The key
with the lowest create revision under the prefix is the owner (leader). Each waiter waits
for the deletion of one key only: the newest key created before its own. Create revisions
only grow, so the keys before a waiter only ever go away: when the last one is gone the
waiter owns the prefix, and nobody else is woken by that change (no thundering herd).

Requests: enqueue is one txn (create + read the predecessor). Each wait is one watch of the
predecessor, one read-only txn that confirms it (is it still the newest key before ours,
does ours still exist?), and after its deletion the same read-only txn again. So a
contended acquisition costs a fixed number of requests however many wait. A hand-off
between two greenlets of one client (:func:`hand_over`) is one txn: it deletes the holder's
key and creates the next holder's key (named after the client's other session lease) at
once.
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING

import gevent
import gevent.event

from geetcd.config import ExponentialBackoff
from geetcd.errors import DeadlineExceeded, EtcdError, OutcomeUnknown
from geetcd.models import Event, EventType, KeyValue, RangeResponse, TxnResponse
from geetcd.protocol.kv import RangeOptions, SortOrder, SortTarget
from geetcd.recipes.gate import FifoGate, remaining
from geetcd.recipes.sessions import Handed, Queued, SessionPool
from geetcd.txn import Compare, Op, OpGet

if TYPE_CHECKING:
    from geetcd.lease import Session
    from geetcd.recipes._api import KVClient

__all__ = [
    "Cleanup",
    "Queued",
    "Turn",
    "enqueue",
    "enter_gate",
    "first_created",
    "hand_over",
    "leave_gate",
    "newest_below",
    "rpc_timeout",
    "wait_turn",
    "waiter_key",
]

log = logging.getLogger(__name__)
_CLEANUP_BACKOFF = ExponentialBackoff(base=0.1, cap=2.0)


class Turn(enum.Enum):
    """How :func:`wait_turn` ended."""

    OWNER = "owner"
    """No key was created before ours any more and ours still exists."""
    TIMEOUT = "timeout"
    """The deadline passed first (our key is still queued)."""
    LOST = "lost"
    """Our key is gone (session lease lost or revoked, or the key deleted by someone)."""


def waiter_key(prefix: bytes, lease_id: int) -> bytes:
    """``prefix`` + the lease id in lowercase hex, as Go's ``fmt.Sprintf("%s%x")``."""
    return prefix + format(lease_id, "x").encode()


def rpc_timeout(deadline: float | None) -> float | None:
    """The per-call timeout left before ``deadline`` (None: the client's default)."""
    left = remaining(deadline)
    return None if left is None else max(left, 0.001)


def first_created(prefix: bytes, *, keys_only: bool = False) -> OpGet:
    """A txn read of the key with the lowest create revision under ``prefix`` (the owner)."""
    options = RangeOptions(
        limit=1,
        sort_order=SortOrder.ASCEND,
        sort_target=SortTarget.CREATE,
        keys_only=keys_only,
    )
    return OpGet(prefix, None, True, options)


def newest_below(prefix: bytes, max_create_revision: int) -> OpGet:
    """A txn read of the newest key under ``prefix`` created at or before the revision."""
    options = RangeOptions(
        limit=1,
        sort_order=SortOrder.DESCEND,
        sort_target=SortTarget.CREATE,
        keys_only=True,
        max_create_revision=max_create_revision,
    )
    return OpGet(prefix, None, True, options)


def _newest_two(prefix: bytes) -> OpGet:
    options = RangeOptions(
        limit=2, sort_order=SortOrder.DESCEND, sort_target=SortTarget.CREATE, keys_only=True
    )
    return OpGet(prefix, None, True, options)


def _range(response: TxnResponse, index: int) -> tuple[KeyValue, ...]:
    result = response.responses[index]
    return result.kvs if isinstance(result, RangeResponse) else ()


def enqueue(
    client: KVClient, prefix: bytes, session: Session, value: bytes, deadline: float | None
) -> Queued:
    """Create this session's waiter key under ``prefix`` and return it queued.

    The caller holds the prefix's gate of this client, so an existing key with our name is a
    leftover of an earlier failed cleanup: it is deleted and the key created afresh (every
    acquisition gets a new, higher create revision). A create whose answer is lost is
    resolved by reading the key back. Raises the client's errors (ClusterUnavailable,
    DeadlineExceeded...).
    """
    key = waiter_key(prefix, session.id)
    while True:
        try:
            response = client.txn(
                [Compare.create_revision(key) == 0],
                [Op.put(key, value, lease=session.id), _newest_two(prefix)],
                timeout=rpc_timeout(deadline),
            )
        except OutcomeUnknown:
            kv = client.get(key, timeout=rpc_timeout(deadline))
            if kv is not None and kv.lease == session.id:
                return Queued(key, kv.create_revision, None, 0, checked=False)
            continue
        if response.succeeded:
            revision = response.header.revision
            newest = _range(response, 1)
            predecessor = newest[1].key if len(newest) > 1 else None
            return Queued(key, revision, predecessor, revision, checked=True)
        log.info("removing a leftover waiter key %r before queueing again", key)
        client.delete(key, timeout=rpc_timeout(deadline))


def hand_over(
    client: KVClient, prefix: bytes, queued: Queued, partner: Session, value: bytes
) -> Queued | None:
    """In one txn: delete ``queued`` (guarded by its create revision) and create the waiter
    key of ``partner`` (which must not exist), reading the new key's predecessor.

    Returns the new key, queued, or None when the txn surely did not apply (``queued`` is
    gone, the partner's key exists, the partner lease is gone, any error before sending).
    A txn whose answer is lost is resolved by reading the partner's key back; when even
    that fails, None is returned and the partner's key may exist: the caller must then
    delete it (unconditionally, before anyone else of this client may create it).
    Returns None rather than raising an etcd error.
    """
    key = waiter_key(prefix, partner.id)
    try:
        response = client.txn(
            [
                Compare.create_revision(queued.key) == queued.revision,
                Compare.create_revision(key) == 0,
            ],
            [Op.delete(queued.key), Op.put(key, value, lease=partner.id), _newest_two(prefix)],
        )
    except OutcomeUnknown:
        try:
            kv = client.get(key)
        except EtcdError as exc:
            log.info("hand-off of %r: answer lost and not readable back (%s)", prefix, exc)
            return None
        if kv is not None and kv.lease == partner.id:
            return Queued(key, kv.create_revision, None, 0, checked=False)
        return None
    except EtcdError as exc:
        log.info("hand-off of %r in one txn failed (%s); two requests instead", prefix, exc)
        return None
    if not response.succeeded:
        return None
    revision = response.header.revision
    newest = _range(response, 2)
    predecessor = newest[1].key if len(newest) > 1 else None
    return Queued(key, revision, predecessor, revision, checked=True)


def wait_turn(
    client: KVClient,
    prefix: bytes,
    queued: Queued,
    deadline: float | None,
    lost: gevent.event.Event,
) -> Turn:
    """Wait until ``queued`` owns ``prefix``, ``deadline`` passes, or ``lost`` is set.

    Waits on one predecessor at a time: a watch of its deletion is opened first (from
    "now", so etcd serves it from its synced watchers at once; a watch from a past revision
    may wait up to 100 ms for etcd's catch-up loop), then one read-only txn checks which
    key is the predecessor now and that ours still exists; a deletion between the two is
    seen by one or the other. Leaves our key in place in every case; the caller deletes it
    when it gives up.
    """
    if queued.checked and queued.predecessor is None:
        return Turn.OWNER
    predecessor = queued.predecessor if queued.checked else None
    while True:
        if lost.is_set():
            return Turn.LOST
        if deadline is not None and remaining(deadline) == 0.0:
            return Turn.TIMEOUT
        if predecessor is None:
            turn, predecessor = _check(client, prefix, queued, deadline)
            if turn is not None:
                return turn
        assert predecessor is not None
        waited = _wait_deleted(client, prefix, queued, predecessor, deadline=deadline, lost=lost)
        if waited is Turn.TIMEOUT or waited is Turn.OWNER or waited is Turn.LOST:
            return waited
        predecessor = waited


def _check(
    client: KVClient, prefix: bytes, queued: Queued, deadline: float | None
) -> tuple[Turn | None, bytes | None]:
    """One read-only txn: (OWNER or LOST, None), or (None, the current predecessor)."""
    check = client.txn(
        (),
        [newest_below(prefix, queued.revision - 1), Op.get(queued.key, keys_only=True)],
        timeout=rpc_timeout(deadline),
    )
    if not _range(check, 1):
        return Turn.LOST, None
    older = _range(check, 0)
    if not older:
        return Turn.OWNER, None
    return None, older[0].key


def _wait_deleted(
    client: KVClient,
    prefix: bytes,
    queued: Queued,
    predecessor: bytes,
    *,
    deadline: float | None,
    lost: gevent.event.Event,
) -> Turn | bytes | None:
    """Watch ``predecessor``, confirm it is still the one, wait for its deletion.

    Returns TIMEOUT, OWNER or LOST when that is known, another predecessor to wait on
    instead, or None once this one was deleted (or the watch failed): check again.
    """
    wake = gevent.event.Event()

    def on_event(event: Event) -> None:
        if event.type is EventType.DELETE:
            wake.set()

    def on_error(error: BaseException) -> None:
        log.debug("watch of %r ended (%r); checking the queue again", predecessor, error)
        wake.set()

    def on_lost(_event: object) -> None:
        wake.set()

    lost.rawlink(on_lost)
    watch = None
    try:
        try:
            watch = client.watch(
                predecessor,
                filters="noput",
                callback=on_event,
                on_error=on_error,
                timeout=rpc_timeout(deadline),
            )
        except DeadlineExceeded:
            if deadline is not None and remaining(deadline) == 0.0:
                return Turn.TIMEOUT
            raise
        turn, now = _check(client, prefix, queued, deadline)
        if turn is not None:
            return turn
        if now != predecessor:
            return now
        if not wake.wait(remaining(deadline)):
            return Turn.TIMEOUT
        return None
    finally:
        lost.unlink(on_lost)
        if watch is not None:
            # Off the hand-off path: closing the stream may take a switch or two.
            client.spawn(watch.cancel)


class Cleanup:
    """What to delete when a candidacy ends: ``key`` of ``session``, guarded by the create
    revision once ``queued`` is known, unconditional before (safe: only the holder of this
    client's gate for the prefix ever creates that key)."""

    __slots__ = ("key", "queued", "session")

    def __init__(self, session: Session, key: bytes, queued: Queued | None) -> None:
        self.session = session
        self.key = key
        self.queued = queued

    def delete(self, client: KVClient) -> bool:
        """One delete attempt; True when the key is surely gone (or no longer ours)."""
        queued = self.queued
        try:
            if queued is None:
                client.delete(self.key)
            else:
                client.txn(
                    [Compare.create_revision(self.key) == queued.revision],
                    [Op.delete(self.key)],
                )
        except EtcdError as exc:
            log.warning("deleting waiter key %r failed (%s); retrying", self.key, exc)
            return False
        return True


def enter_gate(
    client: KVClient, pool: SessionPool, prefix: bytes, deadline: float | None, *, wait: bool
) -> tuple[FifoGate | None, Handed | None]:
    """Enter the prefix's local gate (waiting until ``deadline`` if ``wait``, else only if
    it is free): ``(gate, key handed over by the previous holder or None)``, or
    ``(None, None)`` when not entered. A caller that leaves the queue without entering
    (timeout, kill) deletes a key that was handed to it as it left, unless the gate went on
    to the next waiter (which then gets the key)."""
    gate = pool.gate(prefix)
    entered = False
    try:
        entered = gate.acquire(deadline) if wait else gate.try_acquire()
    finally:
        if not entered:
            orphan = pool.orphan(prefix, gate)
            if orphan is not None and gate.try_acquire():
                leave_gate(
                    client,
                    pool,
                    prefix,
                    gate,
                    Cleanup(orphan.session, orphan.queued.key, orphan.queued),
                )
            pool.leave(prefix, gate)
    if not entered:
        return None, None
    return gate, pool.take(prefix)


def leave_gate(
    client: KVClient,
    pool: SessionPool,
    prefix: bytes,
    gate: FifoGate,
    cleanup: Cleanup | None,
    *more: Cleanup,
) -> None:
    """Delete our waiter key(s) if they may exist, then hand the gate on. If a delete fails
    (or is interrupted) a background greenlet keeps trying and hands the gate on when done,
    so neither the next local candidate nor a remote waiter is blocked by a stale key.
    Never raises an etcd error."""
    pending = [c for c in (cleanup, *more) if c is not None and not c.session.lost.is_set()]
    try:
        while pending and pending[0].delete(client):
            pending.pop(0)
    finally:
        if not pending:
            gate.release()
            pool.leave(prefix, gate)
        else:
            client.spawn(_leave_in_background, client, pool, prefix, gate, pending)


def _leave_in_background(
    client: KVClient, pool: SessionPool, prefix: bytes, gate: FifoGate, pending: list[Cleanup]
) -> None:
    attempt = 0
    try:
        while pending and not client.closed:
            if pending[0].session.lost.is_set():
                pending.pop(0)
                continue
            gevent.sleep(_CLEANUP_BACKOFF.compute(attempt))
            attempt += 1
            if pending[0].delete(client):
                pending.pop(0)
    finally:
        gate.release()
        pool.leave(prefix, gate)
