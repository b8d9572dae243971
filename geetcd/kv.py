"""The v3 KV API on a core: :class:`KV` (Go's ``clientv3.NewKV``).

Range, get, put, delete, txn and compaction, with the optional read and write batchers
(:mod:`geetcd.batching`). :class:`geetcd.Client` is a KV (it inherits every method here);
``KV(core)`` works on its own over any :class:`geetcd.core.Core`. Every method is
greenlet-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

from geetcd.batching import ReadBatcher, WriteBatcher
from geetcd.config import Retry
from geetcd.core import Core
from geetcd.errors import InvalidArgument
from geetcd.feature import Feature
from geetcd.models import DeleteResponse, Header, KeyValue, PutResponse, RangeResponse, TxnResponse
from geetcd.protocol import kv as kv_proto
from geetcd.protocol.codec import to_bytes
from geetcd.protocol.kv import RangeOptions, check_bool, check_int
from geetcd.txn import Compare, Comparison, Op, OpGet, OpTxn, TxnOp, check_txn, lease_id, txn_body

__all__ = ["KV"]


def _opt_revision(value: int | None, what: str) -> int:
    """A revision option: None or 0 mean "latest" (etcd's own 0), else an int >= 1."""
    return 0 if value is None else check_int(value, what, minimum=0)


class KV(Feature):
    """The v3 KV API on ``core``. ``batch_reads`` / ``batch_writes``: see
    :class:`geetcd.Client` and :mod:`geetcd.batching`. Building it does no I/O."""

    def __init__(self, core: Core, *, batch_reads: bool = True, batch_writes: bool = False) -> None:
        check_bool(batch_reads, "batch_reads")
        check_bool(batch_writes, "batch_writes")
        Feature.__init__(self, core)
        self._ks = core.ks
        self._parse_range = partial(kv_proto.parse_range, ks=self._ks)
        self._parse_put = partial(kv_proto.parse_put, ks=self._ks)
        self._parse_delete = partial(kv_proto.parse_delete, ks=self._ks)
        self._parse_txn = partial(kv_proto.parse_txn, ks=self._ks)
        self._reads = ReadBatcher(core, self._parse_range) if batch_reads else None
        self._writes = (
            WriteBatcher(core, self._parse_put, self._parse_delete) if batch_writes else None
        )

    @property
    def read_batcher(self) -> ReadBatcher | None:
        """The read batcher (``batch_reads=True``; its counters show how reads were sent),
        or None when reads are not batched."""
        return self._reads

    @property
    def write_batcher(self) -> WriteBatcher | None:
        """The write batcher (``batch_writes=True``), or None when writes are not batched."""
        return self._writes

    def _call(  # noqa: PLR0917 - internal, positional by design
        self,
        path: str,
        body: dict[str, Any],
        parse: Callable[[dict[str, Any]], Any],
        idempotent: bool,
        timeout: float | None,
        retry: Retry | None,
        name: str | None = None,
        drain: bool = False,
    ) -> Any:
        return self._core.call(
            path,
            body,
            parse,
            idempotent=idempotent,
            timeout=timeout,
            retry=retry,
            name=name,
            drain=drain,
        )

    # ------------------------------------------------------------------ KV: reads
    def range(
        self,
        key: str | bytes,
        range_end: str | bytes | None = None,
        *,
        prefix: bool = False,
        limit: int = 0,
        revision: int | None = None,
        serializable: bool = False,
        keys_only: bool = False,
        count_only: bool = False,
        sort_order: str | kv_proto.SortOrder | None = None,
        sort_target: str | kv_proto.SortTarget | None = None,
        min_mod_revision: int | None = None,
        max_mod_revision: int | None = None,
        min_create_revision: int | None = None,
        max_create_revision: int | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> RangeResponse:
        """Read ``key``, or ``[key, range_end)``, or every key starting with ``key`` (prefix).

        ``count`` in the result is the number of keys in the range, ``more`` tells whether
        ``limit`` cut ``kvs``. ``revision`` reads the past (CompactedRevision if compacted,
        FutureRevision if ahead). Linearizable unless ``serializable``. Retried on any member.
        """
        wire, end = self._ks.span(key, range_end, check_bool(prefix, "prefix"))
        options = RangeOptions(
            limit=check_int(limit, "limit"),
            revision=_opt_revision(revision, "revision"),
            sort_order=0 if sort_order is None else kv_proto.sort_order(sort_order),
            sort_target=0 if sort_target is None else kv_proto.sort_target(sort_target),
            serializable=check_bool(serializable, "serializable"),
            keys_only=check_bool(keys_only, "keys_only"),
            count_only=check_bool(count_only, "count_only"),
            min_mod_revision=_opt_revision(min_mod_revision, "min_mod_revision"),
            max_mod_revision=_opt_revision(max_mod_revision, "max_mod_revision"),
            min_create_revision=_opt_revision(min_create_revision, "min_create_revision"),
            max_create_revision=_opt_revision(max_create_revision, "max_create_revision"),
        )
        body = kv_proto.range_body(wire, end, options)
        if self._reads is not None and retry is None:
            self._core.start()
            return self._reads.range(
                body, serializable=options.serializable, revision=options.revision, timeout=timeout
            )
        result: RangeResponse = self._call(
            kv_proto.RANGE, body, self._parse_range, True, timeout, retry
        )
        return result

    def get(
        self,
        key: str | bytes,
        *,
        revision: int | None = None,
        serializable: bool = False,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> KeyValue | None:
        """The KeyValue of ``key``, or None if it does not exist (at ``revision``)."""
        wire = self._ks.key(key)
        at = _opt_revision(revision, "revision")
        serial = check_bool(serializable, "serializable")
        # No options object for the common get (the builder then sends the key alone).
        opts = RangeOptions(revision=at, serializable=serial) if at or serial else None
        body = kv_proto.range_body(wire, None, opts)
        response: RangeResponse
        if self._reads is not None and retry is None:
            self._core.start()
            response = self._reads.range(
                body, serializable=serial, revision=at, timeout=timeout, name="get"
            )
        else:
            response = self._call(
                kv_proto.RANGE, body, self._parse_range, True, timeout, retry, name="get"
            )
        return response.kvs[0] if response.kvs else None

    def get_prefix(self, prefix: str | bytes, **options: Any) -> list[KeyValue]:
        """Every key starting with ``prefix`` (same options as :meth:`range`), as a list."""
        return list(self.range(prefix, prefix=True, **options).kvs)

    def iter_prefix(
        self,
        prefix: str | bytes,
        *,
        page_size: int = 1000,
        keys_only: bool = False,
        revision: int | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> Iterator[KeyValue]:
        """Iterate a (huge) prefix in key order, ``page_size`` keys per request.

        All pages are read at the revision of the first page (or ``revision``), so the
        iteration is one consistent snapshot even while others write; if that revision is
        compacted mid-way, CompactedRevision is raised. ``timeout`` and ``retry`` apply to
        each page's request.
        """
        if check_int(page_size, "page_size", minimum=1) < 1:
            raise InvalidArgument("page_size must be >= 1")
        start, end = self._ks.span(prefix, None, True)
        at = _opt_revision(revision, "revision")
        while True:
            options = RangeOptions(
                limit=page_size, revision=at, keys_only=check_bool(keys_only, "keys_only")
            )
            body = kv_proto.range_body(start, end, options)
            page: RangeResponse = self._call(
                kv_proto.RANGE, body, self._parse_range, True, timeout, retry
            )
            if not at:
                at = page.header.revision
            yield from page.kvs
            if not page.more or not page.kvs:
                return
            start = self._ks.prefix + page.kvs[-1].key + b"\0"

    # ------------------------------------------------------------------ KV: writes
    def put(
        self,
        key: str | bytes,
        value: str | bytes,
        *,
        lease: object = None,
        prev_kv: bool = False,
        ignore_value: bool = False,
        ignore_lease: bool = False,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> PutResponse:
        """Set ``key`` to ``value`` (attached to ``lease``, an id or a Lease, if given).

        Not idempotent: retried only when the request surely never reached etcd; otherwise
        a lost answer raises OutcomeUnknown.
        """
        body = kv_proto.put_body(
            self._ks.key(key),
            b"" if ignore_value and value is None else to_bytes(value, "value"),
            lease=lease_id(lease),
            prev_kv=check_bool(prev_kv, "prev_kv"),
            ignore_value=check_bool(ignore_value, "ignore_value"),
            ignore_lease=check_bool(ignore_lease, "ignore_lease"),
        )
        if self._writes is not None and retry is None:
            self._core.start()
            return self._writes.put(body, timeout)
        result: PutResponse = self._call(kv_proto.PUT, body, self._parse_put, False, timeout, retry)
        return result

    def delete(
        self,
        key: str | bytes,
        *,
        prefix: bool = False,
        range_end: str | bytes | None = None,
        prev_kv: bool = False,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> DeleteResponse:
        """Delete ``key`` (or a range / prefix). ``deleted`` counts the removed keys."""
        wire, end = self._ks.span(key, range_end, check_bool(prefix, "prefix"))
        body = kv_proto.delete_body(wire, end, prev_kv=check_bool(prev_kv, "prev_kv"))
        if self._writes is not None and retry is None and not end:
            self._core.start()
            return self._writes.delete(body, timeout)
        result: DeleteResponse = self._call(
            kv_proto.DELETE, body, self._parse_delete, False, timeout, retry
        )
        return result

    def delete_prefix(self, prefix: str | bytes, **options: Any) -> DeleteResponse:
        """Delete every key starting with ``prefix``."""
        return self.delete(prefix, prefix=True, **options)

    def txn(
        self,
        compare: Sequence[Comparison] = (),
        success: Sequence[TxnOp] = (),
        failure: Sequence[TxnOp] = (),
        *,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> TxnResponse:
        """Run a transaction: if every ``compare`` holds, ``success`` ops, else ``failure``.

        A failed compare is not an error (``succeeded`` is False). A txn with writes is not
        idempotent (OutcomeUnknown if its answer is lost); one with only reads is retried.
        """
        compare, success, failure = check_txn(compare, success, failure)
        body = txn_body(compare, success, failure, self._ks)
        read_only = all(_is_read_only(op) for op in (*success, *failure))
        result: TxnResponse = self._call(
            kv_proto.TXN, body, self._parse_txn, read_only, timeout, retry, drain=read_only
        )
        return result

    def put_if_absent(
        self,
        key: str | bytes,
        value: str | bytes,
        *,
        lease: object = None,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> bool:
        """Create ``key`` only if it does not exist. True if this call created it."""
        response = self.txn(
            [Compare.create_revision(key) == 0],
            [Op.put(key, value, lease=lease)],
            timeout=timeout,
            retry=retry,
        )
        return response.succeeded

    def replace(
        self,
        key: str | bytes,
        old: str | bytes,
        new: str | bytes,
        *,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> bool:
        """Set ``key`` to ``new`` only if its value is ``old``. True if replaced."""
        response = self.txn(
            [Compare.value(key) == old], [Op.put(key, new)], timeout=timeout, retry=retry
        )
        return response.succeeded

    def compact(
        self,
        revision: int,
        *,
        physical: bool = False,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> Header:
        """Discard history before ``revision``. CompactedRevision if already compacted there."""
        body = kv_proto.compact_body(
            check_int(revision, "revision", minimum=1), physical=check_bool(physical, "physical")
        )
        header: Header = self._call(
            kv_proto.COMPACT,
            body,
            lambda o: kv_proto.parse_header(o.get("header")),
            False,
            timeout,
            retry,
        )
        return header


def _is_read_only(op: TxnOp) -> bool:
    if isinstance(op, OpGet):
        return True
    if isinstance(op, OpTxn):
        return all(_is_read_only(o) for o in (*op.success, *op.failure))
    return False
