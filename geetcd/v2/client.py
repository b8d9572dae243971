"""The v2 keys client: go-etcd's operations in Python names, on geetcd's shared machinery.

The client stands on a :class:`geetcd.core.Core`, the one v3 clients stand on: one it builds,
or with :meth:`Client.from_client` the core of a :class:`geetcd.Client`. Every request goes
through that core's request loop (its executor, cluster state and cooperative transport):
one member is picked, a member that fails is benched and probed back, reads fail over,
writes whose answer was lost raise :class:`geetcd.OutcomeUnknown`. There is no second
request loop here.

Retry rules (an answer can be lost after etcd applied the request: the connection broke,
the member hung, or etcd answered errorCode 300 because consensus timed out):

* sent again on another member: every read; ``set``, ``update``, ``update_dir`` and
  ``refresh``, whose replay leaves the same state and the same success answer. A replay
  shows up as a second event for watchers, and can overwrite a write another client made
  between the two attempts (last writer wins, as with any ``set``);
* never sent again once they may have reached etcd (OutcomeUnknown): ``create``,
  ``create_dir``, ``set_dir``, ``create_in_order`` / ``add_child`` / ``add_child_dir``
  (a replay adds a second item), ``compare_and_swap``, ``compare_and_delete``, ``delete``,
  ``delete_dir`` (a replay would fail with NodeExist / CompareFailed / KeyNotFound ...).
  A request that surely never reached etcd (connection refused) is always sent again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from typing import Any, Protocol, TypeVar

from geetcd.cluster import ClusterState, Member, StateChange, normalize_endpoints
from geetcd.config import check_duration
from geetcd.core import Core
from geetcd.errors import DeadlineExceeded, InvalidArgument, InvalidType, ServerError
from geetcd.models import Header, MemberInfo, MemberList
from geetcd.options import ClientConfig
from geetcd.transport import RawResponse, Transport
from geetcd.v2 import protocol as proto
from geetcd.v2.models import Response, Version
from geetcd.v2.watch import V2Watch, long_poll

__all__ = ["Client"]

T = TypeVar("T")
_monotonic = time.monotonic
_CONSISTENCY = {"strong": True, "weak": False}


class _Base(Protocol):
    """What :attr:`Client.client` is: a :class:`geetcd.Client`, or the core a v2 client
    built for itself; both have the shared cluster state and a ``closed`` flag."""

    @property
    def cluster_state(self) -> ClusterState: ...

    @property
    def closed(self) -> bool: ...


V3_ONLY_OPTIONS = (
    "namespace",
    "user",
    "password",
    "api_prefix",
    "hedge_delay",
    "streams",
    "batch_reads",
    "batch_writes",
)
"""ClientConfig options the v2 keys API has no use for (refused by :class:`Client`)."""


class Client:
    """A gevent-native client for etcd's v2 keys API (etcd 3.4/3.5 with ``--enable-v2``).

    ``endpoints`` and the transport options are those of :class:`geetcd.Client` (a
    :class:`geetcd.core.Core` is built inside and owned: :meth:`close` closes it).
    ``consistency="strong"`` (default) reads with ``quorum=true``, like go-etcd's
    STRONG_CONSISTENCY: the answer reflects every write acknowledged before it; ``"weak"``
    reads the member's local store.
    ``liveness_interval``: how often members serving a watch are probed (a v2 wait is silent
    until its event, so a hung member is found only this way).

    Every method is greenlet-safe and takes ``timeout=`` (seconds for the whole call,
    failover included; the client's ``timeout`` when None). Arguments are checked before
    anything is sent (InvalidArgument / InvalidType). Errors: the :mod:`geetcd.v2.errors`
    classes for etcd's answers, and geetcd's (ClusterUnavailable, DeadlineExceeded,
    OutcomeUnknown, ...) for the rest.
    """

    _core: Core
    _base: _Base
    _owns: bool
    liveness: float
    _quorum: bool
    _watches: set[V2Watch]
    _closed: bool

    def __init__(
        self,
        endpoints: str | Sequence[str] | None = None,
        *,
        config: ClientConfig | None = None,
        consistency: str = "strong",
        liveness_interval: float = 5.0,
        on_state_change: Callable[[StateChange], None] | None = None,
        transport: Transport | None = None,
        **options: Any,
    ) -> None:
        quorum = _check_consistency(consistency)
        interval = check_duration(liveness_interval, "liveness_interval")
        v3_only = sorted(set(options) & set(V3_ONLY_OPTIONS))
        if v3_only:
            raise InvalidType(f"option(s) {', '.join(v3_only)} of the v3 client: not for v2")
        cfg = ClientConfig.build(endpoints, config, options)
        core = Core(cfg, on_state_change=on_state_change, transport=transport)
        self._setup(core, core, owns=True, quorum=quorum, interval=interval)

    @classmethod
    def from_client(
        cls, client: _Base, *, consistency: str = "strong", liveness_interval: float = 5.0
    ) -> Client:
        """A v2 client sharing ``client``'s members, health, connections and deadlines.

        ``client`` stays owned by the caller: :meth:`close` cancels the v2 watches but does
        not close it; closing ``client`` cancels them too. Its namespace does not apply to
        v2 keys (a separate key space).
        """
        core = getattr(client, "core", None)
        if not isinstance(core, Core):
            raise InvalidType(f"client must be a geetcd.Client, got {type(client).__name__}")
        quorum = _check_consistency(consistency)
        interval = check_duration(liveness_interval, "liveness_interval")
        self = cls.__new__(cls)
        self._setup(core, client, owns=False, quorum=quorum, interval=interval)
        return self

    def _setup(self, core: Core, base: _Base, *, owns: bool, quorum: bool, interval: float) -> None:
        self._core = core
        self._base = base
        self._owns = owns
        self._quorum = quorum
        self.liveness = interval
        self._watches = set()
        self._closed = False
        core.on_close(self._cancel_watches)

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        urls = ",".join(self.endpoints)
        consistency = "strong" if self._quorum else "weak"
        state = "closed" if self._closed else "open"
        return f"<geetcd.v2.Client {urls} consistency={consistency} {state}>"

    def close(self) -> None:
        """Cancel every watch and, if this object built its core, close it (a
        :class:`geetcd.Client` given to :meth:`from_client` stays open). Idempotent; never
        raises."""
        if self._closed:
            return
        self._closed = True
        self._cancel_watches()
        with suppress(ValueError):
            self._core.remove_close_hook(self._cancel_watches)
        if self._owns:
            self._core.close()

    def _cancel_watches(self) -> None:
        for watch in list(self._watches):
            watch.cancel()

    @property
    def client(self) -> _Base:
        """The :class:`geetcd.Client` given to :meth:`from_client`, else the
        :class:`geetcd.core.Core` this client built: what its request loop, members
        (``.cluster_state``) and connections are."""
        return self._base

    @property
    def core(self) -> Core:
        """The :class:`geetcd.core.Core` this client stands on (its own, or the one of the
        :class:`geetcd.Client` given to :meth:`from_client`)."""
        return self._core

    @property
    def consistency(self) -> str:
        """The read consistency: "strong" (quorum=true) or "weak"."""
        return "strong" if self._quorum else "weak"

    @property
    def endpoints(self) -> list[str]:
        """The member URLs in use (see :meth:`sync_cluster`)."""
        return [member.url for member in self._core.cluster.members]

    # ------------------------------------------------------------------ request loop
    def _execute(
        self,
        method: str,
        path: str,
        body: bytes | None,
        interpret: Callable[[RawResponse, Member], T],
        *,
        idempotent: bool,
        timeout: float | None,
        headers: Mapping[str, str] = proto.PLAIN_HEADERS,
        deadline: float | None = None,
        endpoint: str | None = None,
    ) -> T:
        core = self._core
        core.start()
        executor = core.executor
        return executor.execute(
            method,
            path,
            body,
            interpret,
            idempotent=idempotent,
            deadline=executor.deadline(timeout) if deadline is None else deadline,
            v3=False,
            headers=headers,
            endpoint=endpoint,
        )

    def _send(self, request: proto.Request, timeout: float | None) -> Response:
        def interpret(raw: RawResponse, member: Member) -> Response:
            return proto.parse_response(raw.status, raw.data, raw.headers, member.url)

        return self._execute(
            request.method,
            request.path,
            request.body,
            interpret,
            idempotent=request.idempotent,
            timeout=timeout,
            headers=request.headers,
        )

    def _read(self, path: str, parse: Callable[[RawResponse], T], timeout: float | None) -> T:
        def interpret(raw: RawResponse, member: Member) -> T:
            if raw.status == 200:
                return parse(raw)
            raise proto.error_from_answer(raw.status, raw.data, raw.headers, member.url)

        return self._execute("GET", path, None, interpret, idempotent=True, timeout=timeout)

    def _current_index(self, timeout: float | None) -> int:
        """The etcd index now (X-Etcd-Index of a read of a hidden, normally absent key)."""
        request = proto.get_request(proto.INDEX_PROBE_KEY, quorum=self._quorum)

        def interpret(raw: RawResponse, member: Member) -> int:
            if raw.status in (200, 404):
                index = proto.index_of(raw.headers)
                if index:
                    return index
            raise proto.error_from_answer(raw.status, raw.data, raw.headers, member.url)

        return self._execute("GET", request.path, None, interpret, idempotent=True, timeout=timeout)

    # ------------------------------------------------------------------ reads
    def get(
        self,
        key: str,
        sort: bool = False,
        recursive: bool = False,
        *,
        quorum: bool | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Read a key, or a directory's children (the whole tree with ``recursive``;
        ``sort`` orders children by key). ``quorum`` overrides the client's consistency.
        KeyNotFound if it does not exist. Retried on any member."""
        use_quorum = self._quorum if quorum is None else quorum
        return self._send(
            proto.get_request(key, sort=sort, recursive=recursive, quorum=use_quorum), timeout
        )

    # ------------------------------------------------------------------ writes
    def set(
        self, key: str, value: str | bytes, ttl: int | None = None, *, timeout: float | None = None
    ) -> Response:
        """Set ``key`` to ``value`` (created or overwritten; ``ttl`` seconds, None for none).
        NotFile if ``key`` is a directory. Sent again after a lost answer (see module doc)."""
        return self._send(proto.set_request(key, value, ttl), timeout)

    def set_dir(
        self, key: str, ttl: int | None = None, *, timeout: float | None = None
    ) -> Response:
        """Create directory ``key``; NotFile if a directory is there (a value is replaced)."""
        return self._send(proto.set_dir_request(key, ttl), timeout)

    def create(
        self, key: str, value: str | bytes, ttl: int | None = None, *, timeout: float | None = None
    ) -> Response:
        """Create ``key`` only if it does not exist (NodeExist otherwise)."""
        return self._send(proto.create_request(key, value, ttl), timeout)

    def create_dir(
        self, key: str, ttl: int | None = None, *, timeout: float | None = None
    ) -> Response:
        """Create directory ``key`` only if nothing is there (NodeExist otherwise)."""
        return self._send(proto.create_dir_request(key, ttl), timeout)

    def create_in_order(
        self,
        directory: str,
        value: str | bytes,
        ttl: int | None = None,
        *,
        timeout: float | None = None,
    ) -> Response:
        """Add a value under ``directory`` (created if missing) with a new key named after
        its index (20 zero-padded digits, so sorted reads list items in creation order).
        ``node.key`` is the new key. Never sent twice (OutcomeUnknown when unsure)."""
        return self._send(proto.create_in_order_request(directory, value, ttl), timeout)

    add_child = create_in_order

    def add_child_dir(
        self, directory: str, ttl: int | None = None, *, timeout: float | None = None
    ) -> Response:
        """Add an in-order sub-directory under ``directory``."""
        return self._send(proto.add_child_dir_request(directory, ttl), timeout)

    def update(
        self, key: str, value: str | bytes, ttl: int | None = None, *, timeout: float | None = None
    ) -> Response:
        """Replace the value of an existing ``key`` (KeyNotFound if missing). The TTL
        becomes ``ttl`` (None removes it)."""
        return self._send(proto.update_request(key, value, ttl), timeout)

    def update_dir(
        self, key: str, ttl: int | None = None, *, timeout: float | None = None
    ) -> Response:
        """Set (or with None remove) the TTL of an existing directory.

        etcd 3.5.1 refuses this for every directory with errorCode 300 (``InternalError``,
        cause ``nodePath ... : Not a file``): a server bug, raised as is. On a plain key it
        succeeds and empties the value (etcd's behaviour, kept).
        """
        return self._send(proto.update_dir_request(key, ttl), timeout)

    def refresh(self, key: str, ttl: int, *, timeout: float | None = None) -> Response:
        """Reset the TTL of an existing key or directory to ``ttl`` without changing its value
        and without waking watchers (``refresh=true&prevExist=true``). KeyNotFound if
        missing."""
        return self._send(proto.refresh_request(key, ttl), timeout)

    def compare_and_swap(
        self,
        key: str,
        value: str | bytes,
        ttl: int | None = None,
        prev_value: str | bytes | None = None,
        prev_index: int | None = None,
        *,
        timeout: float | None = None,
    ) -> Response:
        """Set ``key`` to ``value`` only if its value is ``prev_value`` and/or its
        modifiedIndex is ``prev_index`` (at least one). CompareFailed if not, KeyNotFound if
        missing. Never sent twice."""
        request = proto.compare_and_swap_request(key, value, ttl, prev_value, prev_index)
        return self._send(request, timeout)

    def compare_and_delete(
        self,
        key: str,
        prev_value: str | bytes | None = None,
        prev_index: int | None = None,
        *,
        timeout: float | None = None,
    ) -> Response:
        """Delete ``key`` only if its value / modifiedIndex match (at least one given).
        CompareFailed if not. Never sent twice."""
        request = proto.compare_and_delete_request(key, prev_value, prev_index)
        return self._send(request, timeout)

    def delete(
        self, key: str, recursive: bool = False, *, timeout: float | None = None
    ) -> Response:
        """Delete a key, or with ``recursive`` a directory and everything under it.
        NotFile for a directory without ``recursive``; KeyNotFound if missing."""
        return self._send(proto.delete_request(key, recursive=recursive), timeout)

    def delete_dir(self, key: str, *, timeout: float | None = None) -> Response:
        """Delete an empty directory (DirNotEmpty if it has children)."""
        return self._send(proto.delete_dir_request(key), timeout)

    # ------------------------------------------------------------------ watches
    def watch(
        self,
        key: str,
        wait_index: int | None = None,
        recursive: bool = False,
        *,
        timeout: float | None = None,
    ) -> Response:
        """Wait for one change of ``key`` (of anything under it with ``recursive``).

        With ``wait_index``, the first change at or after that index (at once if it is in
        etcd's history; EventIndexCleared if it is older than the last 1000 events).
        Without, the first change after this call started (the current index is read
        first, so a failover cannot miss it). ``timeout`` bounds the whole wait:
        DeadlineExceeded when no change came; None waits as long as it takes (a member that
        breaks or hangs is left for another, at the same index).
        """
        request = proto.watch_request(key, wait_index, recursive=recursive)
        deadline = None
        if timeout is not None:
            deadline = _monotonic() + check_duration(timeout, "timeout")
        if wait_index is None:
            index = self._current_index(timeout)
            request = proto.watch_request(key, index + 1, recursive=recursive)
        return long_poll(self._core, self.liveness, request.path, deadline)

    def watcher(
        self,
        key: str,
        recursive: bool = False,
        wait_index: int | None = None,
        *,
        buffer: int = 100,
        timeout: float | None = None,
    ) -> V2Watch:
        """A persistent watch of ``key``: iterate it (see :class:`geetcd.v2.V2Watch`).

        Starts at ``wait_index``, or after the current index (read before this returns, with
        ``timeout``): every change after this call returns is delivered, in index order, or
        a :class:`geetcd.v2.Resync` when etcd no longer has them. ``buffer`` items are held
        for a slow consumer. Cancel it (or use ``with``); :meth:`close` cancels it.
        """
        request = proto.watch_request(key, wait_index, recursive=recursive)
        del request  # validated; the watch builds one per poll
        if isinstance(buffer, bool) or not isinstance(buffer, int):
            raise InvalidType(f"buffer must be an int, got {type(buffer).__name__}")
        if buffer < 1:
            raise InvalidArgument(f"buffer must be >= 1, got {buffer}")
        start = wait_index if wait_index is not None else self._current_index(timeout) + 1
        watch = V2Watch(
            self._core,
            key,
            recursive=recursive,
            next_index=start,
            buffer=buffer,
            liveness=self.liveness,
            reread=lambda: self.get(key, recursive=recursive, sort=True),
            on_cancel=self._watches.discard,
        )
        self._watches.add(watch)
        return watch

    # ------------------------------------------------------------------ cluster / misc
    def members(self, *, timeout: float | None = None) -> tuple[MemberInfo, ...]:
        """The cluster's members (``GET /v2/members``; ids as ints)."""
        return self._read(proto.MEMBERS, lambda raw: proto.parse_members(raw.data), timeout)

    def leader(self, *, timeout: float | None = None) -> MemberInfo:
        """The current leader as the answering member knows it."""
        return self._read(proto.LEADER, lambda raw: proto.parse_leader(raw.data), timeout)

    def sync_cluster(self, *, timeout: float | None = None) -> list[str]:
        """Refresh the client's members from ``/v2/members`` (go-etcd's SyncCluster); returns
        the endpoints now in use. ClusterMismatch (members unchanged) if the list comes from
        another cluster."""

        def parse(raw: RawResponse) -> MemberList:
            header = Header(cluster_id=proto.cluster_id_of(raw.headers))
            return MemberList(header=header, members=proto.parse_members(raw.data))

        member_list = self._read(proto.MEMBERS, parse, timeout)
        self._core.cluster.apply_member_list(member_list)
        return self.endpoints

    def version(self, *, timeout: float | None = None) -> Version:
        """The answering member's etcd server and cluster versions (``GET /version``)."""
        return self._read(proto.VERSION, lambda raw: proto.parse_version(raw.data), timeout)

    def stats_self(self, *, timeout: float | None = None) -> dict[str, Any]:
        """The answering member's ``/v2/stats/self`` (name, id, state, leaderInfo, ...)."""
        return self._read(proto.STATS_SELF, lambda raw: proto.parse_stats(raw.data), timeout)

    def stats_leader(self, *, timeout: float | None = None) -> dict[str, Any]:
        """``/v2/stats/leader`` (each follower's latency and counts), asked of the leader.

        Only the leader has these: the leader is looked up (``leader()``, any member) and
        then asked once at its client URL. A member that lost leadership in between answers
        403 ``not current leader`` (raised as ServerError); transport failures are raised as
        the transport reports them (no failover: no other member can answer). A leader among
        the client's members is asked through the attempt loop pinned to it (``endpoint=``);
        one the client does not know (endpoints given as a subset) is asked directly.
        """
        core = self._core
        executor = core.executor
        deadline = executor.deadline(timeout)
        leader = self.leader(timeout=max(0.001, deadline - _monotonic()))
        if not leader.client_urls:
            raise ServerError(f"the leader {leader.name or hex(leader.id)} has no client URL")
        url = normalize_endpoints(leader.client_urls[0])[0]
        remaining = deadline - _monotonic()
        if remaining <= 0:
            raise DeadlineExceeded("stats_leader: deadline passed after the leader lookup")

        def interpret(raw: RawResponse, member: Member) -> dict[str, Any]:
            if raw.status != 200:
                raise proto.error_from_answer(raw.status, raw.data, raw.headers, member.url)
            return proto.parse_stats(raw.data)

        if any(member.url == url for member in core.cluster.members):
            return self._execute(
                "GET",
                proto.STATS_LEADER,
                None,
                interpret,
                idempotent=True,
                timeout=None,
                deadline=deadline,
                endpoint=url,
            )
        raw = core.transport.request(
            url,
            "GET",
            proto.STATS_LEADER,
            None,
            connect_timeout=min(executor.connect_timeout, remaining),
            read_timeout=min(executor.attempt_timeout, remaining),
            headers=proto.PLAIN_HEADERS,
            what=proto.STATS_LEADER,
        )
        if raw.status != 200:
            raise proto.error_from_answer(raw.status, raw.data, raw.headers, url)
        return proto.parse_stats(raw.data)

    def stats_store(self, *, timeout: float | None = None) -> dict[str, Any]:
        """``/v2/stats/store``: the v2 store's operation counters and watcher count."""
        return self._read(proto.STATS_STORE, lambda raw: proto.parse_stats(raw.data), timeout)


def _check_consistency(value: object) -> bool:
    if not isinstance(value, str):
        raise InvalidType(f"consistency must be 'strong' or 'weak', got {value!r}")
    quorum = _CONSISTENCY.get(value.lower())
    if quorum is None:
        raise InvalidArgument(f"consistency must be 'strong' or 'weak', got {value!r}")
    return quorum
