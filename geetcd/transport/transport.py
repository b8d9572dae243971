"""Transport: every request, stream and WebSocket of a client, to any member.

Unary calls go through one :class:`~geetcd.transport.pool.MemberPool` per member (bounded,
FIFO-fair, created on first use); each stream gets a connection of its own, so long-lived
watches never starve unary calls of connections; WebSockets are opened by
:mod:`geetcd.transport.websocket`. Every socket comes from
:func:`~geetcd.transport.dial.dial` with this transport's TLS context, and every failure
leaves as one of the errors listed in :mod:`geetcd.transport.errors`.
"""

from __future__ import annotations

import ssl as _stdlib_ssl
import time
from collections.abc import Callable, Mapping
from http.client import HTTPException
from typing import Final

import gevent
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import HTTPError

from geetcd.config import TLS
from geetcd.errors import (
    ConnectionFailed,
    EtcdError,
    InvalidArgument,
    MemberBenched,
    PoolTimeout,
    ResponseTimeout,
)
from geetcd.http1 import UnsafeRequest, request_bytes
from geetcd.transport.connection import CooperativeHTTPConnection, CooperativeHTTPSConnection
from geetcd.transport.dial import dial
from geetcd.transport.endpoint import parse_endpoint
from geetcd.transport.errors import translate
from geetcd.transport.pool import MemberPool
from geetcd.transport.stream import Stream
from geetcd.transport.tls import make_ssl_context
from geetcd.transport.websocket import WebSocket, open_websocket

__all__ = ["RawResponse", "Transport"]

_monotonic = time.monotonic

_JSON_HEADERS: Final = {
    "Content-Type": "application/json",
    "Grpc-Metadata-hasleader": "true",
    "User-Agent": "geetcd",
}


