"""The facade: :class:`Client` holds the cluster state, the transport and the request loop,
and offers the v3 KV API. Every method is greenlet-safe; share one client per process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import gevent

from geetcd.batching import ReadBatcher, WriteBatcher
from geetcd.cluster import ClusterState, Member, PickPolicy, StateChange
from geetcd.config import TLS, Retry
from geetcd.core import Core
from geetcd.errors import InvalidArgument
from geetcd.models import (
    DeleteResponse,
    Header,
    KeyValue,
    MemberList,
    PutResponse,
    RangeResponse,
    Status,
    TxnResponse,
)
from geetcd.protocol import cluster as cluster_proto
from geetcd.protocol import kv as kv_proto
from geetcd.protocol.codec import b64, to_bytes
from geetcd.protocol.kv import RangeOptions, check_bool, check_int
from geetcd.transport import Transport
from geetcd.txn import Compare, Comparison, Op, TxnOp, check_txn, lease_id, txn_body

if TYPE_CHECKING:
    import os
    from typing import IO

    from geetcd.auth import AuthAdmin as _AuthAdmin
    from geetcd.cache import PrefixCache as _PrefixCache
    from geetcd.lease import Lease as _Lease
    from geetcd.lease import Session as _Session
    from geetcd.maintenance import SnapshotInfo as _SnapshotInfo
    from geetcd.models import Event as _Event
    from geetcd.models import LeaseInfo as _LeaseInfo
    from geetcd.protocol.maintenance import Alarm as _Alarm
    from geetcd.protocol.maintenance import HashKV as _HashKV
    from geetcd.protocol.maintenance import MemberAddResponse as _MemberAddResponse
    from geetcd.recipes.election import Election as _Election
    from geetcd.recipes.lock import Lock as _Lock
    from geetcd.recipes.sessions import SessionPool as _SessionPool
    from geetcd.recipes.stm import STMTx as _STMTx
    from geetcd.watch import Watch as _Watch
    from geetcd.watch import WatchFilter as _WatchFilter

_T = TypeVar("_T")

__all__ = ["Client"]

log = logging.getLogger("geetcd.client")


def _opt_revision(value: int | None, what: str) -> int:
    """A revision option: None or 0 mean "latest" (etcd's own 0), else an int >= 1."""
    return 0 if value is None else check_int(value, what, minimum=0)


class Client:
    """A gevent-native etcd v3 client for one cluster.

    ``endpoints``: a list of ``http(s)://host:port`` URLs or one comma-separated string.
    ``timeout``: the deadline of one call in seconds, retries and failover included
    (override per call with ``timeout=``). ``attempt_timeout``: how long one attempt waits for
    an answer before the member is treated as hung and the call moves on.
    ``maxsize``: connections per member (callers beyond it wait, cooperatively).
    ``retry``: a :class:`geetcd.Retry` (override per call with ``retry=``).
    ``namespace``: a key prefix applied to every key in and stripped from every key out.
    ``policy``: how members are picked (:class:`geetcd.PickPolicy`).
    ``sync_interval`` / ``sync_on_start``: refresh the member list from the cluster
    periodically / once at first use (off by default); after a member fails the list is
    refreshed too when the client was given more than one endpoint or ``sync_on_start``.
    ``tls``: a :class:`geetcd.TLS` for ``https://`` endpoints (verification on by default).
    ``user`` / ``password``: authenticate on first use and send the token with every call.
    ``hedge_delay``: when set, a read with no answer after that many seconds is sent to a
    second member too and the first answer wins (off by default: it costs extra requests).
    ``batch_reads`` (on by default): gets and ranges that start while others are in flight
    leave together as one txn of reads, each caller getting exactly its own answer or error
    (see :mod:`geetcd.batching`); no timer, so a lone read is sent at once.
    ``batch_writes`` (off by default): puts and deletes likewise share a txn; a batch of
    writes is applied at ONE revision and, if its answer is lost, every write in it raises
    the same OutcomeUnknown.
    ``streams``: ``"websocket"`` (the default) carries every watch and every keepalive of
    the client to a member on one WebSocket to that member (watches multiplexed by
    client-chosen IDs, one message per lease refresh); where a member (or a proxy in front
    of it) refuses the upgrade, that member's streams fall back to HTTP with one log line.
    ``"http"``: one HTTP stream per distinct watch and batched keepalive POSTs.

    Constructing a client does no network I/O; the first call does. Use it as a context
    manager or call :meth:`close`.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str] = "http://127.0.0.1:2379",
        *,
        timeout: float = 10.0,
        attempt_timeout: float = 2.0,
        connect_timeout: float = 1.0,
        maxsize: int = 64,
        retry: Retry | None = None,
        namespace: str | bytes | None = None,
        policy: PickPolicy = PickPolicy.STICKY_RANDOM,
        sync_interval: float | None = None,
        sync_on_start: bool = False,
        tls: TLS | None = None,
        user: str | None = None,
        password: str | None = None,
        api_prefix: str | None = None,
        hedge_delay: float | None = None,
        on_state_change: Callable[[StateChange], None] | None = None,
        transport: Transport | None = None,
        batch_reads: bool = True,
        batch_writes: bool = False,
        streams: str = "websocket",
    ) -> None:
        check_bool(batch_reads, "batch_reads")
        check_bool(batch_writes, "batch_writes")
        core = Core(
            endpoints,
            timeout=timeout,
            attempt_timeout=attempt_timeout,
            connect_timeout=connect_timeout,
            maxsize=maxsize,
            retry=retry,
            namespace=namespace,
            policy=policy,
            sync_interval=sync_interval,
            sync_on_start=sync_on_start,
            tls=tls,
            user=user,
            password=password,
            api_prefix=api_prefix,
            hedge_delay=hedge_delay,
            on_state_change=on_state_change,
            transport=transport,
            streams=streams,
        )
        self._core = core
        # The facade's own shorthands for the core's parts (features use ``client.core``).
        self._ks = core.ks
        self._cluster = core.cluster
        self._executor = core.executor
        self._sessions: _SessionPool | None = None
        self._parse_range = partial(kv_proto.parse_range, ks=self._ks)
        self._parse_put = partial(kv_proto.parse_put, ks=self._ks)
        self._parse_delete = partial(kv_proto.parse_delete, ks=self._ks)
        self._parse_txn = partial(kv_proto.parse_txn, ks=self._ks)
        self._reads = ReadBatcher(core, self._parse_range) if batch_reads else None
        self._writes = (
            WriteBatcher(core, self._parse_put, self._parse_delete) if batch_writes else None
        )

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        urls = ",".join(m.url for m in self._cluster.members)
        ns = f" namespace={self._ks.prefix!r}" if self._ks.prefix else ""
        state = "closed" if self.closed else "open"
        return f"<geetcd.Client {urls}{ns} {state}>"

    def close(self, timeout: float = 5.0) -> None:
        """End every background greenlet (watches, keepalives, probes) and close all
        connections; later calls raise :class:`geetcd.ClientClosed`. Waits at most
        ``timeout`` seconds. Idempotent; never raises; safe from a watch callback or any
        other greenlet the client owns."""
        self._core.close(timeout)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._core.closed

    @property
    def core(self) -> Core:
        """The :class:`geetcd.core.Core` this client is a facade over: what the features
        (watch hub, leases, v2, recipes) are built on."""
        return self._core

    @property
    def read_batcher(self) -> ReadBatcher | None:
        """The read batcher (``batch_reads=True``; its counters show how reads were sent),
        or None when reads are not batched."""
        return self._reads

    @property
    def write_batcher(self) -> WriteBatcher | None:
        """The write batcher (``batch_writes=True``), or None when writes are not batched."""
        return self._writes

    @property
    def cluster_state(self) -> ClusterState:
        """The shared cluster state (members, health, latency); its repr is a readable table."""
        return self._cluster

    @property
    def namespace(self) -> bytes:
        """The key prefix of this client (b"" when none)."""
        return self._ks.prefix

    def _call(  # noqa: PLR0917 - internal, positional by design
        self,
        path: str,
        body: dict[str, Any],
        parse: Callable[[dict[str, Any]], Any],
        idempotent: bool,
        timeout: float | None,
        retry: Retry | None,
    ) -> Any:
        return self._core.call(
            path, body, parse, idempotent=idempotent, timeout=timeout, retry=retry
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
        body: dict[str, Any] = {"key": b64(self._ks.key(key))}
        at = _opt_revision(revision, "revision")
        if at:
            body["revision"] = at
        serial = check_bool(serializable, "serializable")
        if serial:
            body["serializable"] = True
        response: RangeResponse
        if self._reads is not None and retry is None:
            self._core.start()
            response = self._reads.range(
                body, serializable=serial, revision=at, timeout=timeout, name="get"
            )
        else:
            self._core.start()
            response = self._core.executor.call(
                kv_proto.RANGE,
                body,
                self._parse_range,
                idempotent=True,
                timeout=timeout,
                retry=retry,
                name="get",
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
            kv_proto.TXN, body, self._parse_txn, read_only, timeout, retry
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

    # ------------------------------------------------------------------ cluster / maintenance
    def status(
        self,
        endpoint: str | None = None,
        *,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> Status:
        """The status of the member at ``endpoint`` (a URL of a known member: only that one
        is asked, no failover), or of whichever member the client picks when None (its id is
        ``header.member_id``)."""
        from geetcd import maintenance

        return maintenance.status(self._core, endpoint, timeout=timeout, retry=retry)

    def member_list(
        self, *, timeout: float | None = None, retry: Retry | None = None
    ) -> MemberList:
        """The cluster's members as the answering member knows them."""
        result: MemberList = self._call(
            cluster_proto.MEMBER_LIST, {}, cluster_proto.parse_member_list, True, timeout, retry
        )
        return result

    def member_add(
        self,
        peer_urls: str | Sequence[str],
        *,
        learner: bool = False,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> _MemberAddResponse:
        """Add a member (a learner if ``learner``): ``.member`` is the new one, ``.members``
        the list. Not idempotent (OutcomeUnknown on a lost answer); UnhealthyCluster,
        FailedPrecondition... are refusals. See :mod:`geetcd.membership`."""
        from geetcd import membership

        return membership.member_add(
            self._core, peer_urls, learner=learner, timeout=timeout, retry=retry
        )

    def member_remove(
        self, member_id: int, *, timeout: float | None = None, retry: Retry | None = None
    ) -> MemberList:
        """Remove a member; returns the members left (see :mod:`geetcd.membership`)."""
        from geetcd import membership

        return membership.member_remove(self._core, member_id, timeout=timeout, retry=retry)

    def member_update(
        self,
        member_id: int,
        peer_urls: str | Sequence[str],
        *,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> MemberList:
        """Set a member's peer URLs; returns the members (see :mod:`geetcd.membership`)."""
        from geetcd import membership

        return membership.member_update(
            self._core, member_id, peer_urls, timeout=timeout, retry=retry
        )

    def member_promote(
        self, member_id: int, *, timeout: float | None = None, retry: Retry | None = None
    ) -> MemberList:
        """Promote a learner to a voting member (see :mod:`geetcd.membership`)."""
        from geetcd import membership

        return membership.member_promote(self._core, member_id, timeout=timeout, retry=retry)

    def defragment(self, endpoint: str, *, timeout: float | None = None) -> None:
        """Defragment the member at ``endpoint`` only (see geetcd.maintenance.defragment)."""
        from geetcd import maintenance

        maintenance.defragment(self._core, endpoint, timeout=timeout)

    def hash_kv(
        self,
        endpoint: str,
        revision: int = 0,
        *,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> _HashKV:
        """The HashKV of the member at ``endpoint`` only, at ``revision`` (0: current):
        ``.hash`` and ``.compact_revision`` (see geetcd.maintenance.hash_kv)."""
        from geetcd import maintenance

        return maintenance.hash_kv(self._core, endpoint, revision, timeout=timeout, retry=retry)

    def alarm_list(
        self, *, timeout: float | None = None, retry: Retry | None = None
    ) -> tuple[_Alarm, ...]:
        """The active alarms (``Alarm(member_id, alarm)``), empty when none."""
        from geetcd import maintenance

        return maintenance.alarm_list(self._core, timeout=timeout, retry=retry)

    def alarm_disarm(
        self,
        member_id: int | None = None,
        alarm: str | None = None,
        *,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> tuple[_Alarm, ...]:
        """Deactivate the matching active alarms (all of them with no arguments); returns
        those deactivated (see geetcd.maintenance.alarm_disarm)."""
        from geetcd import maintenance

        return maintenance.alarm_disarm(self._core, member_id, alarm, timeout=timeout, retry=retry)

    def move_leader(
        self, member_id: int, *, timeout: float | None = None, retry: Retry | None = None
    ) -> None:
        """Make ``member_id`` the leader; sent to the current leader only. Not idempotent."""
        from geetcd import maintenance

        maintenance.move_leader(self._core, member_id, timeout=timeout, retry=retry)

    def snapshot(
        self,
        path_or_file: str | os.PathLike[str] | IO[bytes],
        *,
        endpoint: str | None = None,
        progress: Callable[[int, int], object] | None = None,
        timeout: float | None = None,
    ) -> _SnapshotInfo:
        """Stream a verified snapshot (sha256 trailer kept) into a path (via ``.part``,
        fsync, rename) or a binary file; see geetcd.maintenance.snapshot."""
        from geetcd import maintenance

        return maintenance.snapshot(
            self._core, path_or_file, endpoint=endpoint, progress=progress, timeout=timeout
        )

    def sync_members(self) -> list[Member]:
        """Refresh the client's members from the cluster now; returns them."""
        return self._cluster.sync()

    @property
    def endpoints(self) -> list[str]:
        """The URLs of the members the client knows (learners included: they serve calls
        pinned to them with ``endpoint=``, never picked for other traffic)."""
        return [m.url for m in self._cluster.members]

    def spawn(self, func: Callable[..., Any], *args: Any) -> gevent.Greenlet[..., Any]:
        """Run ``func`` in a greenlet owned by this client (killed by :meth:`close`)."""
        return self._core.spawn(func, *args)

    # ------------------------------------------------------------------ watch API
    # (section owned by geetcd/watch.py: methods here only delegate to it)

    def watch(
        self,
        key: str | bytes,
        *,
        prefix: bool = False,
        range_end: str | bytes | None = None,
        start_revision: int | None = None,
        prev_kv: bool = False,
        filters: Sequence[str | _WatchFilter] | str | _WatchFilter = (),
        progress_notify: bool = False,
        callback: Callable[[_Event], object] | None = None,
        on_error: Callable[[BaseException], object] | None = None,
        buffer: int = 10_000,
        liveness: float | None = None,
        timeout: float | None = None,
    ) -> _Watch:
        """Watch ``key`` (or a range / prefix) and return a :class:`geetcd.watch.Watch`.

        Returns once etcd acknowledged the watch: every change committed after this returns
        is delivered, in order, exactly once, also across member failures (resumed on
        another member from the last delivered revision + 1). ``start_revision`` replays
        history from that revision (WatchCompacted if compacted). ``filters``: ``"noput"``
        / ``"nodelete"``. ``progress_notify``: etcd's periodic progress messages (empty
        batches in ``watch.responses()``). ``callback(event)`` runs in a greenlet owned by
        the client; its exceptions and watch errors go to ``on_error(exc)`` (else logged
        with traceback) and to ``watch.error``. ``buffer``: events a slow consumer may lag
        before WatchOverflow. ``liveness``: seconds of silence before the member is probed
        (default geetcd.watch.DEFAULT_LIVENESS, 5 s). Identical watches without
        ``start_revision`` share one server stream. Raises DeadlineExceeded if not
        acknowledged within ``timeout`` (default: the client's), or the server's refusal
        (PermissionDenied, InvalidArgument...).
        """
        from geetcd.watch import open_watch

        return open_watch(
            self,
            key,
            prefix=prefix,
            range_end=range_end,
            start_revision=start_revision,
            prev_kv=prev_kv,
            filters=filters,
            progress_notify=progress_notify,
            callback=callback,
            on_error=on_error,
            buffer=buffer,
            liveness=liveness,
            timeout=timeout,
        )

    def watch_prefix(self, prefix: str | bytes, **options: Any) -> _Watch:
        """Watch every key starting with ``prefix`` (same options as :meth:`watch`)."""
        return self.watch(prefix, prefix=True, **options)

    def watch_once(
        self,
        key: str | bytes,
        *,
        timeout: float | None = None,
        prefix: bool = False,
        range_end: str | bytes | None = None,
        start_revision: int | None = None,
        prev_kv: bool = False,
        filters: Sequence[str | _WatchFilter] | str | _WatchFilter = (),
    ) -> _Event:
        """The next change of ``key`` (or range / prefix), as a :class:`geetcd.Event`.

        Raises DeadlineExceeded if none comes within ``timeout`` seconds (watch creation
        included; default: the client's timeout). The watch is canceled before returning.
        """
        from geetcd.watch import watch_once

        return watch_once(
            self,
            key,
            timeout=timeout,
            prefix=prefix,
            range_end=range_end,
            start_revision=start_revision,
            prev_kv=prev_kv,
            filters=filters,
        )

    def prefix_cache(
        self,
        prefix: str | bytes,
        *,
        on_change: Callable[[_Event], object] | None = None,
        on_error: Callable[[BaseException], object] | None = None,
        page_size: int = 1000,
        buffer: int = 10_000,
        liveness: float | None = None,
    ) -> _PrefixCache:
        """A started :class:`geetcd.cache.PrefixCache`: a local mirror of every key under
        ``prefix``, listed at one revision then kept current by a watch (re-listed and
        diffed after a compaction). Does no I/O itself: call ``cache.wait_synced(timeout)``
        before the first read. Closed by ``cache.close()`` or :meth:`close`.
        """
        from geetcd.cache import PrefixCache

        return PrefixCache(
            self,
            prefix,
            on_change=on_change,
            on_error=on_error,
            page_size=page_size,
            buffer=buffer,
            liveness=liveness,
        ).start()

    # ------------------------------------------------------------------ lease API
    # (section owned by geetcd/lease.py: methods here only delegate to it)

    def lease(
        self,
        ttl: int,
        *,
        id: int | None = None,
        keepalive: bool = False,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> _Lease:
        """Grant a lease of ``ttl`` seconds (int >= 1; etcd raises it to its 2 s minimum) and
        return it as a :class:`geetcd.Lease` (kept alive at once if ``keepalive``).

        InvalidArgument before sending for a bad ttl; LeaseTTLTooLarge (over ~9e9 s) and
        LeaseExists (``id`` taken) come from etcd. Not idempotent: OutcomeUnknown if the
        answer is lost, except with an explicit ``id`` (then the lease's existence is
        checked and the grant resent if needed; see geetcd.lease.grant).
        """
        from geetcd import lease as _lease_mod

        return _lease_mod.grant(self, ttl, id, keepalive=keepalive, timeout=timeout, retry=retry)

    def session(
        self, ttl: int = 10, *, timeout: float | None = None, retry: Retry | None = None
    ) -> _Session:
        """A :class:`geetcd.Session`: a lease of ``ttl`` seconds kept alive until
        ``session.close()`` or :meth:`close` (then revoked, best effort)."""
        from geetcd import lease as _lease_mod

        return _lease_mod.Session(_lease_mod.grant(self, ttl, timeout=timeout, retry=retry))

    def leases(self, *, timeout: float | None = None, retry: Retry | None = None) -> list[int]:
        """The IDs of every lease in the cluster (any order)."""
        from geetcd import lease as _lease_mod

        return _lease_mod.list_leases(self, timeout, retry)

    def revoke_lease(
        self, lease: object, *, timeout: float | None = None, retry: Retry | None = None
    ) -> None:
        """Revoke a lease (an id or a Lease): its keys are deleted. LeaseNotFound if unknown."""
        from geetcd import lease as _lease_mod

        _lease_mod.revoke(self, lease, timeout, retry)

    def lease_time_to_live(
        self,
        lease: object,
        keys: bool = False,
        *,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> _LeaseInfo:
        """``LeaseInfo(id, ttl, granted_ttl, keys)`` of a lease (an id or a Lease); ``ttl``
        is -1 when it does not exist (not an error)."""
        from geetcd import lease as _lease_mod

        return _lease_mod.time_to_live(self, lease, keys, timeout, retry)

    # ------------------------------------------------------------------ auth API
    # (section owned by geetcd/auth.py: methods here only delegate to it)

    @property
    def auth(self) -> _AuthAdmin:
        """The auth admin API (:class:`geetcd.auth.AuthAdmin`): ``enable()``, ``disable()``,
        ``status()``, users, roles and permissions. Each of its methods is one call to etcd;
        this property itself does no I/O."""
        from geetcd.auth import AuthAdmin

        return AuthAdmin(self)

    # ------------------------------------------------------------------ coordination API
    # (section owned by geetcd/recipes/: methods here only delegate to it)

    def lock(self, name: str | bytes, *, ttl: int = 60) -> _Lock:
        """A :class:`geetcd.recipes.Lock` on ``name``, with the key layout of Go's
        ``concurrency.Mutex`` (interoperates with ``etcdctl lock``). Does no I/O."""
        from geetcd.recipes.lock import Lock

        return Lock(self, name, ttl=ttl, sessions=self._shared_sessions())

    def election(self, name: str | bytes, *, ttl: int = 60) -> _Election:
        """A :class:`geetcd.recipes.Election` on ``name``, with the layout of Go's
        ``concurrency.Election`` (interoperates with ``etcdctl elect``). Does no I/O."""
        from geetcd.recipes.election import Election

        return Election(self, name, ttl=ttl, sessions=self._shared_sessions())

    def stm(
        self,
        fn: Callable[[_STMTx], _T],
        *,
        isolation: str = "serializable_snapshot",
        retries: int | None = None,
        timeout: float | None = None,
    ) -> _T:
        """Run ``fn(tx)`` as a software transaction with Go ``concurrency.STM`` semantics
        (see :func:`geetcd.recipes.stm.run_stm`) and return what ``fn`` returned."""
        from geetcd.recipes.stm import run_stm

        return run_stm(self, fn, isolation=isolation, retries=retries, timeout=timeout)

    def _shared_sessions(self) -> _SessionPool:
        """The client's session pool: one kept-alive session per TTL, shared by its locks and
        elections, revoked when the client closes."""
        if self._sessions is None:
            from geetcd.recipes.sessions import SessionPool

            self._sessions = SessionPool(self)
        return self._sessions


def _is_read_only(op: TxnOp) -> bool:
    from geetcd.txn import OpGet, OpTxn

    if isinstance(op, OpGet):
        return True
    if isinstance(op, OpTxn):
        return all(_is_read_only(o) for o in (*op.success, *op.failure))
    return False
