"""The facade: :class:`Client` builds one :class:`geetcd.core.Core` (cluster state,
transport, the attempt loop, the watch hub, the keepalive) and is the composition of the
feature groups built on it: :class:`geetcd.kv.KV`, :class:`geetcd.watch.Watcher`,
:class:`geetcd.lease.Leases`, :class:`geetcd.maintenance.Maintenance` and
:class:`geetcd.membership.Membership` (their methods are the client's, inherited). This
module adds the client's lifecycle, the auth admin API, the prefix cache and the recipes
(lock, election, STM), which combine several groups. Every method is greenlet-safe; share
one client per process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import gevent

from geetcd.auth import AuthAdmin
from geetcd.cache import PrefixCache
from geetcd.cluster import ClusterState, Member, StateChange
from geetcd.core import Core
from geetcd.kv import KV
from geetcd.lease import Leases
from geetcd.maintenance import Maintenance
from geetcd.membership import Membership
from geetcd.models import Event
from geetcd.options import ClientConfig
from geetcd.recipes.election import Election
from geetcd.recipes.lock import Lock
from geetcd.recipes.sessions import SessionPool
from geetcd.recipes.stm import STMTx, run_stm
from geetcd.transport import Transport
from geetcd.watch import Watcher

_T = TypeVar("_T")

__all__ = ["Client"]


class Client(KV, Watcher, Leases, Maintenance, Membership):
    """A gevent-native etcd v3 client for one cluster.

    ``Client(endpoints, **options)``: the options are the fields of
    :class:`geetcd.ClientConfig`, validated once into ``client.config`` (an unknown option
    raises InvalidType naming it); ``Client(config=ClientConfig(...))`` takes a ready one
    (options given beside it change a copy). ``on_state_change`` (a callable told each member
    state change) and ``transport`` (a :class:`geetcd.transport.Transport`) are not options:
    they are given to the client beside its config. The options:

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
    client-chosen IDs, one message per lease refresh); once a member (or a proxy in front
    of it) refuses the upgrade, the whole client falls back: from then on every watch uses
    HTTP streams and every keepalive POSTs, with one log line for each.
    ``"http"``: one HTTP stream per distinct watch and batched keepalive POSTs.

    Constructing a client does no network I/O; the first call does. Use it as a context
    manager or call :meth:`close`.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str] | None = None,
        *,
        config: ClientConfig | None = None,
        on_state_change: Callable[[StateChange], None] | None = None,
        transport: Transport | None = None,
        **options: Any,
    ) -> None:
        cfg = ClientConfig.build(endpoints, config, options)
        core = Core(cfg, on_state_change=on_state_change, transport=transport)
        # KV holds the batchers; the other groups hold nothing but the core, set here too.
        KV.__init__(self, core, batch_reads=cfg.batch_reads, batch_writes=cfg.batch_writes)
        self._cluster = core.cluster
        self._sessions: SessionPool | None = None

    @property
    def config(self) -> ClientConfig:
        """This client's options (immutable; ``config.replace(...)`` makes a changed copy)."""
        return self._core.config

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
    def cluster_state(self) -> ClusterState:
        """The shared cluster state (members, health, latency); its repr is a readable table."""
        return self._cluster

    @property
    def namespace(self) -> bytes:
        """The key prefix of this client (b"" when none)."""
        return self._ks.prefix

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

    # ------------------------------------------------------------------ prefix cache
    def prefix_cache(
        self,
        prefix: str | bytes,
        *,
        on_change: Callable[[Event], object] | None = None,
        on_error: Callable[[BaseException], object] | None = None,
        page_size: int = 1000,
        buffer: int = 10_000,
        liveness: float | None = None,
    ) -> PrefixCache:
        """A started :class:`geetcd.cache.PrefixCache`: a local mirror of every key under
        ``prefix``, listed at one revision then kept current by a watch (re-listed and
        diffed after a compaction). Does no I/O itself: call ``cache.wait_synced(timeout)``
        before the first read. Closed by ``cache.close()`` or :meth:`close`.
        """
        return PrefixCache(
            self,
            prefix,
            on_change=on_change,
            on_error=on_error,
            page_size=page_size,
            buffer=buffer,
            liveness=liveness,
        ).start()

    # ------------------------------------------------------------------ auth
    @property
    def auth(self) -> AuthAdmin:
        """The auth admin API (:class:`geetcd.auth.AuthAdmin`): ``enable()``, ``disable()``,
        ``status()``, users, roles and permissions. Each of its methods is one call to etcd;
        this property itself does no I/O."""
        return AuthAdmin(self._core, self)

    # ------------------------------------------------------------------ coordination API
    def lock(self, name: str | bytes, *, ttl: int = 60) -> Lock:
        """A :class:`geetcd.recipes.Lock` on ``name``, with the key layout of Go's
        ``concurrency.Mutex`` (interoperates with ``etcdctl lock``). Does no I/O."""
        return Lock(self, name, ttl=ttl, sessions=self._shared_sessions())

    def election(self, name: str | bytes, *, ttl: int = 60) -> Election:
        """A :class:`geetcd.recipes.Election` on ``name``, with the layout of Go's
        ``concurrency.Election`` (interoperates with ``etcdctl elect``). Does no I/O."""
        return Election(self, name, ttl=ttl, sessions=self._shared_sessions())

    def stm(
        self,
        fn: Callable[[STMTx], _T],
        *,
        isolation: str = "serializable_snapshot",
        retries: int | None = None,
        timeout: float | None = None,
    ) -> _T:
        """Run ``fn(tx)`` as a software transaction with Go ``concurrency.STM`` semantics
        (see :func:`geetcd.recipes.stm.run_stm`) and return what ``fn`` returned."""
        return run_stm(self, fn, isolation=isolation, retries=retries, timeout=timeout)

    def _shared_sessions(self) -> SessionPool:
        """The client's session pool: one kept-alive session per TTL, shared by its locks and
        elections, revoked when the client closes."""
        if self._sessions is None:
            self._sessions = SessionPool(self)
        return self._sessions
