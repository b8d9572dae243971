"""Lease keepalives on one WebSocket per member (``Client(streams="websocket")``).

A keepalive POST is answered only for the lease IDs in the gateway's first read of its
body (ETCD-PROTOCOL.md §3.3); on a WebSocket to ``/v3/lease/keepalive`` every
``{"ID": "<id>"}`` message is one request of the gRPC stream and gets its own answer
(§9), so no lease depends on that race. :class:`KeepAliveChannels` keeps one
:class:`KeepAliveChannel` per member, opened on first use inside an attempt of the
client's one attempt loop (:class:`geetcd.keepalive.KeepAlive` calls
:meth:`KeepAliveChannels.refresh` where it would have sent a POST):

* :meth:`KeepAliveChannel.refresh` sends one message per ID (one write for all) and waits
  until every ID was answered or the attempt's read timeout passed: answered IDs are
  returned with their TTL (0: the lease is gone); no answer at all is a ResponseTimeout
  (the member is treated as hung, the attempt loop moves on); a partial answer returns
  what came (the keepalive re-sends the rest at once).
* The reader greenlet of a channel routes answers by lease ID. When the connection fails
  (or answers an ``error``), every waiting refresh raises that error and the channel is
  dropped; the next refresh opens a new one.
* A refused upgrade (:class:`~geetcd.errors.WebSocketRefused`) turns WebSockets off for
  keepalives of this client, logged once: the POST path takes over.
* No token is sent: etcd does not check permissions on lease keepalives, and its
  WebSocket proxy cannot carry a token etcd accepts (see :mod:`geetcd.watch_mux`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import gevent
import gevent.event

from geetcd.errors import ConnectionLost, EtcdError, ResponseTimeout, WebSocketRefused
from geetcd.protocol import lease as proto

if TYPE_CHECKING:
    from geetcd._executor import Attempt
    from geetcd.core_api import CoreAPI as Core
    from geetcd.websocket import WebSocket

__all__ = ["KeepAliveChannel", "KeepAliveChannels"]

log = logging.getLogger(__name__)


class _Refresh:
    """One refresh call waiting for its answers."""

    __slots__ = ("answers", "done", "error", "expected")

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.answers: dict[int, int] = {}
        self.error: EtcdError | None = None
        self.done = gevent.event.Event()


class KeepAliveChannel:
    """One keepalive WebSocket to one member (see the module docstring)."""

    __slots__ = ("_waiting", "closed", "greenlet", "url", "ws")

    def __init__(self, url: str, ws: WebSocket) -> None:
        self.url = url
        self.ws = ws
        self.closed = False
        self._waiting: dict[int, _Refresh] = {}
        self.greenlet: gevent.Greenlet[[], None] | None = None

    def __repr__(self) -> str:
        return f"<KeepAliveChannel {self.url} waiting={len(self._waiting)}>"

    def refresh(self, ids: Sequence[int], timeout: float) -> dict[int, int]:
        """Refresh ``ids``; {id: ttl} for those answered within ``timeout`` seconds."""
        if self.closed:
            raise ConnectionLost(f"keepalive stream to {self.url} is closed", member=self.url)
        call = _Refresh(len(ids))
        waiting = self._waiting
        for lease_id in ids:
            waiting[lease_id] = call
        try:
            self.ws.send_many([f'{{"ID":"{lease_id}"}}' for lease_id in ids])
            call.done.wait(timeout)
        finally:
            for lease_id in ids:
                if waiting.get(lease_id) is call:
                    del waiting[lease_id]
        if call.error is not None and not call.answers:
            raise call.error
        if not call.answers:
            raise ResponseTimeout(
                f"no keepalive answer from {self.url} within {timeout:.3g} s", member=self.url
            )
        return call.answers

    def run(self) -> None:
        """The reader greenlet: route answers until the connection ends. Never raises."""
        error: EtcdError
        try:
            while True:
                message = self.ws.receive()
                if message is None:
                    error = ConnectionLost(
                        f"keepalive stream from {self.url} ended", member=self.url
                    )
                    break
                answer = proto.parse_keepalive(message.encode(), self.url)
                for lease_id, ttl in answer.ttls.items():
                    call = self._waiting.pop(lease_id, None)
                    if call is not None:
                        call.answers[lease_id] = ttl
                        if len(call.answers) >= call.expected:
                            call.done.set()
                if answer.error is not None:
                    error = answer.error
                    break
        except EtcdError as exc:
            error = exc
        except Exception as exc:  # a bug: fail the waiters rather than hang them
            log.exception("keepalive stream reader failed unexpectedly")
            error = ConnectionLost(f"keepalive stream to {self.url} failed: {exc!r}")
        self._end(error)

    def _end(self, error: EtcdError) -> None:
        self.closed = True
        self.ws.close()
        waiting, self._waiting = self._waiting, {}
        for call in waiting.values():
            if call.error is None:
                call.error = error
            call.done.set()

    def close(self) -> None:
        """Close the connection; waiting refreshes raise ConnectionLost. Never raises."""
        if not self.closed:
            self.ws.start_close()
            self.ws.abort()
        reader = self.greenlet
        if reader is not None and reader is not gevent.getcurrent():
            reader.kill(block=False)
        if not self.closed:
            self._end(ConnectionLost(f"keepalive stream to {self.url} closed", member=self.url))


class KeepAliveChannels:
    """The keepalive WebSockets of one client, one per member. No I/O until first use."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self._channels: dict[str, KeepAliveChannel] = {}

    @property
    def enabled(self) -> bool:
        """True while keepalives go over WebSockets."""
        return self._core.websockets_enabled

    @property
    def refused(self) -> str | None:
        """Why a WebSocket upgrade was refused (the core's one record), or None."""
        return self._core.websocket_refused

    def refresh(self, attempt: Attempt, ids: Sequence[int]) -> dict[int, int] | None:
        """Refresh ``ids`` on ``attempt.member``'s channel: {id: ttl} of the answered IDs,
        or None when the upgrade was refused (the caller then POSTs). Raises the
        translated error of a failed connection (the channel is dropped)."""
        url = attempt.member.url
        channel = self._channels.get(url)
        if channel is None or channel.closed:
            core = self._core
            try:
                ws = core.transport.open_websocket(
                    url,
                    core.executor.api_prefix + proto.KEEPALIVE,
                    connect_timeout=attempt.connect_timeout,
                    handshake_timeout=attempt.read_timeout,
                )
            except WebSocketRefused as exc:
                if core.refuse_websockets(str(exc)):
                    log.warning("WebSocket upgrade refused (%s); using POSTs", exc)
                return None
            channel = self._channels[url] = KeepAliveChannel(url, ws)
            channel.greenlet = core.spawn(channel.run)
        try:
            return channel.refresh(ids, attempt.read_timeout)
        except EtcdError:
            channel.close()
            if self._channels.get(url) is channel:
                del self._channels[url]
            raise

    def close(self) -> None:
        """Close every channel (client closed, or a forked child). Never raises."""
        channels = list(self._channels.values())
        self._channels.clear()
        for channel in channels:
            channel.close()
