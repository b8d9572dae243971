"""Cooperative client WebSockets to etcd's gateway (watch and keepalive streams).

etcd wraps its ``/v3/`` JSON gateway in a WebSocket proxy (ETCD-PROTOCOL.md §9): on a
WebSocket to ``/v3/watch`` or ``/v3/lease/keepalive`` every text message sent is one
request of the gRPC stream and every message received is one ``{"result": ...}`` (or a
final ``{"error": ...}``). This module opens such a WebSocket and moves whole messages; what
they mean is the business of :mod:`geetcd.watch_mux` and :mod:`geetcd.keepalive_ws`.

* The socket comes from :func:`geetcd.transport.dial.dial`: a ``gevent.socket`` (TLS
  through the transport's ``gevent.ssl`` context, client certificates included), so it is
  cooperative whether or not the program was monkey patched, and registered for fork
  severing (a forked child never reads or writes a byte of it); the framing is
  :mod:`wsproto` (sans-IO, from the h11 authors).
* :func:`open_websocket` does the TCP connect (bounded by ``connect_timeout``), the TLS
  handshake and the HTTP upgrade (together bounded by ``handshake_timeout``, counted from
  the start of the connect). An upgrade the other side answers with anything but
  ``101`` raises :class:`~geetcd.errors.WebSocketRefused` (a proxy that strips
  ``Upgrade``, a server without the WebSocket proxy): callers fall back to HTTP streams.
* One greenlet reads (:meth:`WebSocket.receive`); any greenlet may send. Sends are
  serialised by a lock and bounded in time: a send that cannot finish within
  ``send_timeout`` (a hung peer whose buffers are full) aborts the connection.
* Pings from the server are answered inside :meth:`WebSocket.receive`; :meth:`ping`
  sends one (answers are counted in ``pongs`` but are *not* data: a member without a
  leader still answers pings).
* Every socket, TLS and protocol failure is translated once, by
  :func:`geetcd.transport.errors.translate`, into the same errors as HTTP calls
  (ConnectionFailed, ConnectionLost, ResponseTimeout, TLSError), with the cause chained.
"""

from __future__ import annotations

import contextlib
import socket as _stdlib_socket
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import gevent
import gevent.lock
import gevent.socket
import wsproto
import wsproto.events as ws_events
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from geetcd.errors import (
    ConnectionLost,
    EtcdError,
    ResponseTimeout,
    WebSocketRefused,
)
from geetcd.transport.dial import dial
from geetcd.transport.endpoint import authority
from geetcd.transport.errors import translate


class WebSocketDialer(Protocol):
    """What :func:`open_websocket` needs of the transport (``Transport`` is one): endpoint
    parsing, its TLS context and the host name TLS checks."""

    @property
    def server_hostname(self) -> str | None:
        """The host name TLS checks (None: each member's own)."""

    def endpoint(self, url: str) -> tuple[str, str, int]:
        """``(scheme, host, port)`` of a member URL."""

    def ssl_context(self) -> Any:
        """The transport's TLS context (built once)."""


__all__ = ["WebSocket", "open_websocket"]

_monotonic = time.monotonic

_READ_SIZE = 65536
# How long close() waits for the peer's close frame before dropping the socket.
_CLOSE_WAIT = 1.0
# Bytes of a refused upgrade's body kept for the error message.
_REFUSAL_BODY = 512


