"""The core every feature stands on, one per client: its options (a ``ClientConfig``), the
cluster state, the transport, the one way to send (``Executor.send``), outlier detection
(:mod:`geetcd.outlier`), the one observer hook (:mod:`geetcd.observe`), the keyspace, the
greenlet group and the close hooks. Its long-lived streams run on the one stream supervisor
(:mod:`geetcd.supervisor`).

:class:`geetcd.Client` is a facade over a :class:`Core`: the feature groups it composes
(:mod:`geetcd.feature`: KV, watches, leases, maintenance, membership), auth, the prefix
cache and the v2 client are built on the core's public attributes, never on the facade's
insides (the recipes use the client's public API). The core's own components (watch hub,
keepalive, stream liveness) see it through :class:`geetcd.core_api.CoreAPI` and never import
this module. Building a core does no network I/O.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import gevent
import gevent.pool

from geetcd._executor import Executor
from geetcd.auth import TokenAuth
from geetcd.cluster import ClusterState, Member, StateChange
from geetcd.config import Retry
from geetcd.errors import InvalidType
from geetcd.keepalive import KeepAlive
from geetcd.liveness import StreamLiveness
from geetcd.models import Header, MemberList
from geetcd.observe import Observer, Observers
from geetcd.options import ClientConfig
from geetcd.outlier import SilenceDetector
from geetcd.protocol import cluster as cluster_proto
from geetcd.protocol.codec import Keyspace
from geetcd.transport import Transport
from geetcd.watch_hub import WatchHub

__all__ = ["Core"]

log = logging.getLogger(__name__)


class Core:
    """The shared state of one client (see the module docstring).

    Public attributes, read by the features: ``ks`` (the namespace), ``group`` (greenlets
    killed at close), ``transport`` (sockets), ``cluster`` (members and health),
    ``executor`` (the attempt loop), ``liveness`` (the one stream-liveness supervisor, for
    v3 watches and v2 waits), ``watch_hub`` (every watch stream) and ``keepalive`` (every
    kept-alive lease). Greenlet-safe.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        on_state_change: Callable[[StateChange], None] | None = None,
        transport: Transport | None = None,
    ) -> None:
        if not isinstance(config, ClientConfig):
            raise InvalidType(f"config must be a ClientConfig, got {type(config).__name__}")
        self.config = config
        """The client's options (validated once, immutable)."""
        urls = list(config.endpoints)
        self.streams = config.streams
        """How watches and keepalives travel: ``"websocket"`` (multiplexed WebSockets; once
        any member refuses the upgrade, the whole client falls back to HTTP: see
        :meth:`refuse_websockets`) or ``"http"``."""
        self.websocket_refused: str | None = None
        """Why a member refused a WebSocket upgrade (None while none did): the one record,
        read by the watch channel and the keepalive channels."""
        prefix = config.namespace
        self.ks = Keyspace(prefix)
        self.observers = Observers()
        """The observers attached to this client (:mod:`geetcd.observe`)."""
        self.group = gevent.pool.Group()
        self.transport = (
            transport
            if transport is not None
            else Transport(maxsize=config.maxsize, tls=config.tls)
        )
        self.cluster = ClusterState(
            urls,
            probe=self._probe,
            fetch_members=self._fetch_members,
            group=self.group,
            policy=config.policy,
            sync_interval=config.sync_interval,
            sync_on_start=config.sync_on_start,
            sync_after_failure=len(urls) > 1 or config.sync_on_start,
            on_state_change=on_state_change,
            on_member_removed=self._member_removed,
            pool_usage=self.transport.pool_usage,
            observers=self.observers,
        )
        self.executor = Executor(
            self.cluster,
            self.transport,
            timeout=config.timeout,
            attempt_timeout=config.attempt_timeout,
            connect_timeout=config.connect_timeout,
            retry=config.retry,
            api_prefix=config.api_prefix,
            hedge_delay=config.hedge_delay,
            observers=self.observers,
        )
        self.outliers = SilenceDetector(
            self.cluster, self.executor.probe, self.group, self.observers
        )
        """Outlier detection (:mod:`geetcd.outlier`): reads move off a silent member."""
        self.cluster.on_waiting = self.outliers.ensure_running
        if config.user is not None or config.password is not None:
            self.executor.auth = TokenAuth(config.user, config.password)
        self._closed = False
        self._started = False
        self._pid = os.getpid()
        self._close_hooks: list[Callable[[], None]] = []
        # Built eagerly, without I/O: their greenlets start on first use.
        self.liveness = StreamLiveness(self)
        self.watch_hub = WatchHub(self)
        self.keepalive = KeepAlive(self)

    # ------------------------------------------------------------------ lifecycle
    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def forked(self) -> bool:
        """True in a process forked from the one that built this core, until that process
        first uses it (every call, watch and lease starts with :meth:`start`, which adopts
        the core: see there)."""
        return os.getpid() != self._pid

    @property
    def cluster_state(self) -> ClusterState:
        """The shared cluster state (``cluster``), under the name the clients use for it."""
        return self.cluster

    def start(self) -> None:
        """Start the cluster state's background work (sync, probes) once; idempotent.
        Every feature calls it before its first request.

        In a forked child (``gunicorn --preload``, locust ``--processes``, ``os.fork``), the
        first call adopts the core for the child. What the child gets: the same members,
        health, auth token and options, and fresh connections (every socket inherited from
        the parent was severed at the fork: the child never reads or writes a byte of the
        parent's connections; see :func:`geetcd.transport.sever_inherited_sockets`). What it
        does not get: the parent's watches end in the child with WatchCanceled (reason
        ``"forked"``: watch again in the child) and its kept-alive leases and sessions are
        lost in the child (LeaseLoss.INHERITED: the parent keeps refreshing them; the child
        never refreshes or revokes them on close). The parent's client is untouched.
        """
        if os.getpid() != self._pid:
            self._adopt_after_fork()
        if not self._started:
            self._started = True
            self.cluster.start()

    def refuse_websockets(self, reason: str) -> bool:
        """Record that a member answered a WebSocket upgrade with plain HTTP (a proxy that
        does not pass upgrades, say): from now on every watch and keepalive of this client
        uses HTTP. True the first time (the caller logs it), False after. Never raises."""
        first = self.websocket_refused is None
        self.websocket_refused = reason
        return first

    @property
    def websockets_enabled(self) -> bool:
        """True while watches and keepalives go over WebSockets: ``streams="websocket"``,
        no refused upgrade, and a transport that opens them (a test's fake may not)."""
        return (
            self.streams == "websocket"
            and self.websocket_refused is None
            and hasattr(self.transport, "open_websocket")
        )

    def add_observer(self, observer: Observer) -> None:
        """Attach ``observer`` to every later call, attempt, member change, stream, watch,
        lease and batch of this client (see :mod:`geetcd.observe`). InvalidType (a TypeError)
        if it is not a :class:`geetcd.Observer`."""
        self.observers.add(observer)

    def remove_observer(self, observer: Observer) -> None:
        """Detach ``observer`` (no error if it is not attached)."""
        self.observers.remove(observer)

    def on_close(self, hook: Callable[[], None]) -> None:
        """Run ``hook()`` when the client closes, before background greenlets are killed
        (hooks run in registration order; their exceptions are logged, never raised)."""
        self._close_hooks.append(hook)

    def remove_close_hook(self, hook: Callable[[], None]) -> None:
        """Forget a hook given to :meth:`on_close` (no error if unknown)."""
        if hook in self._close_hooks:
            self._close_hooks.remove(hook)

    def spawn(self, func: Callable[..., Any], *args: Any) -> gevent.Greenlet[..., Any]:
        """Run ``func(*args)`` in a greenlet of the core's group (killed by :meth:`close`)."""
        return self.group.spawn(func, *args)

    def close(self, timeout: float = 5.0) -> None:
        """Close hooks (they may still make calls), then the attempt loop (later calls
        raise ClientClosed), the cluster state, every greenlet of the group and every
        connection. Waits at most ``timeout`` seconds for the greenlets. Idempotent;
        never raises.

        Safe from a greenlet of the group itself (a watch callback, say): that greenlet
        is not killed (it would kill the close half-way); it ends when its function returns.
        """
        if self._closed:
            return
        self._closed = True
        for hook in list(self._close_hooks):  # hooks may still call (a lease revoke)
            try:
                hook()
            except Exception:
                log.exception("error while closing %r; continuing", hook)
        self.executor.close()
        try:
            self.cluster.close()
            current = gevent.getcurrent()
            others = [g for g in list(self.group) if g is not current]
            gevent.killall(others, timeout=timeout, block=True)
            for greenlet in others:  # the group's own unlink runs later, in the hub
                if greenlet.dead:
                    self.group.discard(greenlet)
        except Exception:
            log.exception("error while ending the client's greenlets; continuing")
        finally:
            self.transport.close()

    def _adopt_after_fork(self) -> None:
        self._pid = os.getpid()
        log.info(
            "geetcd client used in forked process %d: inherited watches and leases end", self._pid
        )
        self.watch_hub.drop_inherited()
        self.keepalive.drop_inherited()

    # ------------------------------------------------------------------ calls
    def call(  # noqa: PLR0917 - path, body, parse, idempotent read best in order
        self,
        path: str,
        body: dict[str, Any],
        parse: Callable[[dict[str, Any]], Any],
        idempotent: bool,
        timeout: float | None = None,
        retry: Retry | None = None,
        *,
        name: str | None = None,
        drain: bool = False,
    ) -> Any:
        """Start the core, then one unary JSON call through the one way to send
        (:meth:`Executor.call`; ``name`` is the method name observers see, ``drain`` marks a
        read-only txn: see :class:`~geetcd._executor.Request`)."""
        self.start()
        return self.executor.call(
            path,
            body,
            parse,
            idempotent=idempotent,
            timeout=timeout,
            retry=retry,
            name=name,
            drain=drain,
        )

    # ------------------------------------------------------------------ cluster I/O hooks
    def _probe(self, member: Member) -> Header:
        return self.executor.probe(member)

    def _fetch_members(self) -> MemberList:
        result: MemberList = self.call(
            cluster_proto.MEMBER_LIST, {}, cluster_proto.parse_member_list, idempotent=True
        )
        return result

    def _member_removed(self, member: Member) -> None:
        self.transport.forget(member.url)
