"""The watch hub: one reader greenlet per server stream, resume, liveness, coalescing.

The gateway gives one watch per HTTP connection and cancels only by closing it
(ETCD-PROTOCOL.md §3.4), so every :class:`ServerStream` owns one connection at a time and
one reader greenlet (spawned in the client's group). The reader:

* opens ``/v3/watch`` on a member from the shared cluster state, waits for ``created``;
* parses each message once and hands every ``(revision, events)`` batch to each
  subscriber (:class:`geetcd.watch.Watch`), whose bounded buffer either takes it or
  overflows that subscriber alone;
* keeps the resume point ``next_revision`` = last fully delivered revision + 1 (a progress
  notification at R moves it to R + 1);
* on a member failure (connection lost, stream error such as "no leader", clean EOF)
  benches the member and re-creates the watch on another one from ``next_revision``,
  so no event is lost or repeated and order is kept;
* on a compaction or any other server cancel ends every subscriber with the error.

Liveness is the core's one mechanism (:mod:`geetcd.liveness`, shared with v2 waits): a
connected stream is registered there; silent for ``liveness`` seconds, its member is probed
(one probe per member, not per stream); a member that fails the probe, or that the cluster
state marks DOWN, loses its streams (aborted, then resumed elsewhere by their readers).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import gevent
import gevent.event
from gevent.hub import Waiter

from geetcd._executor import Attempt
from geetcd.cluster import Member
from geetcd.errors import (
    ConnectionLost,
    EtcdError,
)
from geetcd.models import WatchResponse
from geetcd.protocol.codec import encode_json
from geetcd.protocol.errors import error_from_body
from geetcd.protocol.watch import (
    WATCH,
    WatchBatch,
    WatchDecoder,
    cancel_error,
    create_body,
    group_by_revision,
)
from geetcd.supervisor import inherited_stream_error, supervise
from geetcd.transport import Stream

if TYPE_CHECKING:
    from geetcd.core_api import CoreAPI as Core
    from geetcd.watch_mux import WatchChannel

__all__ = ["ServerStream", "Subscriber", "WatchHub", "WatchSpec"]

log = logging.getLogger(__name__)
_monotonic = time.monotonic
# A callback watch's greenlet ends after this many idle seconds (restarted by the next event).
_RUNNER_LINGER = 1.0


@dataclass(frozen=True, slots=True)
class WatchSpec:
    """What a server stream watches; equal specs without a start revision share a stream."""

    key: bytes
    range_end: bytes | None
    prev_kv: bool
    filters: tuple[str, ...]
    progress_notify: bool

    def body(self, start_revision: int, watch_id: int = 0) -> bytes:
        """The request creating this watch from ``start_revision`` (0: from now). With a
        ``watch_id`` (a multiplexed stream), the server may fragment big responses."""
        return encode_json(
            create_body(
                self.key,
                self.range_end,
                start_revision=start_revision,
                prev_kv=self.prev_kv,
                filters=self.filters,
                progress_notify=self.progress_notify,
                watch_id=watch_id,
                fragment=watch_id != 0,
            )
        )


class Subscriber(Protocol):
    """What a stream needs from each of its subscribers (:class:`geetcd.Watch` is one).

    Every method is called in the stream's reader greenlet (or the hub's) and must not block.
    """

    def hub_joined(self, stream: ServerStream, revision: int) -> None:
        """Attached to ``stream``; everything after ``revision`` will be delivered."""

    def hub_created(self, revision: int) -> None:
        """The server acknowledged the watch at ``revision``."""

    def hub_deliver(self, batch: WatchBatch, wake: list[Waiter[None]]) -> bool:
        """Take one batch (append a waiting consumer to ``wake``); False: overflowed."""

    def hub_finish(self, error: BaseException) -> None:
        """The stream ended with a terminal ``error``."""

    def hub_closed(self) -> None:
        """The client was closed."""

    def hub_retire_if_idle(self, now: float, linger: float) -> None:
        """End an idle callback greenlet (started again by the next event)."""


class _Stop(Exception):
    """Internal: the stream was stopped while the reader was between steps."""


class ServerStream:
    """One watch on the server, shared by every subscriber with the same spec.

    ``next_revision`` is the resume point (0 until the first ``created`` of a watch from
    "now"); ``created`` is set once the server acknowledged the watch for the first time,
    or when the stream failed before that (``error`` then says why).
    """

    __slots__ = (
        "_errors",
        "catch_up_to",
        "channel",
        "connection",
        "created",
        "creating",
        "done",
        "error",
        "ever_created",
        "failures",
        "greenlet",
        "hub",
        "last_activity",
        "last_error",
        "liveness",
        "member",
        "next_revision",
        "reconnects",
        "shared",
        "spec",
        "subscribers",
        "watch_id",
    )

    stream_kind: ClassVar[str] = "watch"

    def __init__(
        self, hub: WatchHub, spec: WatchSpec, start_revision: int, liveness: float, shared: bool
    ) -> None:
        self.hub = hub
        self.spec = spec
        self.shared = shared
        self.liveness = liveness
        self.next_revision = start_revision
        self.subscribers: dict[Subscriber, None] = {}
        self.created = gevent.event.Event()
        self.ever_created = False
        self.done = False
        self.error: BaseException | None = None
        self.last_error: BaseException | None = None
        # The last few failures of this stream, oldest first (for diagnostics and tests).
        self._errors: deque[BaseException] | None = None  # (created on the first failure)
        self.member: Member | None = None
        self.connection: Stream | None = None
        # On a multiplexed WebSocket (geetcd.watch_mux): the channel and this watch's ID on
        # its current connection; None / 0 on an HTTP stream of its own.
        self.channel: WatchChannel | None = None
        self.watch_id = 0
        # The server's revision when this watch was (re-)created on a channel from an older
        # revision: until it has delivered past it, the server may still be replaying.
        self.catch_up_to = 0
        # True while its create request on the channel's connection awaits an answer.
        self.creating = False
        self.last_activity = _monotonic()
        self.greenlet: gevent.Greenlet[[], None] | None = None
        self.reconnects = 0
        self.failures = 0

    @property
    def errors(self) -> deque[BaseException]:
        """The last few failures of this stream, oldest first (diagnostics and tests)."""
        errors = self._errors
        if errors is None:
            errors = self._errors = deque(maxlen=8)
        return errors

    def __repr__(self) -> str:
        state = "done" if self.done else "open" if self.connection is not None else "connecting"
        where = self.member.url if self.member is not None else "-"
        return (
            f"<ServerStream key={self.spec.key!r} next_revision={self.next_revision} {state} "
            f"member={where} subscribers={len(self.subscribers)} reconnects={self.reconnects}>"
        )

    # ------------------------------------------------------------------ subscribers
    def attach(self, sub: Subscriber) -> None:
        """Add a subscriber; it receives every batch dispatched from now on."""
        self.subscribers[sub] = None
        sub.hub_joined(self, max(0, self.next_revision - 1))

    def detach(self, sub: Subscriber) -> None:
        """Remove a subscriber; the last one leaving stops the stream (closes the connection)."""
        self.subscribers.pop(sub, None)
        if not self.subscribers:
            self.stop()

    def stop(self) -> None:
        """End the stream: the connection is closed (never released alive), the reader ends.

        Called from another greenlet, waits (at most 2 s) until the connection is closed, so
        the server's watcher is gone when this returns. Never raises.
        """
        if self.done:
            return
        self.done = True
        self.hub._forget(self)
        channel = self.channel
        if channel is not None:
            channel.cancel(self)
            return
        reader = self.greenlet
        current = gevent.getcurrent()
        if reader is None or reader is current or reader.dead:
            return
        connection = self.connection
        if connection is not None:
            connection.abort()
        reader.kill(block=current is not gevent.get_hub(), timeout=2.0)

    def serving_member(self) -> str | None:
        """The URL of the member currently serving this watch (None while reconnecting)."""
        channel = self.channel
        if channel is not None:
            member = channel.member
            return member.url if member is not None and channel.ws is not None else None
        if self.member is None or self.connection is None:
            return None
        return self.member.url

    def stopped(self) -> bool:
        """True once the stream was stopped or failed (re-read: other greenlets set it)."""
        return self.done

    def abort_connection(self, reason: BaseException) -> None:
        """Drop the current connection (from the supervisor); the reader resumes elsewhere.
        On a multiplexed WebSocket that is the channel's connection: all its watches move."""
        if self.channel is not None:
            self.channel.abort_connection(reason)
            return
        connection = self.connection
        if connection is not None and not self.done:
            self.last_error = reason
            connection.abort()

    def _fail(self, error: BaseException) -> None:
        """End every subscriber with ``error`` (terminal)."""
        self.error = error
        self.done = True
        subscribers = list(self.subscribers)
        self.subscribers.clear()
        for sub in subscribers:
            sub.hub_finish(error)
        self.created.set()

    # ------------------------------------------------------------------ reader greenlet
    def run(self) -> None:
        """The reader greenlet's body. Never raises: errors end the subscribers."""
        try:
            self._loop()
        except EtcdError as exc:
            if not self.done:
                log.debug("watch %r ended: %s", self.spec.key, exc)
            self._fail(exc)
        except _Stop:
            pass
        except Exception as exc:
            log.exception("watch stream %r failed unexpectedly", self.spec.key)
            self._fail(exc)
        finally:
            connection, self.connection = self.connection, None
            if connection is not None:
                connection.close()
            self.done = True
            self.hub._forget(self)

    def _loop(self) -> None:
        """Open, serve and resume this stream through the one stream supervisor
        (:func:`geetcd.supervisor.supervise`), until stopped or a non-transient error."""
        supervise(self.hub.core, self)
        if not self.stopped():
            raise _Stop  # the client closed

    # ------------------------------------------------------------------ SupervisedStream
    def describe(self) -> str:
        """``watch '<key>'`` (for log lines and errors)."""
        return f"watch {self.spec.key!r}"

    def open(self, attempt: Attempt) -> tuple[Stream, float]:
        """One attempt: open the stream on ``attempt.member``; an error answer is raised (the
        attempt loop judges it: bench and move on, re-authenticate, or give up)."""
        core = self.hub.core
        member = attempt.member
        started = _monotonic()
        connection = core.transport.open_stream(
            member.url,
            core.executor.api_prefix + WATCH,
            self.spec.body(self.next_revision),
            connect_timeout=attempt.connect_timeout,
            first_byte_timeout=attempt.read_timeout,
            headers=attempt.headers,
        )
        if connection.status != 200:
            try:
                raise error_from_body(connection.status, connection.read_all(), member.url)
            finally:
                connection.close()
        return connection, started

    def serve(self, opened: tuple[Stream, float], member: Member) -> EtcdError | None:
        """Read the open stream until it ends; None once stopped, else why it ended."""
        connection, started = opened
        core = self.hub.core
        if self.reconnects and core.observers.active:  # opened again after a failure
            core.observers.emit("watch_resumed", member.url, self.next_revision)
        self.member = member
        self.connection = connection
        self.last_activity = _monotonic()
        core.liveness.watch(self)
        try:
            self._read(connection, member, started)
            error: EtcdError = ConnectionLost(
                f"watch stream from {member.url} ended", member=member.url
            )
        except EtcdError as exc:
            error = exc
        finally:
            core.liveness.forget(self)
            self.connection = None
            connection.close()
        return None if self.stopped() else error

    def unreachable(self, error: EtcdError) -> None:
        """No member could open the stream within the client's timeout: still trying."""
        self.last_error = error
        self.errors.append(error)
        log.warning("watch %r: no etcd member answered, still trying: %s", self.spec.key, error)

    def failed(self, member: Member, error: EtcdError) -> None:
        """The stream on ``member`` failed: resume from ``next_revision`` elsewhere."""
        self.last_error = error
        self.errors.append(error)
        self.reconnects += 1
        log.info(
            "watch %r: stream on %s failed (%s); resuming from revision %d elsewhere",
            self.spec.key,
            member.url,
            error,
            self.next_revision,
        )

    def _read(self, connection: Stream, member: Member, started: float) -> None:
        """Read messages until EOF (returns) or an error (raised as an EtcdError)."""
        decoder = WatchDecoder(self.hub.core.ks, member.url)
        read = connection.read_chunk
        while True:
            chunk = read()
            if self.stopped():
                return
            self.last_activity = _monotonic()
            items = decoder.feed(chunk) if chunk else decoder.end()
            for item in items:
                if isinstance(item, EtcdError):
                    raise item
                self._handle(item, member, started)
                if self.stopped():
                    return
            if not chunk:
                return

    def _handle(self, response: WatchResponse, member: Member, started: float) -> None:
        if response.canceled:
            raise cancel_error(response, member.url)
        if response.created:
            self._on_created(response, member, started)
            return
        if response.events:
            observers = self.hub.core.observers
            if observers.active:
                observers.emit("watch_events", len(response.events))
            for batch in group_by_revision(response.events):
                if batch.revision < self.next_revision:
                    continue  # already delivered (defensive: a resume never replays them)
                self._dispatch(batch)
                self.next_revision = batch.revision + 1
            return
        # A progress notification: everything up to its revision has been sent.
        self.channel_progress(response.header.revision)

    # ------------------------------------------------------------------ on a channel
    # Called by the WatchChannel's reader (geetcd.watch_mux) for a multiplexed watch.
    def channel_created(self, response: WatchResponse, member: Member, started: float) -> None:
        """The server acknowledged this watch on the channel's current connection."""
        self.member = member
        replaying = self.next_revision and self.next_revision <= response.header.revision
        self.catch_up_to = response.header.revision if replaying else 0
        self._on_created(response, member, started)

    def channel_deliver(self, response: WatchResponse, member: Member, started: float) -> None:
        """Events (fragments joined) or a progress notification of this watch."""
        self._handle(response, member, started)

    def channel_progress(self, revision: int, *, requested: bool = False) -> None:
        """Everything up to ``revision`` has been sent: the resume point moves past it.

        A ``requested`` progress answer (watch ID -1) is not applied to a watch the server
        may still be replaying history for (created from an older revision and not yet
        delivered past the revision it was created at): etcd builds without the fix of
        etcd issue #15220 (3.4.23 and 3.5.1 among them) answer with the current revision
        even then, and moving the resume point would skip the replay on a reconnect."""
        if requested and self.catch_up_to:
            if self.next_revision <= self.catch_up_to:
                return
            self.catch_up_to = 0
        if self.ever_created and revision + 1 >= self.next_revision:
            self.next_revision = revision + 1
            if self.spec.progress_notify:
                self._dispatch(WatchBatch(revision, ()))

    def moved(self, error: EtcdError) -> None:
        """The channel's connection failed with ``error``: this watch resumes elsewhere."""
        self.last_error = error
        self.errors.append(error)
        self.reconnects += 1

    def channel_failed(self, error: BaseException) -> None:
        """The server canceled this watch, or the channel gave up: terminal."""
        self.channel = None
        self._fail(error)
        self.hub._forget(self)

    def _on_created(self, response: WatchResponse, member: Member, started: float) -> None:
        self.failures = 0  # it serves: the supervisor's backoff and re-auth start over
        if self.ever_created:
            return
        if not self.next_revision:
            self.next_revision = response.header.revision + 1
        self.ever_created = True
        for sub in self.subscribers:
            sub.hub_created(self.next_revision - 1)
        self.created.set()

    def _dispatch(self, batch: WatchBatch) -> None:
        overflowed: list[Subscriber] | None = None
        wake: list[Waiter[None]] = []
        # A snapshot: callbacks run inline may watch or cancel (attach / detach) meanwhile.
        for sub in list(self.subscribers):
            if not sub.hub_deliver(batch, wake):
                if overflowed is None:
                    overflowed = []
                overflowed.append(sub)
        if wake:
            # One hub callback switches to every waiting consumer in turn.
            gevent.get_hub().loop.run_callback(_wake_all, wake)
        if overflowed:
            for sub in overflowed:
                self.subscribers.pop(sub, None)
            if not self.subscribers:
                self.stop()