class WebSocket:
    """One open client WebSocket (see the module docstring). Owned by one reader greenlet.

    ``receive()`` returns the next whole message as text, or None once the peer closed
    cleanly. ``send()`` / ``send_many()`` may be called from any greenlet. ``abort()``
    wakes the reader at once (it then raises ConnectionLost); ``close()`` runs the close
    handshake (bounded) and closes the socket. Never reused after it ends.
    """

    __slots__ = (
        "__weakref__",
        "_closed",
        "_conn",
        "_parts",
        "_ready",
        "_send_lock",
        "_sent_close",
        "aborted",
        "pongs",
        "send_timeout",
        "sock",
        "subprotocol",
        "url",
    )

    def __init__(
        self,
        url: str,
        sock: Any,
        conn: wsproto.WSConnection,
        *,
        send_timeout: float,
        subprotocol: str | None = None,
        leftover: Iterable[str] = (),
    ) -> None:
        self.url = url
        self.sock = sock
        self._conn = conn
        self.send_timeout = send_timeout
        self.subprotocol = subprotocol
        self._send_lock = gevent.lock.Semaphore(1)
        self._ready: deque[str] = deque(leftover)
        self._parts: list[str] = []
        self._closed = False
        self._sent_close = False
        self.aborted = False
        #: Pong frames received (answers to :meth:`ping`).
        self.pongs = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<WebSocket {self.url} {state}>"

    @property
    def closed(self) -> bool:
        """True once the socket was closed (by :meth:`close`, or after the peer's close)."""
        return self._closed

    # ------------------------------------------------------------------ receiving
    def receive(self) -> str | None:
        """The next whole message (fragments joined), or None after a clean close.

        Blocks (cooperatively) until one arrives; answers pings meanwhile. Raises
        ConnectionLost when the connection breaks or closes without a close frame, and the
        translated error for any socket or TLS failure.
        """
        ready = self._ready
        while not ready:
            if self._closed:
                return None
            try:
                data = self.sock.recv(_READ_SIZE)
            except (OSError, ValueError) as exc:
                if self.aborted:
                    raise ConnectionLost(
                        f"WebSocket to {self.url} aborted", member=self.url
                    ) from exc
                raise translate(exc, self.url, "WebSocket read") from exc
            if not data:
                if self.aborted:
                    raise ConnectionLost(f"WebSocket to {self.url} aborted", member=self.url)
                raise ConnectionLost(
                    f"WebSocket to {self.url} closed without a close frame", member=self.url
                )
            if self._absorb(data):
                break
        if ready:
            return ready.popleft()
        return None

    def _absorb(self, data: bytes) -> bool:
        """Feed received bytes to the protocol; True once the peer's close frame arrived."""
        conn = self._conn
        try:
            conn.receive_data(data)
            for event in conn.events():
                if isinstance(event, ws_events.TextMessage):
                    self._parts.append(event.data)
                    if event.message_finished:
                        parts = self._parts
                        self._ready.append(parts[0] if len(parts) == 1 else "".join(parts))
                        self._parts = []
                elif isinstance(event, ws_events.BytesMessage):
                    self._parts.append(bytes(event.data).decode("utf-8", "replace"))
                    if event.message_finished:
                        self._ready.append("".join(self._parts))
                        self._parts = []
                elif isinstance(event, ws_events.Ping):
                    self._send_frame(event.response())
                elif isinstance(event, ws_events.Pong):
                    self.pongs += 1
                elif isinstance(event, ws_events.CloseConnection):
                    if not self._sent_close:
                        with contextlib.suppress(EtcdError, LocalProtocolError):
                            self._send_frame(event.response())
                        self._sent_close = True
                    self._close_socket()
                    return True
        except RemoteProtocolError as exc:
            raise ConnectionLost(
                f"WebSocket protocol error from {self.url}: {exc}", member=self.url
            ) from exc
        return False

    # ------------------------------------------------------------------ sending
    def send(self, text: str) -> None:
        """Send one text message. Raises ConnectionLost (the connection is then aborted)."""
        self._send_frame(ws_events.TextMessage(data=text))

    def send_many(self, texts: Sequence[str]) -> None:
        """Send several text messages with one write (in order)."""
        if texts:
            self._send_frames([ws_events.TextMessage(data=text) for text in texts])

    def ping(self) -> None:
        """Send a ping frame (the answer increments ``pongs``)."""
        self._send_frame(ws_events.Ping())

    def _send_frame(self, event: ws_events.Event) -> None:
        self._send_frames([event])

    def _send_frames(self, frames: list[ws_events.Event]) -> None:
        if self._closed or self.aborted:
            raise ConnectionLost(f"WebSocket to {self.url} is closed", member=self.url)
        with self._send_lock:
            try:
                data = b"".join(self._conn.send(frame) for frame in frames)
            except LocalProtocolError as exc:
                raise ConnectionLost(
                    f"WebSocket to {self.url} cannot send now: {exc}", member=self.url
                ) from exc
            timer = gevent.Timeout.start_new(self.send_timeout)
            try:
                self.sock.sendall(data)
            except gevent.Timeout as exc:
                if exc is not timer:
                    raise
                self.abort()
                raise ResponseTimeout(
                    f"WebSocket to {self.url}: a send did not finish within "
                    f"{self.send_timeout:.3g} s",
                    member=self.url,
                ) from exc
            except (OSError, ValueError) as exc:
                self.abort()
                raise translate(exc, self.url, "WebSocket write") from exc
            finally:
                timer.close()

    # ------------------------------------------------------------------ ending
    def abort(self) -> None:
        """Wake a reader blocked in :meth:`receive` (it raises ConnectionLost). From any
        greenlet; never raises. The socket is closed by :meth:`close` afterwards."""
        self.aborted = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            self.sock.shutdown(_stdlib_socket.SHUT_RDWR)

    def start_close(self, code: int = 1000) -> None:
        """Send the close frame (the reader's next :meth:`receive` returns None once the
        peer answers). Never raises."""
        if self._closed or self._sent_close or self.aborted:
            return
        self._sent_close = True
        with contextlib.suppress(EtcdError):
            self._send_frame(ws_events.CloseConnection(code=code))

    def close(self, *, wait: float = 0.0) -> None:
        """End the connection. With ``wait`` > 0 (only when no other greenlet is reading):
        send the close frame and read until the peer's answer or ``wait`` seconds; then close
        the socket. Idempotent; never raises."""
        if self._closed:
            return
        if wait > 0 and not self.aborted:
            self.start_close()
            with contextlib.suppress(EtcdError, gevent.Timeout), gevent.Timeout(wait):
                while self.receive() is not None:
                    pass
        self._close_socket()

    def _close_socket(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            self.sock.close()


def open_websocket(
    transport: WebSocketDialer,
    url: str,
    path: str,
    *,
    connect_timeout: float,
    handshake_timeout: float,
    token: str | None = None,
    send_timeout: float = 5.0,
) -> WebSocket:
    """Open a WebSocket to ``path`` on the member at ``url`` (``http``/``https``).

    ``token`` (an etcd auth token) rides in ``Sec-WebSocket-Protocol: Bearer, <token>``,
    which etcd's WebSocket proxy turns into the ``Authorization`` of the gRPC stream.
    Raises ConnectionFailed (no connection), TLSError, ResponseTimeout (no upgrade answer
    within ``handshake_timeout``), ConnectionLost, or WebSocketRefused (an HTTP answer
    other than 101: nothing was sent to etcd's gRPC side).
    """
    scheme, host, port = transport.endpoint(url)
    what = f"WebSocket {path}"
    started = _monotonic()
    sock = dial(
        url,
        host,
        port,
        timeout=connect_timeout,
        ssl_context=transport.ssl_context() if scheme == "https" else None,
        server_hostname=transport.server_hostname,
        handshake_timeout=handshake_timeout,
        what=what,
    )
    try:
        left = max(0.001, handshake_timeout - (_monotonic() - started))
        conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        subprotocols = ["Bearer", token] if token else []
        request = ws_events.Request(
            host=authority(host, port),
            target=path,
            subprotocols=subprotocols,
        )
        sock.settimeout(left)
        try:
            sock.sendall(conn.send(request))
            accepted, leftover = _await_upgrade(sock, conn, url, path)
        except TimeoutError as exc:
            raise ResponseTimeout(
                f"no WebSocket upgrade answer from {url} for {path} within "
                f"{handshake_timeout:.3g} s",
                member=url,
            ) from exc
        except (OSError, ValueError) as exc:
            raise translate(exc, url, what) from exc
        sock.settimeout(None)  # from here on, the owner's liveness logic bounds reads
        return WebSocket(
            url,
            sock,
            conn,
            send_timeout=send_timeout,
            subprotocol=accepted.subprotocol,
            leftover=leftover,
        )
    except BaseException:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sock.close()
        raise


def _await_upgrade(
    sock: Any, conn: wsproto.WSConnection, url: str, path: str
) -> tuple[ws_events.AcceptConnection, list[str]]:
    """Read until the upgrade's answer; (the accept, messages that came with it)."""
    refused: ws_events.RejectConnection | None = None
    body: list[bytes] = []
    leftover: list[str] = []
    parts: list[str] = []
    while True:
        data = sock.recv(_READ_SIZE)
        try:
            conn.receive_data(data or None)
            for event in conn.events():
                if isinstance(event, ws_events.AcceptConnection):
                    accepted = event
                    refused = None
                    # Messages that arrived in the same read as the 101 answer.
                    for later in conn.events():
                        if isinstance(later, ws_events.TextMessage):
                            parts.append(later.data)
                            if later.message_finished:
                                leftover.append("".join(parts))
                                parts = []
                    if parts:
                        leftover.append("".join(parts))  # rare: a split first message
                    return accepted, leftover
                if isinstance(event, ws_events.RejectConnection):
                    refused = event
                    if not event.has_body:
                        raise _refusal(url, path, event, b"")
                elif isinstance(event, ws_events.RejectData):
                    if sum(map(len, body)) < _REFUSAL_BODY:
                        body.append(bytes(event.data))
                    if event.body_finished and refused is not None:
                        raise _refusal(url, path, refused, b"".join(body))
        except RemoteProtocolError as exc:
            if refused is not None:
                raise _refusal(url, path, refused, b"".join(body)) from exc
            raise ConnectionLost(
                f"{url} answered the WebSocket upgrade for {path} with something that is "
                f"not HTTP: {exc}",
                member=url,
            ) from exc
        if not data:
            if refused is not None:
                raise _refusal(url, path, refused, b"".join(body))
            raise ConnectionLost(
                f"{url} closed the connection during the WebSocket upgrade for {path}",
                member=url,
            )


def _refusal(
    url: str, path: str, event: ws_events.RejectConnection, body: bytes
) -> WebSocketRefused:
    text = body[:_REFUSAL_BODY].decode("utf-8", "replace").strip()
    detail = f": {text}" if text else ""
    return WebSocketRefused(
        f"{url} refused the WebSocket upgrade for {path} with HTTP {event.status_code}{detail}",
        http_status=event.status_code,
        member=url,
    )