class RawResponse:
    """Status, body bytes and headers (case-insensitive when filled by Transport) of one call."""

    __slots__ = ("data", "headers", "status")

    def __init__(self, status: int, data: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.data = data
        self.headers: Mapping[str, str] = headers if headers is not None else {}


class Transport:
    """One pool per endpoint URL; every request of a client goes through here.

    Pools are created on first use (construction does no I/O), hold at most ``maxsize``
    connections and make callers wait (cooperatively, first come first served) for a free
    one. Streams get a connection each, never pooled. With ``tls``, the TLS context is built
    here, once (TLSError at once for files that cannot be loaded); without, on the first
    ``https`` member, from ``TLS()``. ``stream_idle`` is kept for compatibility (streams
    have no pool).
    """

    def __init__(
        self,
        *,
        maxsize: int = 64,
        stream_idle: int = 64,
        tls: TLS | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise InvalidArgument(f"maxsize must be an int >= 1, got {maxsize!r}")
        self.maxsize = maxsize
        self.stream_idle = stream_idle
        self.tls = tls
        self._ssl_context = make_ssl_context(tls) if tls is not None else None
        self.headers: dict[str, str] = {**_JSON_HEADERS, **(extra_headers or {})}
        self._members: dict[str, MemberPool] = {}
        self._pools: dict[str, HTTPConnectionPool] = {}  # the members' idle connections
        self._endpoints: dict[str, tuple[str, str, int]] = {}
        self._closed = False

    def __repr__(self) -> str:
        tls = self.tls is not None
        return f"<Transport pools={len(self._members)} maxsize={self.maxsize} tls={tls}>"

    def ssl_context(self) -> _stdlib_ssl.SSLContext:
        """The client's gevent.ssl context (built from ``tls``, or defaults, on first use);
        shared by the pools, the streams and the WebSockets."""
        if self._ssl_context is None:
            self._ssl_context = make_ssl_context(self.tls or TLS())
        return self._ssl_context

    @property
    def server_hostname(self) -> str | None:
        """The host name checked against members' certificates (None: each member's host)."""
        return self.tls.server_hostname if self.tls is not None else None

    def endpoint(self, url: str) -> tuple[str, str, int]:
        """(scheme, host, port) of ``url`` (parsed once). InvalidArgument for a bad URL."""
        parts = self._endpoints.get(url)
        if parts is None:
            parts = self._endpoints[url] = parse_endpoint(url)
        return parts

    def _member(self, url: str) -> MemberPool:
        member = self._members.get(url)
        if member is None:
            scheme = self.endpoint(url)[0]
            member = MemberPool(
                url,
                self.maxsize,
                self.headers,
                ssl_context=self.ssl_context() if scheme == "https" else None,
                server_hostname=self.server_hostname,
            )
            self._members[url] = member
            self._pools[url] = member.connections
        return member

    def pool(self, url: str) -> HTTPConnectionPool:
        """The container of idle unary connections to ``url`` (created on first use)."""
        return self._member(url).connections

    def pool_usage(self, url: str) -> tuple[int, int]:
        """(connections in use, maxsize) of the unary pool for ``url``; (0, maxsize) if none."""
        member = self._members.get(url)
        if member is None:
            return 0, self.maxsize
        return member.usage()

    def request(
        self,
        url: str,
        method: str,
        path: str,
        body: bytes | None,
        *,
        connect_timeout: float,
        read_timeout: float,
        pool_timeout: float | None = None,
        deadline: float | None = None,
        headers: Mapping[str, str] | None = None,
        what: str = "",
        abandon: Callable[[], bool] | None = None,
        drain: bool = False,
    ) -> RawResponse:
        """Send one request and read the whole answer.

        With ``deadline`` (a ``time.monotonic()`` value), the wait for a pooled connection
        lasts until the deadline at most (PoolTimeout), and the connect and read timeouts are
        cut, after that wait, to what is left of it: the wait counts against the one
        deadline. Without it, the wait is bounded by ``pool_timeout`` (default
        ``read_timeout``). Every socket read is bounded by ``read_timeout`` (a member that
        stops sending raises ResponseTimeout; one that keeps trickling bytes is not cut off).
        ``abandon()``, asked once a connection is free, True means the member was benched
        meanwhile: MemberBenched is raised and nothing is sent. ``drain``: a read-only txn
        whose answer is abandoned is read to its end in the background rather than cut off
        (see :meth:`MemberPool.exchange`).

        Returns the status and body for any HTTP answer (errors included); raises only the
        translated transport errors listed in :mod:`geetcd.transport.errors`, and
        InvalidArgument, before anything is sent, for a header or path that could split the
        request (CR, LF, control characters).
        """
        if self._closed:
            raise ConnectionFailed("client is closed", member=url)
        member = self._members.get(url) or self._member(url)
        gate = member.gate
        try:
            request = request_bytes(
                method, path, member.head.for_headers(headers or self.headers), body
            )
        except UnsafeRequest as exc:
            raise InvalidArgument(f"cannot send {what or path}: {exc}") from exc
        if deadline is not None:
            waited = deadline - _monotonic()
        else:
            waited = read_timeout if pool_timeout is None else pool_timeout
        if waited <= 0 or not gate.acquire(waited):
            raise PoolTimeout(
                f"no free connection to {url} for {what or path} within {max(0, waited):.3f} s",
                member=url,
            )
        if deadline is not None or abandon is not None:
            try:
                if abandon is not None and abandon():
                    raise MemberBenched(
                        f"{url} was benched while {what or path} waited for a connection",
                        member=url,
                    )
                if deadline is not None:
                    left = deadline - _monotonic()
                    if left <= 0:
                        raise PoolTimeout(
                            f"no free connection to {url} for {what or path} before the deadline",
                            member=url,
                        )
                    read_timeout = min(read_timeout, left)
                    connect_timeout = min(connect_timeout, left)
            except EtcdError:
                gate.release()
                raise
        try:
            status, data, answer_headers = member.exchange(
                request,
                method,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                what=what or path,
                drain=drain,
            )
        except EtcdError:
            raise
        except (HTTPError, OSError, HTTPException, ValueError) as exc:
            raise translate(exc, url, what or path) from exc
        finally:
            gate.release()
        return RawResponse(status, data, answer_headers)

    def open_stream(
        self,
        url: str,
        path: str,
        body: bytes | None,
        *,
        connect_timeout: float,
        first_byte_timeout: float,
        headers: Mapping[str, str] | None = None,
        method: str = "POST",
    ) -> Stream:
        """Send a streaming request (``method``, POST by default) on a new connection; return
        once the status line and headers arrived.

        The connect (and TLS handshake) is bounded by ``connect_timeout``, the wait for the
        answer's head by ``first_byte_timeout``. After the headers, reads have no timeout:
        the stream owner decides liveness (a hung member sends nothing and resets nothing)
        and aborts the stream itself.
        """
        if self._closed:
            raise ConnectionFailed("client is closed", member=url)
        scheme, host, port = self.endpoint(url)
        conn: HTTPConnection
        if scheme == "https":
            context = self.ssl_context()
            conn = CooperativeHTTPSConnection(
                host, port, ssl_context=context, server_hostname=self.server_hostname
            )
        else:
            context = None
            conn = CooperativeHTTPConnection(host, port)
        timer = gevent.Timeout(connect_timeout + first_byte_timeout + 0.25)
        timer.start()
        try:
            sock = conn.sock = dial(
                url,
                host,
                port,
                timeout=connect_timeout,
                ssl_context=context,
                server_hostname=self.server_hostname,
                what=path,
            )
            conn.timeout = first_byte_timeout  # the write and the wait for the answer's head
            conn.request(
                method,
                path,
                body=body,
                headers=headers or self.headers,
                preload_content=False,
                decode_content=False,
            )
            response = conn.getresponse()
        except gevent.Timeout as exc:
            conn.close()
            if exc is not timer:
                raise
            raise ResponseTimeout(f"stream {path} to {url}: no answer in time", member=url) from exc
        except EtcdError:
            conn.close()
            raise
        except (HTTPError, OSError, HTTPException, ValueError) as exc:
            conn.close()
            raise translate(exc, url, path) from exc
        finally:
            timer.close()
        sock.settimeout(None)  # from now on only the stream owner's liveness logic bounds reads
        return Stream(url, response, conn, sock)

    def open_websocket(
        self,
        url: str,
        path: str,
        *,
        connect_timeout: float,
        handshake_timeout: float,
    ) -> WebSocket:
        """Open a cooperative WebSocket to ``path`` on ``url`` with this transport's TLS
        context (see :func:`geetcd.transport.websocket.open_websocket` for the errors)."""
        if self._closed:
            raise ConnectionFailed("client is closed", member=url)
        return open_websocket(
            self,
            url,
            path,
            connect_timeout=connect_timeout,
            handshake_timeout=handshake_timeout,
        )

    def forget(self, url: str) -> None:
        """Close and drop the pool of an endpoint that left the cluster. Never raises."""
        member = self._members.pop(url, None)
        self._pools.pop(url, None)
        self._endpoints.pop(url, None)
        if member is not None:
            member.close()

    def close(self) -> None:
        """Close every pool; later requests raise ConnectionFailed. Idempotent."""
        self._closed = True
        for url in list(self._members):
            self.forget(url)
