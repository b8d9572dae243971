"""Software transactional memory with the semantics of Go's ``concurrency.STM``.

``client.stm(fn)`` runs ``fn(tx)``: ``tx.get(key)`` reads (the transaction's own writes
first), ``tx.put`` / ``tx.delete`` buffer writes. When ``fn`` returns, the writes are
committed with ONE txn whose compares guard what was read; if a compare fails (another
writer got in between) ``fn`` runs again on fresh data, so ``fn`` must have no side
effects besides ``tx``. The isolation levels are Go's:

``serializable_snapshot`` (default)
    every read sees the snapshot of the first read (its revision); the commit checks that
    no key read changed, and that no key written was changed after the snapshot.
    Serializable, and free of write skew on the written keys.
``serializable``
    reads at the first read's revision too; the commit checks the keys read.
``repeatable_reads``
    each key is read when first asked (a serializable read of the member, possibly a
    little stale: the commit catches that); the commit checks the keys read.
``read_committed``
    reads as ``repeatable_reads`` and compares nothing: the writes are applied whatever
    happened meanwhile. So it cannot keep a read-modify-write invariant (two concurrent
    increments may both read 1 and both write 2): use it only for blind writes.

After a conflict at ``serializable_snapshot`` / ``serializable`` the failed commit reads
the keys back in the same request (Go's prefetch), so the rerun costs one request less.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from geetcd.errors import (
    DeadlineExceeded,
    EtcdError,
    FutureRevision,
    InvalidArgument,
    InvalidType,
    OutcomeUnknown,
    STMConflict,
)
from geetcd.models import KeyValue, RangeResponse, TxnResponse
from geetcd.protocol.codec import to_bytes
from geetcd.protocol.kv import RangeOptions
from geetcd.recipes.gate import deadline_of, remaining
from geetcd.recipes.queue import rpc_timeout
from geetcd.txn import Compare, Comparison, Op, OpDelete, OpGet, OpPut

if TYPE_CHECKING:
    from geetcd.recipes._api import KVClient

__all__ = ["ISOLATIONS", "STMTx", "run_stm"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

ISOLATIONS = ("serializable_snapshot", "serializable", "repeatable_reads", "read_committed")
_SNAPSHOT = ("serializable_snapshot", "serializable")


@dataclass(frozen=True, slots=True)
class _Read:
    kv: KeyValue | None
    revision: int  # the header revision of the read


@dataclass(frozen=True, slots=True)
class _Guard:
    """One compare of the commit: ``mod_revision(key) == value`` or ``< value``."""

    key: bytes
    less: bool
    value: int

    def comparison(self) -> Comparison:
        target = Compare.mod_revision(self.key)
        return (target < self.value) if self.less else (target == self.value)

    def holds(self, kv: KeyValue | None) -> bool:
        mod = 0 if kv is None else kv.mod_revision
        return mod < self.value if self.less else mod == self.value


def _key(key: object) -> bytes:
    raw = to_bytes(key, "key")
    if not raw:
        raise InvalidArgument("key must not be empty")
    return raw


class STMTx:
    """The transaction handed to the function of ``client.stm(fn)``; valid only during that
    call. Reads do I/O (one request per key not read before); writes are buffered."""

    __slots__ = (
        "_client",
        "_deadline",
        "_done",
        "_isolation",
        "_prefetch",
        "_reads",
        "_snap",
        "_writes",
    )

    def __init__(self, client: KVClient, isolation: str, deadline: float | None) -> None:
        self._client = client
        self._isolation = isolation
        self._deadline = deadline
        self._reads: dict[bytes, _Read] = {}
        self._writes: dict[bytes, tuple[bytes | None, OpPut | OpDelete]] = {}
        self._prefetch: dict[bytes, _Read] = {}
        self._snap = 0  # the snapshot revision (snapshot isolations), 0 before the first read
        self._done = False

    def __repr__(self) -> str:
        return (
            f"<STMTx {self._isolation} reads={len(self._reads)} writes={len(self._writes)} "
            f"snapshot={self._snap or '-'}>"
        )

    # ------------------------------------------------------------------ the fn's API
    def get(self, key: str | bytes) -> bytes | None:
        """The value of ``key`` in this transaction (its own write if any), or None when it
        does not exist."""
        raw = self._usable(key)
        if raw in self._writes:
            return self._writes[raw][0]
        kv = self._read(raw).kv
        return None if kv is None else kv.value

    def rev(self, key: str | bytes) -> int:
        """The mod revision ``key`` had when this transaction read it (0: did not exist)."""
        kv = self._read(self._usable(key)).kv
        return 0 if kv is None else kv.mod_revision

    def put(self, key: str | bytes, value: str | bytes, *, lease: object = None) -> None:
        """Buffer a put of ``key`` (attached to ``lease``, an id or a Lease, if given)."""
        raw = self._usable(key)
        data = to_bytes(value, "value")
        self._writes[raw] = (data, Op.put(raw, data, lease=lease))

    def delete(self, key: str | bytes) -> None:
        """Buffer a delete of ``key``."""
        raw = self._usable(key)
        self._writes[raw] = (None, Op.delete(raw))

    # ------------------------------------------------------------------ reads
    def _usable(self, key: object) -> bytes:
        if self._done:
            raise InvalidArgument("this STM transaction has ended; use tx only inside fn")
        return _key(key)

    def _read(self, key: bytes) -> _Read:
        known = self._reads.get(key)
        if known is not None:
            return known
        read = self._prefetch.pop(key, None)
        if read is None:
            read = self._fetch(key)
        if self._isolation in _SNAPSHOT and not self._snap:
            self._snap = read.revision  # the first read fixes the snapshot
        self._reads[key] = read
        return read

    def _fetch(self, key: bytes) -> _Read:
        client, timeout = self._client, rpc_timeout(self._deadline)
        if self._isolation in _SNAPSHOT:
            if not self._snap:
                response = client.range(key, timeout=timeout)
            else:
                try:
                    response = client.range(
                        key, revision=self._snap, serializable=True, timeout=timeout
                    )
                except FutureRevision:  # a member behind the snapshot: ask the leader
                    response = client.range(key, revision=self._snap, timeout=timeout)
        else:
            response = client.range(key, serializable=True, timeout=timeout)
        return _Read(response.kvs[0] if response.kvs else None, response.header.revision)

    # ------------------------------------------------------------------ commit
    def _guards(self) -> list[_Guard]:
        if self._isolation == "read_committed":
            return []
        guards = [
            _Guard(key, False, 0 if read.kv is None else read.kv.mod_revision)
            for key, read in self._reads.items()
        ]
        if self._isolation == "serializable_snapshot" and self._reads:
            first = min(read.revision for read in self._reads.values())
            guards.extend(_Guard(key, True, first + 1) for key in self._writes)
        return guards

    def _commit(self) -> bool:
        """One txn; True if committed. On a conflict the state is reset for the rerun."""
        guards = self._guards()
        ops = [op for _value, op in self._writes.values()]
        keys = list(self._reads) if self._isolation in _SNAPSHOT else []
        failure = [Op.get(key) for key in keys]
        compares = [guard.comparison() for guard in guards]
        try:
            response = self._client.txn(compares, ops, failure, timeout=rpc_timeout(self._deadline))
        except OutcomeUnknown as unknown:
            if _applied(self._client, guards, self._writes, self._deadline, unknown):
                return True
            self._reset({})
            return False
        if response.succeeded:
            return True
        self._reset(_prefetched(keys, response))
        return False

    def _reset(self, prefetch: dict[bytes, _Read]) -> None:
        self._reads = {}
        self._writes = {}
        self._prefetch = prefetch
        self._snap = 0


def _prefetched(keys: list[bytes], response: TxnResponse) -> dict[bytes, _Read]:
    reads: dict[bytes, _Read] = {}
    for key, result in zip(keys, response.responses, strict=False):
        if isinstance(result, RangeResponse):
            kv = result.kvs[0] if result.kvs else None
            reads[key] = _Read(kv, response.header.revision)
    return reads


def _read_many(
    client: KVClient, keys: list[bytes], revision: int, deadline: float | None
) -> dict[bytes, KeyValue | None]:
    """The keys at ``revision`` (0: now) in one read-only txn (retried on any member)."""
    options = RangeOptions(revision=revision)
    response = client.txn(
        (), [OpGet(key, None, False, options) for key in keys], timeout=rpc_timeout(deadline)
    )
    state: dict[bytes, KeyValue | None] = {}
    for key, result in zip(keys, response.responses, strict=False):
        kvs = result.kvs if isinstance(result, RangeResponse) else ()
        state[key] = kvs[0] if kvs else None
    return state


def _applied(
    client: KVClient,
    guards: list[_Guard],
    writes: dict[bytes, tuple[bytes | None, OpPut | OpDelete]],
    deadline: float | None,
    unknown: OutcomeUnknown,
) -> bool:
    """Resolve a commit whose answer was lost: True if it was applied, False if surely not;
    raises ``unknown`` again when the state cannot tell.

    Not applied: a key we put still has a mod revision its guard allowed (our commit would
    have moved it past that). Applied: every key we put holds our value at one common mod
    revision R, every key we deleted is absent at R, and every guard held at R - 1. (An
    identical transaction committed by someone else at that moment looks the same.)
    """
    puts = [key for key, (value, _op) in writes.items() if value is not None]
    deletes = [key for key, (value, _op) in writes.items() if value is None]
    try:
        now = _read_many(client, sorted({*puts, *deletes, *(g.key for g in guards)}), 0, deadline)
        for guard in guards:
            kv = now[guard.key]
            if guard.key in puts and kv is not None and guard.holds(kv):
                return False
        written = [now[key] for key in puts]
        if not puts or any(kv is None or kv.value != writes[kv.key][0] for kv in written):
            raise unknown
        revisions = {kv.mod_revision for kv in written if kv is not None}
        if len(revisions) != 1:
            raise unknown
        (at,) = revisions
        if deletes and any(
            v is not None for v in _read_many(client, deletes, at, deadline).values()
        ):
            raise unknown
        if guards:
            before = _read_many(client, sorted({g.key for g in guards}), at - 1, deadline)
            if not all(guard.holds(before[guard.key]) for guard in guards):
                raise unknown
    except OutcomeUnknown:
        raise
    except EtcdError as exc:
        log.info("could not resolve a lost STM commit: %s", exc)
        raise unknown from exc
    log.info("a lost STM commit was found applied at revision %d", at)
    return True


def run_stm(
    client: KVClient,
    fn: Callable[[STMTx], _T],
    *,
    isolation: str = "serializable_snapshot",
    retries: int | None = None,
    timeout: float | None = None,
) -> _T:
    """Run ``fn(tx)`` and commit its writes atomically; rerun it on a conflict.

    Returns what the committed run of ``fn`` returned. ``isolation``: one of
    :data:`ISOLATIONS` (see the module docstring). ``retries``: reruns allowed after the
    first run (None: no limit); STMConflict when they are used up. ``timeout``: seconds for
    the whole call, reruns included (None: no overall limit, each request has the client's
    timeout); DeadlineExceeded when it passes. An exception from ``fn`` ends the call
    unchanged with nothing committed. A commit whose answer is lost (OutcomeUnknown) is
    resolved by reading the keys back: applied, the call returns; surely not applied,
    ``fn`` reruns; undecidable, OutcomeUnknown is raised.

    InvalidType / InvalidArgument before any I/O for a non-callable ``fn``, an unknown
    isolation, a bad ``retries`` (bool, negative) or ``timeout`` (bool, NaN, inf, < 0).
    """
    if not callable(fn):
        raise InvalidType(f"fn must be callable, got {type(fn).__name__}")
    if not isinstance(isolation, str):
        raise InvalidType(f"isolation must be a str, got {type(isolation).__name__}")
    if isolation not in ISOLATIONS:
        raise InvalidArgument(
            f"isolation must be one of {', '.join(ISOLATIONS)}, got {isolation!r}"
        )
    if retries is not None:
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise InvalidType(f"retries must be an int or None, got {type(retries).__name__}")
        if retries < 0:
            raise InvalidArgument(f"retries must be >= 0, got {retries}")
    deadline = deadline_of(timeout)
    tx = STMTx(client, isolation, deadline)
    attempts = 0
    try:
        while True:
            if deadline is not None and remaining(deadline) == 0.0:
                raise DeadlineExceeded(f"STM transaction not committed within {timeout} s")
            attempts += 1
            result = fn(tx)
            if tx._commit():
                return result
            if retries is not None and attempts > retries:
                raise STMConflict(
                    f"STM transaction conflicted {attempts} times (retries={retries})",
                    attempts=attempts,
                )
            log.debug("STM conflict (attempt %d); running fn again", attempts)
    finally:
        tx._done = True
