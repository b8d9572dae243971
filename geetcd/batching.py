"""Opportunistic batching: ``Client(batch_reads=True)`` (the default) and
``Client(batch_writes=True)`` (opt-in).

While requests of a client are in flight, the compatible requests that other greenlets
start wait in a queue; as soon as a sender is free they leave together as ONE etcd txn
(a txn of reads is one linearizable read, or one serializable read when every range in
it is serializable). There is no timer: a request that finds nothing in flight is sent at
once, in its caller's greenlet, exactly as without batching.

Guarantees, reads and writes:

* each caller gets exactly its own response (its header is the txn's, whose revision is
  the revision every op of the batch saw) or its own error; its deadline is its own (a
  caller whose deadline passes raises DeadlineExceeded, the batch goes on for the others),
  and killing a caller's greenlet never cancels its neighbours' requests;
* a batch never holds more ops than the server takes (128 by default): a "too many
  operations in txn" answer lowers the limit for this client, and the batch is split;
* when the whole txn is refused by etcd for a reason that may belong to one op (a
  compacted revision, an unknown lease, a value too large...), nothing was applied, and
  the ops are sent one by one, so one bad request never fails its neighbours;
* requests with a per-call ``retry=`` are never batched (their retry budget is their own).

A caller whose deadline passes while it waits raises DeadlineExceeded (its op is then never
sent); a write whose deadline passes while its batch is in flight raises OutcomeUnknown.

Reads: reads with different ``serializable`` flags, and reads at different explicit
revisions, never share a txn. A txn of reads is idempotent: on a member failure it is
retried on another member, as any read is.

Writes (``put``, and ``delete`` of one key): a batch holds distinct keys only (a write to
a key already in the batch waits for the next one). A batch of writes is applied
atomically at ONE revision, and if its answer is lost every write in it raises the SAME
:class:`~geetcd.errors.OutcomeUnknown` (all were applied, or none).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import gevent
import gevent.event

from geetcd.errors import (
    ClientClosed,
    DeadlineExceeded,
    EtcdError,
    MalformedResponse,
    OutcomeUnknown,
    TooManyOperations,
)
from geetcd.models import DeleteResponse, PutResponse, RangeResponse
from geetcd.protocol import kv as kv_proto

if TYPE_CHECKING:
    from geetcd.core import Core
    from geetcd.observe import CallRecord

__all__ = ["DEFAULT_MAX_OPS", "ReadBatcher", "WriteBatcher"]

log = logging.getLogger(__name__)
_monotonic = time.monotonic

DEFAULT_MAX_OPS = 128
"""etcd's default ``--max-txn-ops``."""
_SENDERS = 2
"""Batches of one group in flight at once (each on its own connection)."""

R = TypeVar("R")


class _Kind(Generic[R]):
    """One op kind: its unary path, its key inside a txn and its parser."""

    __slots__ = ("answer", "parse", "path", "request")

    def __init__(
        self, path: str, request: str, answer: str, parse: Callable[[dict[str, Any]], R]
    ) -> None:
        self.path = path
        self.request = request
        self.answer = answer
        self.parse = parse


class _Op:
    __slots__ = ("abandoned", "body", "deadline", "key", "kind", "record", "result", "taken")

    def __init__(
        self,
        kind: _Kind[Any],
        body: dict[str, Any],
        deadline: float,
        record: CallRecord | None,
    ) -> None:
        self.kind = kind
        self.record = record
        self.body = body
        self.deadline = deadline
        self.key: object = body.get("key")
        self.result: gevent.event.AsyncResult[Any] = gevent.event.AsyncResult()
        self.abandoned = False
        self.taken = False  # in a batch being sent


class _Group:
    """The ops that may share a txn."""

    __slots__ = ("pending", "senders")

    def __init__(self) -> None:
        self.pending: deque[_Op] = deque()
        self.senders = 0


