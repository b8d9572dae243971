"""Every watch of a client on one WebSocket: the multiplexed watch stream.

With ``Client(streams="websocket")`` (the default) the watch hub does not give each server
watch its own HTTP connection: :class:`WatchMux` keeps ONE :class:`WatchChannel`, a
WebSocket to ``/v3/watch`` on one member, and every server watch of the client
(:class:`~geetcd.watch_hub.ServerStream`) lives on it under a watch ID the client chose.
This is how Go's clientv3 runs (one gRPC stream carries every watch); etcd's gateway
offers it through its WebSocket proxy (ETCD-PROTOCOL.md §9).

Guarantees (the same as HTTP streams, plus):

* **Create** is one message: ``create_request`` with the stream's ``watch_id`` and its
  resume revision. Answers to creates are matched in order (etcd answers creates in the
  order it receives them; a refused create carries watch ID -1), everything else by ID.
* **Cancel** is one message (``cancel_request``): the server's watcher count drops by
  exactly one. ``ServerStream.stop()`` waits (at most 2 s) for the server's answer, so the
  server watcher is gone when it returns.
* **Fragments**: creates ask for ``fragment``; the pieces of a response bigger than the
  server's request limit are joined before anything is delivered, so a txn's events are
  never split.
* **Resume, exactly once**: when the channel fails (connection lost or aborted by the
  core's liveness supervisor, an ``error`` message, a clean close), the member is benched
  in the shared cluster state and the channel reconnects to another member through the
  client's one attempt loop; each live watch is created again from its own last delivered
  revision + 1, so nothing is lost, repeated or reordered. Half-received fragments are
  dropped (they are received again).
* **Progress**: :meth:`WatchChannel.request_progress` sends ``progress_request``; its
  answer (revision R, in stream order behind every event the server sent before it) moves
  every watch on the channel to R + 1 and is returned.
* **Liveness**: the channel is registered with the core's
  :class:`~geetcd.liveness.StreamLiveness` (pongs are not activity: a member without a
  leader still answers them, and a WebSocket cannot carry ``Grpc-Metadata-hasleader``);
  a ping every :data:`PING_INTERVAL` keeps proxies from closing an idle connection.
* **Fallback**: when the upgrade is refused (:class:`~geetcd.errors.WebSocketRefused`: a
  proxy that strips ``Upgrade``), the mux logs one line and moves every watch to HTTP
  streams from its resume revision, for the life of the client. The same happens for a
  client with credentials: etcd's WebSocket proxy passes the token as
  ``Authorization: Bearer <token>``, which etcd (3.4, 3.5, 3.6) does not accept
  (etcd issue #19752), so authenticated watches use HTTP streams.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar

import gevent
import gevent.event
import gevent.lock

from geetcd._executor import Attempt
from geetcd.cluster import Member
from geetcd.errors import (
    ConnectionLost,
    DeadlineExceeded,
    EtcdError,
    WatchError,
    WebSocketRefused,
)
from geetcd.liveness import DEFAULT_LIVENESS
from geetcd.models import Event, WatchResponse
from geetcd.protocol.codec import encode_json
from geetcd.protocol.watch import (
    PROGRESS_REQUEST,
    PROGRESS_WATCH_ID,
    WATCH,
    cancel_body,
    cancel_error,
    decode_message,
)
from geetcd.supervisor import supervise

if TYPE_CHECKING:
    from geetcd.watch_hub import ServerStream, WatchHub
    from geetcd.websocket import WebSocket

__all__ = ["PING_INTERVAL", "WatchChannel", "WatchMux"]

log = logging.getLogger(__name__)
_monotonic = time.monotonic

PING_INTERVAL = 20.0
"""Seconds between pings on a channel (keeps NATs and proxies from dropping it)."""
CANCEL_WAIT = 2.0
"""Seconds ``ServerStream.stop()`` waits for the server to confirm a cancel."""
IDLE_LINGER = 2.0
"""Seconds a channel without watches stays open (a watch created meanwhile reuses it)."""


class WatchChannel:
    """One WebSocket to one member at a time, carrying many server watches (see the module
    docstring). Its reader greenlet connects, reconnects elsewhere and routes answers."""

    __slots__ = (
        "_cancels",
        "_fragments",
        "_idle_since",
        "_outbox",
        "_progress",
        "_wake_writer",
        "closed",
        "closing",
        "connected",
        "failures",
        "fragmented",
        "greenlet",
        "last_activity",
        "last_error",
        "member",
        "mux",
        "pending",
        "reconnects",
        "watches",
        "ws",
    )

    stream_kind: ClassVar[str] = "watch_channel"

    def __init__(self, mux: WatchMux) -> None:
        self.mux = mux
        self.member: Member | None = None
        self.ws: WebSocket | None = None
        self.connected = gevent.event.Event()
        self.closed = False
        # Set once the idle close handshake started: watches added meanwhile wait for the
        # next channel (mux.channel_ended hands them over).
        self.closing = False
        #: Live watches by the ID they have on the current connection.
        self.watches: dict[int, ServerStream] = {}
        #: Watches whose create was sent on this connection, oldest first, not yet answered.
        self.pending: deque[ServerStream] = deque()
        self._fragments: dict[int, list[Event]] = {}
        self._cancels: dict[int, gevent.event.Event] = {}
        self._progress: deque[gevent.event.AsyncResult[int]] = deque()
        self._outbox: list[str] = []
        self._wake_writer = gevent.event.Event()
        self.last_activity = _monotonic()
        self.last_error: BaseException | None = None
        self.failures = 0
        self.reconnects = 0
        #: Responses the server sent in fragments (joined here before delivery).
        self.fragmented = 0
        self._idle_since: float | None = None
        self.greenlet: gevent.Greenlet[[], None] | None = None

    def __repr__(self) -> str:
        where = self.member.url if self.member is not None else "-"
        state = "closed" if self.closed else "open" if self.ws is not None else "connecting"
        return f"<WatchChannel {where} {state} watches={len(self.watches)}>"

    # ------------------------------------------------------------------ LiveStream
    @property
    def liveness(self) -> float:
        """The shortest liveness bound of the watches on the channel."""
        bounds = [s.liveness for s in self.watches.values()]
        return min(bounds) if bounds else DEFAULT_LIVENESS

    def abort_reason(self) -> BaseException | None:
        """Why the current connection was dropped by :meth:`abort_connection` (or None)."""
        return self.last_error

    def abort_connection(self, reason: BaseException) -> None:
        """Drop the connection (from the liveness supervisor); the channel resumes elsewhere."""
        ws = self.ws
        if ws is not None and not self.closed:
            self.last_error = reason
            ws.abort()

    # ------------------------------------------------------------------ watches
    def add(self, stream: ServerStream) -> None:
        """Put ``stream`` on the channel: created now if connected, else at connect."""
        stream.channel = self
        stream.watch_id = self.mux.new_id()
        self.watches[stream.watch_id] = stream
        self._idle_since = None
        if self.ws is not None and not self.closing:
            self._send_create(stream)

    def _send_create(self, stream: ServerStream) -> None:
        self.pending.append(stream)
        stream.creating = True
        self._send(stream.spec.body(stream.next_revision, stream.watch_id).decode("ascii"))

    def cancel(self, stream: ServerStream) -> None:
        """Cancel ``stream`` (already marked done); waits for the server's answer (at most
        :data:`CANCEL_WAIT`) unless called from the hub or this channel's reader. Never
        raises."""
        watch_id = stream.watch_id
        if self.watches.get(watch_id) is not stream:
            return
        del self.watches[watch_id]
        self._fragments.pop(watch_id, None)
        if not self.watches:
            self._idle_since = _monotonic()
            self.mux.hub.core.spawn(self._close_if_idle)
        if self.ws is None or stream.creating:
            return  # not on the server yet (the create answer is canceled when it comes)
        ack = gevent.event.Event()
        self._cancels[watch_id] = ack
        self._send(encode_json(cancel_body(watch_id)).decode("ascii"))
        current = gevent.getcurrent()
        if current is gevent.get_hub() or current is self.greenlet:
            return
        ack.wait(CANCEL_WAIT)
        self._cancels.pop(watch_id, None)

    def request_progress(self, deadline: float) -> int:
        """Ask the server for a progress answer; return its revision R once every watch on
        the channel was moved to R + 1 (everything up to R delivered). Raises
        DeadlineExceeded, or the channel's error when the connection failed meanwhile."""
        if not self.connected.wait(max(0.0, deadline - _monotonic())) or self.ws is None:
            raise DeadlineExceeded("the watch stream was not connected before the deadline")
        answer: gevent.event.AsyncResult[int] = gevent.event.AsyncResult()
        self._progress.append(answer)
        self._send(PROGRESS_REQUEST)
        try:
            revision = answer.get(timeout=max(0.0, deadline - _monotonic()))
        except gevent.Timeout as exc:
            raise DeadlineExceeded("no progress answer before the deadline") from exc
        finally:
            if answer in self._progress:
                self._progress.remove(answer)
        if revision is None:  # (AsyncResult.get only returns None after a timeout)
            raise DeadlineExceeded("no progress answer before the deadline")
        return revision

    def _close_if_idle(self) -> None:
        """After IDLE_LINGER without watches: start the close handshake (the reader then
        ends cleanly; a watch added later starts a new channel)."""
        gevent.sleep(IDLE_LINGER)
        since = self._idle_since
        ws = self.ws
        if since is None or self.watches or ws is None or _monotonic() - since < IDLE_LINGER:
            return
        self.closing = True
        ws.start_close()

    # ------------------------------------------------------------------ sending
    def _send(self, message: str) -> None:
        self._outbox.append(message)
        self._wake_writer.set()

    def _write(self, ws: WebSocket) -> None:
        """The writer greenlet of one connection: sends what is queued, many at a time,
        and a ping every PING_INTERVAL. Ends with the connection."""
        wake = self._wake_writer
        while self.ws is ws:
            if not wake.wait(PING_INTERVAL):
                try:
                    ws.ping()
                except EtcdError:
                    return
                continue
            wake.clear()
            batch, self._outbox = self._outbox, []
            if not batch:
                continue
            try:
                ws.send_many(batch)
            except EtcdError as exc:
                self.last_error = exc
                return  # the connection is aborted: the reader resumes elsewhere

    # ------------------------------------------------------------------ reader greenlet
    def run(self) -> None:
        """Connect, read, reconnect elsewhere, until closed or idle. Never raises."""
        try:
            self._loop()
        except Exception as exc:  # a bug: end the watches rather than hang them
            log.exception("watch channel failed unexpectedly")
            self._fail_all(exc)
        finally:
            self._disconnect()
            self.closed = True
            self.mux.channel_ended(self)

    def _loop(self) -> None:
        """The channel's connections, through the one stream supervisor
        (:func:`geetcd.supervisor.supervise`): a refused upgrade moves every watch to HTTP, a
        non-transient error (or the fork of the process) ends them all."""
        try:
            supervise(self.mux.hub.core, self)
        except WebSocketRefused as exc:
            self.mux.fall_back(f"{exc}")
        except EtcdError as exc:
            self._fail_all(exc)

    # ------------------------------------------------------------------ SupervisedStream
    def describe(self) -> str:
        """``watch stream`` (for log lines and errors)."""
        return "watch stream"

    def stopped(self) -> bool:
        """True once the channel was closed, its client closed, or no watch is left."""
        return self.closed or self.mux.hub.core.closed or not self.watches

    def open(self, attempt: Attempt) -> WebSocket:
        """One attempt: the WebSocket upgrade on ``attempt.member``."""
        core = self.mux.hub.core
        return core.transport.open_websocket(
            attempt.member.url,
            core.executor.api_prefix + WATCH,
            connect_timeout=attempt.connect_timeout,
            handshake_timeout=attempt.read_timeout,
        )

    def serve(self, ws: WebSocket, member: Member) -> EtcdError | None:
        """See :meth:`_serve`."""
        return self._serve(ws, member)

    def unreachable(self, error: EtcdError) -> None:
        """No member could open the channel within the client's timeout: still trying."""
        self.last_error = error
        log.warning("watch stream: no etcd member answered, still trying: %s", error)

    def failed(self, member: Member, error: EtcdError) -> None:
        """The connection to ``member`` failed: every watch resumes elsewhere."""
        self.last_error = error
        self.reconnects += 1
        for stream in self.watches.values():
            stream.moved(error)
        log.info(
            "watch stream on %s failed (%s); resuming %d watch(es) elsewhere",
            member.url,
            error,
            len(self.watches),
        )

    def _serve(self, ws: WebSocket, member: Member) -> EtcdError | None:
        """Create every watch on ``ws`` and route its answers until it fails (the error is
        returned) or it was closed after IDLE_LINGER without watches (None)."""
        core = self.mux.hub.core
        self.member = member
        self.ws = ws
        self.last_error = None
        self.pending.clear()
        self._fragments.clear()
        self.last_activity = _monotonic()
        # Every live watch, under a fresh ID, from its own resume revision.
        watches = list(self.watches.values())
        self.watches.clear()
        self._outbox.clear()
        resumed = self.reconnects > 0 and core.observers.active  # after a failed connection
        for stream in watches:
            if not stream.done:
                stream.watch_id = self.mux.new_id()
                self.watches[stream.watch_id] = stream
                self._send_create(stream)
                if resumed:
                    core.observers.emit("watch_resumed", member.url, stream.next_revision)
        writer = core.spawn(self._write, ws)
        core.liveness.watch(self)
        self.connected.set()
        started = _monotonic()
        try:
            while True:
                message = ws.receive()
                if message is None:
                    if self.closing or not self.watches:
                        return None  # closed after IDLE_LINGER without watches
                    return ConnectionLost(
                        f"watch stream from {member.url} ended", member=member.url
                    )
                self.last_activity = _monotonic()
                item = decode_message(message, core.ks, member.url)
                if isinstance(item, EtcdError):
                    return item
                self._route(item, member, started)
        except EtcdError as exc:
            reason = self.abort_reason()
            if ws.aborted and isinstance(reason, EtcdError) and reason.transient:
                return reason  # why the liveness supervisor dropped the connection
            return exc
        finally:
            self.connected.clear()
            core.liveness.forget(self)
            self.ws = None
            self._wake_writer.set()
            writer.kill(block=False)
            ws.close()
            error = self.last_error or ConnectionLost(f"watch stream on {member.url} ended")
            for answer in self._progress:
                answer.set_exception(error)
            self._progress.clear()
            for ack in self._cancels.values():
                ack.set()
            self._cancels.clear()

    def _route(self, response: WatchResponse, member: Member, started: float) -> None:
        watch_id = response.watch_id
        if response.created:
            stream = self.pending.popleft() if self.pending else None
            if stream is not None:
                stream.creating = False
            if stream is None:
                log.warning("watch stream on %s: unexpected create answer %d", member.url, watch_id)
                return
            if watch_id not in (stream.watch_id, PROGRESS_WATCH_ID):
                # A server that assigns its own IDs: follow it (answers are in order).
                if self.watches.get(stream.watch_id) is stream:
                    del self.watches[stream.watch_id]
                    self.watches[watch_id] = stream
                stream.watch_id = watch_id
            if response.canceled:
                self.watches.pop(stream.watch_id, None)
                if not stream.done:
                    stream.channel_failed(cancel_error(response, member.url))
                return
            if stream.done:  # canceled while its create was on the way
                self._send(encode_json(cancel_body(stream.watch_id)).decode("ascii"))
                return
            stream.channel_created(response, member, started)
            self.failures = 0
            return
        if watch_id == PROGRESS_WATCH_ID:
            revision = response.header.revision
            for stream in list(self.watches.values()):
                if not stream.creating:
                    stream.channel_progress(revision, requested=True)
            if self._progress:
                self._progress.popleft().set(revision)
            return
        if response.canceled:
            ack = self._cancels.pop(watch_id, None)
            if ack is not None:
                ack.set()
            stream = self.watches.pop(watch_id, None)
            if stream is not None and not stream.done:
                stream.channel_failed(cancel_error(response, member.url))
            return
        stream = self.watches.get(watch_id)
        if stream is None:
            return  # canceled by us: late events
        if response.fragment:
            self._fragments.setdefault(watch_id, []).extend(response.events)
            return
        pieces = self._fragments.pop(watch_id, None)
        if pieces is not None:
            pieces.extend(response.events)
            self.fragmented += 1
            response = replace(response, events=tuple(pieces), fragment=False)
        stream.channel_deliver(response, member, started)

    # ------------------------------------------------------------------ ending
    def _fail_all(self, error: BaseException) -> None:
        streams = list(self.watches.values())
        self.watches.clear()
        self.pending.clear()
        for stream in streams:
            if not stream.done:
                stream.channel_failed(error)

    def _disconnect(self) -> None:
        ws = self.ws
        if ws is not None:
            ws.abort()

    def close(self) -> None:
        """End the channel (client closed): the connection is closed, the reader ends.
        Never raises."""
        self.closed = True
        self.connected.set()  # wakes request_progress waiters (they then see no ws)
        ws = self.ws
        if ws is not None:
            ws.start_close()
            ws.abort()
        reader = self.greenlet
        if reader is not None and reader is not gevent.getcurrent():
            reader.kill(block=False)

    def take_watches(self) -> list[ServerStream]:
        """Remove and return every live watch (for a fallback to HTTP)."""
        streams = [s for s in self.watches.values() if not s.done]
        self.watches.clear()
        self.pending.clear()
        return streams


