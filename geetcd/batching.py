"""Opportunistic batching of reads (``Client(batch_reads=True)``, the default).

While reads of a client are in flight, the compatible reads that other greenlets start
wait in a queue; as soon as a sender is free they leave together as ONE etcd txn of range
ops (a txn of reads is one linearizable read, or one serializable read when every range
in it is serializable). There is no timer: a read that finds nothing in flight is sent at
once, in its caller's greenlet, exactly as without batching.

Guarantees:

* each caller gets exactly its own RangeResponse (the header is the txn's, whose revision
  is the revision every range of the batch was read at) or its own error; its deadline is
  its own (a caller whose deadline passes raises DeadlineExceeded, the batch goes on for
  the others), and killing a caller's greenlet never cancels its neighbours' reads;
* reads with different ``serializable`` flags, and reads at different explicit
  revisions, never share a txn;
* a batch never holds more ops than the server takes (128 by default): a "too many
  operations in txn" answer lowers the limit for this client, and the batch is split;
* when the whole txn is refused for a reason that may belong to one op, the ops are sent
  one by one, so one bad read never fails its neighbours;
* a txn of reads is idempotent: on a member failure it is retried on another member, as
  any read is.

Reads with a per-call ``retry=`` are not batched (their retry budget is their own).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event

from geetcd.errors import DeadlineExceeded, EtcdError, TooManyOperations
from geetcd.models import RangeResponse
from geetcd.protocol import kv as kv_proto

if TYPE_CHECKING:
    from geetcd.core import Core

__all__ = ["DEFAULT_MAX_OPS", "ReadBatcher"]

log = logging.getLogger("geetcd.client")
_monotonic = time.monotonic

DEFAULT_MAX_OPS = 128
"""etcd's default ``--max-txn-ops``."""
_SENDERS = 2
"""Batches of one group in flight at once (each on its own connection)."""


class _Read:
    __slots__ = ("abandoned", "body", "deadline", "result")

    def __init__(self, body: dict[str, Any], deadline: float) -> None:
        self.body = body
        self.deadline = deadline
        self.result: gevent.event.AsyncResult[RangeResponse] = gevent.event.AsyncResult()
        self.abandoned = False


class _Group:
    """The reads that may share a txn: same ``serializable`` flag and revision."""

    __slots__ = ("pending", "senders")

    def __init__(self) -> None:
        self.pending: deque[_Read] = deque()
        self.senders = 0


class ReadBatcher:
    """Batches the range reads of one client (see the module docstring). Greenlet-safe."""

    def __init__(self, core: Core, parse_range: Callable[[dict[str, Any]], RangeResponse]) -> None:
        self._core = core
        self._parse_range = parse_range
        self._groups: dict[tuple[bool, int], _Group] = {}
        self.max_ops = DEFAULT_MAX_OPS
        self.batches = 0
        """Txns sent with more than one read (for monitoring and tests)."""
        self.batched_reads = 0
        """Reads that went out in such a txn."""

    def __repr__(self) -> str:
        return (
            f"<ReadBatcher max_ops={self.max_ops} batches={self.batches} "
            f"batched_reads={self.batched_reads}>"
        )

    def range(
        self, body: dict[str, Any], *, serializable: bool, revision: int, timeout: float | None
    ) -> RangeResponse:
        """One range read (``body`` a RangeRequest in JSON form), batched with the compatible
        reads of other greenlets when some are in flight."""
        executor = self._core.executor
        deadline = executor.deadline(timeout)
        key = (serializable, revision)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group()
        if group.senders < _SENDERS and not group.pending:
            # Nothing waiting: send now, here, and let reads arriving meanwhile queue.
            group.senders += 1
            try:
                return self._alone(body, deadline)
            finally:
                group.senders -= 1
                self._kick(group)
        read = _Read(body, deadline)
        group.pending.append(read)
        self._kick(group)
        try:
            response = read.result.get(timeout=max(0.0, deadline - _monotonic()))
        except gevent.Timeout as exc:
            raise DeadlineExceeded("range: deadline passed while batched with other reads") from exc
        finally:
            read.abandoned = True
        assert response is not None  # set() is only ever given a RangeResponse
        return response

    # ------------------------------------------------------------------ senders
    def _kick(self, group: _Group) -> None:
        if group.pending and group.senders < _SENDERS:
            group.senders += 1
            self._core.spawn(self._drain, group)

    def _drain(self, group: _Group) -> None:
        """A sender greenlet: send what is queued, batch after batch, until nothing is."""
        try:
            while group.pending:
                batch: list[_Read] = []
                while group.pending and len(batch) < self.max_ops:
                    read = group.pending.popleft()
                    if not read.abandoned:
                        batch.append(read)
                if batch:
                    self._send(batch)
        finally:
            group.senders -= 1
            self._kick(group)

    def _alone(self, body: dict[str, Any], deadline: float) -> RangeResponse:
        result: RangeResponse = self._core.executor.call(
            kv_proto.RANGE, body, self._parse_range, idempotent=True, deadline=deadline
        )
        return result

    def _send(self, batch: list[_Read]) -> None:
        if len(batch) == 1:
            self._one(batch[0])
            return
        deadline = max(read.deadline for read in batch)
        body = {"success": [{"request_range": read.body} for read in batch]}
        try:
            responses = self._core.executor.call(
                kv_proto.TXN, body, self._parse_ranges, idempotent=True, deadline=deadline
            )
        except TooManyOperations:
            size = self.max_ops = max(1, min(self.max_ops, len(batch) // 2))
            log.info("etcd refused a txn of %d reads: now %d per batch", len(batch), size)
            for start in range(0, len(batch), size):
                self._send(batch[start : start + size])
            return
        except EtcdError as exc:
            if exc.transient or isinstance(exc, DeadlineExceeded) or exc.code is None:
                for read in batch:  # the member or the deadline, not one read: everyone's
                    read.result.set_exception(exc)
                return
            # Refused by etcd, maybe for one read only: each is sent on its own.
            gevent.joinall([self._core.spawn(self._one, read) for read in batch])
            return
        except BaseException as exc:
            for read in batch:
                read.result.set_exception(exc)
            raise
        self.batches += 1
        self.batched_reads += len(batch)
        if len(responses) != len(batch):  # pragma: no cover - etcd answers one per op
            from geetcd.errors import MalformedResponse

            error = MalformedResponse(f"txn of {len(batch)} reads got {len(responses)} answers")
            for read in batch:
                read.result.set_exception(error)
            return
        for read, response in zip(batch, responses, strict=True):
            read.result.set(response)

    def _one(self, read: _Read) -> None:
        try:
            read.result.set(self._alone(read.body, read.deadline))
        except EtcdError as exc:
            read.result.set_exception(exc)

    def _parse_ranges(self, obj: dict[str, Any]) -> list[RangeResponse]:
        header = kv_proto.parse_header(obj.get("header"))
        parsed: list[RangeResponse] = []
        for raw in obj.get("responses") or ():
            inner = self._parse_range(raw["response_range"])
            parsed.append(replace(inner, header=header))
        return parsed