def _wake_all(waiters: list[Waiter[None]]) -> None:
    for waiter in waiters:
        waiter.switch(None)


class WatchHub:
    """All watch streams of one client: coalescing table, liveness supervisor, close."""

    def __init__(self, core: Core) -> None:
        """Build the hub of ``core`` (no I/O; streams start on the first subscribe)."""
        self.core = core
        self.shared: dict[WatchSpec, ServerStream] = {}
        self.streams: set[ServerStream] = set()
        self.closed = False
        self._supervisor: gevent.Greenlet[[], None] | None = None
        # Callback watches whose callback greenlet is alive (ended after _RUNNER_LINGER idle).
        self.runners: set[Subscriber] = set()
        # Every watch on one WebSocket (Client(streams="websocket"), the default).
        # Imported here: watch_mux imports this module (a known cycle, test_import_graph.py).
        from geetcd.watch_mux import WatchMux

        self.mux = WatchMux(self)
        core.on_close(self.close)

    def __repr__(self) -> str:
        return f"<WatchHub streams={len(self.streams)} shared={len(self.shared)}>"

    def subscribe(
        self, spec: WatchSpec, sub: Subscriber, start_revision: int | None, liveness: float
    ) -> ServerStream:
        """Attach ``sub`` to the shared stream of ``spec`` (or a new one); returns the stream.

        A watch with an explicit ``start_revision`` always gets a stream of its own.
        """
        core = self.core
        core.start()
        stream = self.shared.get(spec) if start_revision is None else None
        if stream is None or stream.done:
            shared = start_revision is None
            stream = ServerStream(self, spec, start_revision or 0, liveness, shared)
            if shared:
                self.shared[spec] = stream
            self.streams.add(stream)
            stream.attach(sub)
            if self.mux.enabled:
                self.mux.add(stream)
            else:
                self.start_http(stream)
        else:
            stream.liveness = min(stream.liveness, liveness)
            stream.attach(sub)
        if self._supervisor is None or self._supervisor.dead:
            self._supervisor = core.spawn(self._supervise)
        return stream

    def start_http(self, stream: ServerStream) -> None:
        """Give ``stream`` an HTTP stream of its own (its reader greenlet), from its resume
        revision."""
        stream.greenlet = self.core.spawn(stream.run)

    def _forget(self, stream: ServerStream) -> None:
        self.streams.discard(stream)
        if stream.shared and self.shared.get(stream.spec) is stream:
            del self.shared[stream.spec]

    def close(self) -> None:
        """End every watch: iterators stop, connections close. Never raises."""
        self.closed = True
        self.mux.close()
        self._end_every_stream(lambda sub: sub.hub_closed())

    def drop_inherited(self) -> None:
        """In a forked child (see :meth:`Core.start`): end every watch inherited from the
        parent with WatchCanceled (reason ``"forked"``); their streams are forgotten and
        their greenlets killed. New watches work as usual. Never raises."""
        error = inherited_stream_error()
        self.mux.close()
        self._end_every_stream(lambda sub: sub.hub_finish(error))
        self.runners.clear()

    def _end_every_stream(self, notify: Callable[[Subscriber], None]) -> None:
        """``notify`` every subscriber, then stop every stream: its connection aborted, its
        reader killed (unless it is the caller), the hub's tables emptied."""
        for stream in list(self.streams):
            subscribers = list(stream.subscribers)
            stream.subscribers.clear()
            for sub in subscribers:
                notify(sub)
            stream.done = True
            stream.created.set()  # wakes a client.watch() still waiting for its creation
            connection = stream.connection
            if connection is not None:
                connection.abort()
            if stream.greenlet is not None and stream.greenlet is not gevent.getcurrent():
                stream.greenlet.kill(block=False)
        self.streams.clear()
        self.shared.clear()

    # ------------------------------------------------------------------ callback runners
    def _supervise(self) -> None:
        """End the callback greenlets of idle watches (liveness is the core's
        :class:`geetcd.liveness.StreamLiveness`, shared with v2 waits)."""
        while self.streams and not self.closed:
            gevent.sleep(_RUNNER_LINGER / 4)
            now = _monotonic()
            for sub in list(self.runners):
                sub.hub_retire_if_idle(now, _RUNNER_LINGER)