class _Batcher:
    """The queueing and sending shared by reads and writes (see the module docstring)."""

    idempotent = True
    distinct_keys = False
    what = "batched request"
    kind = "read"

    def __init__(self, core: Core) -> None:
        self._core = core
        self._groups: dict[Hashable, _Group] = {}
        self.max_ops = DEFAULT_MAX_OPS
        self.batches = 0
        """Txns sent with more than one op (for monitoring and tests)."""
        self.batched_ops = 0
        """Ops that went out in such a txn."""

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} max_ops={self.max_ops} batches={self.batches} "
            f"batched_ops={self.batched_ops}>"
        )

    def _submit(
        self,
        group_key: Hashable,
        kind: _Kind[R],
        body: dict[str, Any],
        timeout: float | None,
        name: str,
    ) -> R:
        deadline = self._core.executor.deadline(timeout)
        group = self._groups.get(group_key)
        if group is None:
            group = self._groups[group_key] = _Group()
        if group.senders < _SENDERS and not group.pending:
            # Nothing waiting: send now, here; requests arriving meanwhile queue.
            group.senders += 1
            try:
                alone: R = self._alone(kind, body, deadline, name)
                return alone
            finally:
                group.senders -= 1
                self._kick(group)
        observers = self._core.observers
        record = observers.call_started(name, _monotonic()) if observers.active else None
        op = _Op(kind, body, deadline, record)
        group.pending.append(op)
        self._kick(group)
        try:
            try:
                result = cast(R, op.result.get(timeout=max(0.0, deadline - _monotonic())))
            except gevent.Timeout as exc:
                if op.taken and not self.idempotent:
                    raise OutcomeUnknown(
                        f"{self.what} may or may not have been applied: the deadline passed "
                        f"while its batch was in flight"
                    ) from exc
                raise DeadlineExceeded(
                    f"{self.what}: deadline passed while batched with others"
                ) from exc
            finally:
                op.abandoned = True
        except BaseException as exc:
            if record is not None:
                observers.call_ended(record, _monotonic(), exc)
            raise
        if record is not None:
            observers.call_ended(record, _monotonic(), None)
        return result

    # ------------------------------------------------------------------ senders
    def _kick(self, group: _Group) -> None:
        if self._core.closed:
            self._fail_pending(group)
        elif group.pending and group.senders < _SENDERS:
            group.senders += 1
            self._core.spawn(self._drain, group)

    def _fail_pending(self, group: _Group) -> None:
        """The client closed: every op still queued raises ClientClosed (never sent)."""
        while group.pending:
            op = group.pending.popleft()
            if not op.abandoned:
                op.result.set_exception(ClientClosed())

    def _interrupted(self, exc: BaseException) -> BaseException:
        """What the callers of a batch get when its sender ends with ``exc``, not an
        EtcdError: the sender is killed by ``close()``: ClientClosed for reads, OutcomeUnknown
        (the txn may have been applied) for writes; anything else as it is."""
        if not self._core.closed:
            return exc
        closed = ClientClosed()
        if self.idempotent:
            return closed
        unknown = OutcomeUnknown(
            f"{self.what} may or may not have been applied: the client was closed while its "
            f"batch was in flight"
        )
        unknown.__cause__ = closed
        return unknown

    def _drain(self, group: _Group) -> None:
        """A sender greenlet: send what is queued, batch after batch, until nothing is."""
        try:
            while group.pending:
                batch = self._take(group)
                if batch:
                    self._send(batch)
        finally:
            group.senders -= 1
            self._kick(group)

    def _take(self, group: _Group) -> list[_Op]:
        pending = group.pending
        batch: list[_Op] = []
        later: list[_Op] = []
        keys: set[object] = set()
        while pending and len(batch) < self.max_ops:
            op = pending.popleft()
            if op.abandoned:
                continue
            if self.distinct_keys:
                if op.key in keys:
                    later.append(op)  # the same key twice: etcd refuses such a txn
                    continue
                keys.add(op.key)
            op.taken = True
            batch.append(op)
        pending.extendleft(reversed(later))
        return batch

    def _alone(
        self,
        kind: _Kind[R],
        body: dict[str, Any],
        deadline: float,
        name: str | None = None,
        records: tuple[CallRecord, ...] = (),
    ) -> R:
        result: R = self._core.executor.call(
            kind.path,
            body,
            kind.parse,
            idempotent=self.idempotent,
            deadline=deadline,
            name=name,
            records=records,
        )
        return result

    def _one(self, op: _Op) -> None:
        records = () if op.record is None else (op.record,)
        try:
            op.result.set(self._alone(op.kind, op.body, op.deadline, records=records))
        except EtcdError as exc:
            op.result.set_exception(exc)
        except BaseException as exc:  # the sender killed (close()): its caller must not wait
            op.result.set_exception(self._interrupted(exc))
            raise

    def _send(self, batch: list[_Op]) -> None:
        if len(batch) == 1:
            self._one(batch[0])
            return
        deadline = max(op.deadline for op in batch)
        body = {"success": [{op.kind.request: op.body} for op in batch]}
        records = tuple(op.record for op in batch if op.record is not None)
        for record in records:
            record.batch_size = len(batch)
        try:
            responses = self._core.executor.call(
                kv_proto.TXN,
                body,
                lambda obj: self._parse(obj, batch),
                idempotent=self.idempotent,
                deadline=deadline,
                drain=self.idempotent,  # a read-only txn (see Request.drain)
                records=records,
            )
        except TooManyOperations:
            size = self.max_ops = max(1, min(self.max_ops, len(batch) // 2))
            log.info("etcd refused a txn of %d ops: now %d per batch", len(batch), size)
            for start in range(0, len(batch), size):
                self._send(batch[start : start + size])
            return
        except EtcdError as exc:
            shared = exc.transient or exc.waited_out or isinstance(exc, OutcomeUnknown)
            if shared or exc.code is None:
                for op in batch:  # the member, the deadline or a lost answer: everyone's
                    op.result.set_exception(exc)
                return
            # Refused by etcd (nothing applied), maybe for one op only: each on its own.
            gevent.joinall([self._core.spawn(self._one, op) for op in batch])
            return
        except BaseException as exc:
            error = self._interrupted(exc)
            for op in batch:
                op.result.set_exception(error)
            raise
        self.batches += 1
        self.batched_ops += len(batch)
        if self._core.observers.active:
            self._core.observers.emit("batch_sent", self.kind, len(batch))
        for op, response in zip(batch, responses, strict=True):
            op.result.set(response)

    @staticmethod
    def _parse(obj: dict[str, Any], batch: list[_Op]) -> list[Any]:
        header = kv_proto.parse_header(obj.get("header"))
        answers = obj.get("responses") or ()
        if len(answers) != len(batch):
            raise MalformedResponse(f"a txn of {len(batch)} ops got {len(answers)} answers")
        return [
            replace(op.kind.parse(answer[op.kind.answer]), header=header)
            for op, answer in zip(batch, answers, strict=True)
        ]


class ReadBatcher(_Batcher):
    """Batches the range reads of one client (see the module docstring). Greenlet-safe."""

    what = "range"

    def __init__(self, core: Core, parse_range: Callable[[dict[str, Any]], RangeResponse]) -> None:
        super().__init__(core)
        self._range = _Kind(kv_proto.RANGE, "request_range", "response_range", parse_range)

    def range(
        self,
        body: dict[str, Any],
        *,
        serializable: bool,
        revision: int,
        timeout: float | None,
        name: str = "range",
    ) -> RangeResponse:
        """One range read (``body`` a RangeRequest in JSON form), batched with the compatible
        reads of other greenlets when some are in flight."""
        return self._submit((serializable, revision), self._range, body, timeout, name)


class WriteBatcher(_Batcher):
    """Batches the puts and single-key deletes of one client (``batch_writes=True``; see
    the module docstring for the shared revision and the shared OutcomeUnknown)."""

    idempotent = False
    distinct_keys = True
    what = "write"
    kind = "write"

    def __init__(
        self,
        core: Core,
        parse_put: Callable[[dict[str, Any]], PutResponse],
        parse_delete: Callable[[dict[str, Any]], DeleteResponse],
    ) -> None:
        super().__init__(core)
        self._put = _Kind(kv_proto.PUT, "request_put", "response_put", parse_put)
        self._delete = _Kind(
            kv_proto.DELETE, "request_delete_range", "response_delete_range", parse_delete
        )

    def put(self, body: dict[str, Any], timeout: float | None) -> PutResponse:
        """One put (``body`` a PutRequest in JSON form), batched when others are in flight."""
        return self._submit("write", self._put, body, timeout, "put")

    def delete(self, body: dict[str, Any], timeout: float | None) -> DeleteResponse:
        """One delete of a single key (no ``range_end``), batched likewise."""
        return self._submit("write", self._delete, body, timeout, "delete")