class WatchMux:
    """The WebSocket side of one client's watch hub: one channel at a time (see the module
    docstring). Building it does no I/O."""

    def __init__(self, hub: WatchHub) -> None:
        self.hub = hub
        self.channel: WatchChannel | None = None
        self._ids = itertools.count(1)
        self._lock = gevent.lock.RLock()

    def __repr__(self) -> str:
        refused = self.refused is not None
        return f"<WatchMux channel={self.channel!r} refused={refused}>"

    @property
    def refused(self) -> str | None:
        """Why a WebSocket upgrade was refused (the core's one record), or None."""
        return self.hub.core.websocket_refused

    @property
    def enabled(self) -> bool:
        """True while new watches go on the WebSocket (see the module docstring)."""
        core = self.hub.core
        return core.websockets_enabled and core.executor.auth is None

    def new_id(self) -> int:
        """A watch ID never used before by this client (so never reused on a connection)."""
        return next(self._ids)

    def add(self, stream: ServerStream) -> None:
        """Put ``stream`` on the channel (starting one if none is running)."""
        channel = self.channel
        if channel is None or channel.closed:
            channel = self.channel = WatchChannel(self)
            channel.add(stream)
            channel.greenlet = self.hub.core.spawn(channel.run)
        else:
            channel.add(stream)

    def channel_ended(self, channel: WatchChannel) -> None:
        """Called by a channel's reader as it ends; watches added meanwhile get a new one."""
        if self.channel is channel:
            self.channel = None
            leftover = channel.take_watches()
            if leftover and self.enabled and not self.hub.closed:
                for stream in leftover:
                    self.add(stream)
            elif leftover:
                self._to_http(leftover)

    def fall_back(self, reason: str) -> None:
        """The upgrade was refused: every watch, now and later, uses HTTP streams."""
        if self.hub.core.refuse_websockets(reason):
            log.warning("WebSocket upgrade refused (%s); using HTTP streams", reason)
        channel = self.channel
        if channel is not None:
            self._to_http(channel.take_watches())

    def _to_http(self, streams: Iterable[ServerStream]) -> None:
        for stream in streams:
            stream.channel = None
            stream.watch_id = 0
            if not stream.done:
                self.hub.start_http(stream)

    def request_progress(self, stream: ServerStream, deadline: float) -> int:
        """See :meth:`WatchChannel.request_progress`; retried on the next connection when
        the channel fails meanwhile, until ``deadline``."""
        while True:
            channel = stream.channel
            if channel is None or stream.done:
                raise WatchError(
                    "request_progress needs a watch on a WebSocket stream "
                    "(Client(streams='websocket'), no credentials, upgrade not refused)"
                )
            try:
                return channel.request_progress(deadline)
            except EtcdError as exc:
                if not exc.transient or _monotonic() >= deadline:
                    raise

    def close(self) -> None:
        """End the channel (client closed, or a forked child dropping its parent's)."""
        channel, self.channel = self.channel, None
        if channel is not None:
            channel.watches.clear()
            channel.pending.clear()
            channel.close()
