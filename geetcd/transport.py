"""The only module that touches sockets: one bounded urllib3 pool per member, cooperative.

Cooperative without monkey patching: connections open ``gevent.socket`` sockets (and TLS
through a ``gevent.ssl`` context), pools queue with ``gevent.queue.LifoQueue`` and
``block=True``, so a greenlet waiting for a connection or an answer never blocks the hub,
whether or not the program called ``gevent.monkey.patch_all()``.

Every urllib3/socket/ssl exception is translated here, once, into a :mod:`geetcd.errors`
class with the original chained as ``__cause__``:

* could not connect (refused, unreachable, connect timeout, DNS)  -> ConnectionFailed
* sent, then no answer within the read timeout                    -> ResponseTimeout
* sent, then the connection broke                                 -> ConnectionLost
* TLS handshake or verification failed                            -> TLSError
* no pooled connection free before the deadline                   -> PoolTimeout
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket as _stdlib_socket
import ssl as _stdlib_ssl
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from http.client import HTTPException
from typing import TYPE_CHECKING, Any, Final

import gevent
import gevent.hub
import gevent.queue
import gevent.socket
import gevent.ssl
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    EmptyPoolError,
    HTTPError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.response import BaseHTTPResponse
from urllib3.util.connection import is_connection_dropped
from urllib3.util.ssl_match_hostname import CertificateError

from geetcd.config import TLS
from geetcd.errors import (
    ConnectionFailed,
    ConnectionLost,
    EtcdError,
    InvalidArgument,
    InvalidType,
    MemberBenched,
    PoolTimeout,
    ResponseTimeout,
    TLSError,
)
from geetcd.http1 import RequestHead, UnsafeRequest, read_response, request_bytes

if TYPE_CHECKING:
    from geetcd.websocket import WebSocket

__all__ = [
    "RawResponse",
    "Stream",
    "Transport",
    "parse_endpoint",
    "sever_inherited_sockets",
    "track_socket_holder",
]

log = logging.getLogger("geetcd.transport")
_monotonic = time.monotonic

_JSON_HEADERS: Final = {
    "Content-Type": "application/json",
    "Grpc-Metadata-hasleader": "true",
    "User-Agent": "geetcd",
}


# Every connection that opened a socket here, so a forked child can cut itself off from
# them (see sever_inherited_sockets). Weak: a dropped connection leaves by itself.
_SOCKET_HOLDERS: weakref.WeakSet[Any] = weakref.WeakSet()


def track_socket_holder(holder: Any) -> None:
    """Register an object whose ``sock`` attribute is (or will be) a socket this process
    opened, so that a forked child never shares it with its parent (idempotent)."""
    _SOCKET_HOLDERS.add(holder)


def sever_inherited_sockets() -> int:
    """In a freshly forked child: replace the descriptor of every socket opened before the
    fork with the dead end of a closed socket pair, in place (``dup2``), and return how many.

    The child then never reads or writes a byte of a connection its parent still uses: a
    read sees end-of-file, a write fails, urllib3 sees the pooled connection as dropped and
    opens a new one, and streams (watches, keepalives) reconnect as after any lost
    connection. No byte is sent on the parent's connections (no TLS close_notify, no FIN:
    the parent's descriptors stay open). Only system calls are made: safe to run inside
    ``os.register_at_fork(after_in_child=...)`` before gevent's hub is re-initialised.
    """
    holders = list(_SOCKET_HOLDERS)
    if not holders:
        return 0
    live, peer = _stdlib_socket.socketpair()
    peer.close()
    severed = 0
    try:
        for holder in holders:
            sock = getattr(holder, "sock", None)
            fd = sock.fileno() if sock is not None else -1
            if fd >= 0:
                os.dup2(live.fileno(), fd)
                severed += 1
    finally:
        live.close()
    return severed


os.register_at_fork(after_in_child=sever_inherited_sockets)


def _cooperative_socket(conn: HTTPConnection) -> _stdlib_socket.socket:
    """Open the connection's socket with gevent, mapping errors as urllib3 does."""
    track_socket_holder(conn)
    try:
        sock = gevent.socket.create_connection(
            (conn._dns_host, conn.port),
            conn.timeout,
            source_address=conn.source_address,
        )
    except gevent.socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    except TimeoutError as exc:
        raise ConnectTimeoutError(
            conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})"
        ) from exc
    except OSError as exc:
        raise NewConnectionError(conn, f"Failed to establish a new connection: {exc}") from exc
    for option in conn.socket_options or ():
        sock.setsockopt(*option)
    return sock


class CooperativeHTTPConnection(HTTPConnection):
    """An urllib3 connection whose socket is a gevent socket (cooperative when unpatched)."""

    ever_connected = False
    """True once a socket was opened (a connection without a socket then was closed)."""

    def _new_conn(self) -> _stdlib_socket.socket:
        self.ever_connected = True
        return _cooperative_socket(self)


class CooperativeHTTPSConnection(HTTPSConnection):
    """The TLS twin of CooperativeHTTPConnection (TLS itself goes through a gevent.ssl context)."""

    ever_connected = False

    def _new_conn(self) -> _stdlib_socket.socket:
        self.ever_connected = True
        return _cooperative_socket(self)


def close_dropped_idle(pool: HTTPConnectionPool) -> int:
    """Close every idle connection of ``pool`` whose peer has closed it; the count closed.

    The pool hands out its most recently used connections first, so after a member
    restarted, the connections below the ones in use would keep their dead sockets (in
    CLOSE-WAIT, one file descriptor each) for as long as the pool lives. Called when a
    dropped connection is met; a closed connection stays in the pool and reconnects when
    next used. Never raises.
    """
    closed = 0
    idle = getattr(pool.pool, "queue", None)
    for conn in list(idle or ()):
        sock = getattr(conn, "sock", None)
        if sock is None:
            continue
        try:
            dropped = is_connection_dropped(conn)
        except (OSError, ValueError):
            dropped = True
        if dropped:
            conn.close()
            closed += 1
    return closed


class _Pool(HTTPConnectionPool):
    ConnectionCls = CooperativeHTTPConnection
    QueueCls = gevent.queue.LifoQueue  # type: ignore[assignment]  # cooperative queue


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = CooperativeHTTPSConnection
    QueueCls = gevent.queue.LifoQueue  # type: ignore[assignment]  # cooperative queue


def parse_endpoint(url: str) -> tuple[str, str, int]:
    """Split ``http(s)://host:port`` into (scheme, host, port); InvalidArgument otherwise.

    ``host:port`` without a scheme means ``http://host:port`` (as etcdctl accepts it); a
    missing port means 2379.
    """
    if not isinstance(url, str):
        raise InvalidType(f"endpoint must be a str URL, got {type(url).__name__}")
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parsed = urllib3.util.parse_url(text)
    except urllib3.exceptions.LocationParseError as exc:
        raise InvalidArgument(f"endpoint is not a URL: {url!r}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidArgument(f"endpoint must look like http://host:port, got {url!r}")
    if parsed.path not in (None, "", "/"):
        raise InvalidArgument(f"endpoint must not have a path, got {url!r}")
    port = parsed.port or 2379
    host = parsed.host.strip("[]")
    return parsed.scheme, host, port


def make_ssl_context(tls: TLS) -> _stdlib_ssl.SSLContext:
    """A gevent.ssl client context (TLS >= 1.2) from a TLS value object.

    Verification is on unless ``tls.verify`` is False: ``tls.ca_file`` or else the system trust
    store. Raises TLSError naming the file when a CA, certificate or key cannot be loaded.
    """
    ctx = gevent.ssl.SSLContext(_stdlib_ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = _stdlib_ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = tls.verify
    ctx.verify_mode = _stdlib_ssl.CERT_REQUIRED if tls.verify else _stdlib_ssl.CERT_NONE
    source = tls.ca_file or "the system trust store"
    try:
        if tls.verify and tls.ca_file:
            ctx.load_verify_locations(cafile=tls.ca_file)
        elif tls.verify:
            ctx.load_default_certs()
        if tls.cert_file:
            source = f"{tls.cert_file} / {tls.key_file or '(key in the same file)'}"
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise TLSError(f"cannot load TLS material from {source}: {exc}") from exc
    return ctx


class FairGate:
    """A FIFO counting gate: at most ``size`` holders, waiters served strictly in arrival order.

    urllib3's pool queue (and gevent's Semaphore) let a greenlet that just released a slot take
    it again before the greenlets already waiting, so under fan-out a few greenlets starve (a
    p99 of seconds at 512 greenlets on 64 connections). Here a released slot is handed to the
    oldest waiter directly, so nobody can barge in.
    """

    __slots__ = ("_free", "_run_callback", "_waiters")

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: deque[gevent.hub.Waiter[Any]] = deque()
        self._run_callback = gevent.get_hub().loop.run_callback

    def acquire(self, timeout: float | None) -> bool:
        """Take a slot, waiting at most ``timeout`` seconds; False if none came in time."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        waiter: gevent.hub.Waiter[Any] = gevent.hub.Waiter()
        self._waiters.append(waiter)
        timer = gevent.Timeout.start_new(timeout) if timeout is not None else None
        granted = False
        try:
            waiter.get()
            granted = True
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
        finally:
            if timer is not None:
                timer.close()
            if not granted:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                else:  # a slot was handed to us as we timed out or were killed: pass it on
                    self.release()
        return granted

    def release(self) -> None:
        """Give the slot to the oldest waiter, or back to the gate. Never raises."""
        if self._waiters:
            self._run_callback(self._waiters.popleft().switch, None)
        else:
            self._free += 1

    @property
    def waiting(self) -> int:
        """Greenlets waiting for a slot."""
        return len(self._waiters)


class RawResponse:
    """Status, body bytes and headers (case-insensitive when filled by Transport) of one call."""

    __slots__ = ("data", "headers", "status")

    def __init__(self, status: int, data: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.data = data
        self.headers: Mapping[str, str] = headers if headers is not None else {}


def _pending_tls_alert(conn: HTTPConnection) -> _stdlib_ssl.SSLError | None:
    """The TLS alert waiting on a connection whose write or read just failed, if any.

    Reads once, for at most 0.25 s: an alert the server sent before closing is already in
    the socket's receive queue (Linux keeps queued data readable after a reset). Returns
    the ssl error that read raised when it names an alert; None otherwise. Never raises.
    """
    sock = conn.sock
    if sock is None:
        return None
    try:
        sock.settimeout(0.25)
        sock.recv(1)
    except _stdlib_ssl.SSLError as exc:
        text = f"{getattr(exc, 'reason', '')} {exc}".upper()
        return exc if "ALERT" in text else None
    except (OSError, ValueError):
        return None
    return None


def translate(exc: BaseException, url: str, what: str) -> EtcdError:
    """Map one urllib3/socket/ssl exception to a geetcd error (returned, never raised).

    An ssl error is looked for wherever urllib3 wrapped it (SSLError, ProtocolError,
    NewConnectionError, ``__cause__``/``__context__``) and becomes a TLSError naming the member
    and the reason: server certificate not trusted, host name mismatch, client certificate
    refused by the server, or no TLS on the other side. A TLS connection that merely closed
    (EOF, reset) is a member failure (ConnectionLost, transient), not a TLSError.
    """
    if isinstance(exc, ReadTimeoutError):
        return ResponseTimeout(f"no answer from {url} to {what} in time", member=url)
    if isinstance(exc, EmptyPoolError):
        message = f"no free connection to {url} for {what} before the deadline"
        return PoolTimeout(message, member=url)
    chain: list[BaseException] = [exc]
    for err in chain:  # breadth-first over the wrapped errors (the list grows while iterated)
        if isinstance(err, (_stdlib_ssl.SSLError, CertificateError)):
            break
        links = (*err.args, err.__cause__, err.__context__)
        chain.extend(e for e in links if isinstance(e, BaseException) and e not in chain)
        if len(chain) > 8:
            break
    else:
        err = None
    if isinstance(err, (_stdlib_ssl.SSLEOFError, _stdlib_ssl.SSLZeroReturnError)):
        return ConnectionLost(f"TLS connection to {url} closed during {what}: {err}", member=url)
    if isinstance(err, (_stdlib_ssl.SSLError, CertificateError)):
        text = f"{getattr(err, 'reason', '')} {err}".upper()
        if "MISMATCH" in text or "DOESN'T MATCH" in text:
            why = "server certificate does not match the host name (see TLS.server_hostname)"
        elif "VERIFY_FAILED" in text and ("ISSUER" in text or "SELF" in text):
            why = "server certificate signed by an unknown CA (give TLS(ca_file=...))"
        elif "VERIFY_FAILED" in text:
            why = "server certificate rejected"
        elif "ALERT" in text and ("CERTIFICATE" in text or "UNKNOWN_CA" in text):
            why = (
                "the server refused the client certificate: none was given or its CA is not "
                "the server's --trusted-ca-file (etcd --client-cert-auth needs "
                "TLS(cert_file=..., key_file=...))"
            )
        elif "WRONG_VERSION_NUMBER" in text:
            why = "the member does not speak TLS (an http:// endpoint?)"
        else:
            why = "handshake failed"
        return TLSError(f"TLS with {url} failed during {what}: {why}: {err}", member=url)
    if isinstance(exc, (NewConnectionError, ConnectTimeoutError, NameResolutionError)):
        return ConnectionFailed(f"cannot connect to {url} for {what}: {exc}", member=url)
    if isinstance(exc, (ProtocolError, HTTPError, OSError)):
        return ConnectionLost(f"connection to {url} broke during {what}: {exc}", member=url)
    return ConnectionLost(f"unexpected failure talking to {url} during {what}: {exc!r}", member=url)


class Stream:
    """An open streaming response (watch, keepalive). Owned by one reader greenlet.

    ``read_chunk()`` returns the next bytes as they arrive (b"" at the end). ``abort()`` may be
    called from another greenlet: it shuts the socket down so the reader wakes with
    ConnectionLost. ``close()`` (reader side, or after abort) closes the connection and
    never hands it back to a pool, so a live stream can never be reused by another request.
    """

    __slots__ = ("_closed", "_response", "status", "url")

    def __init__(self, url: str, response: BaseHTTPResponse) -> None:
        self.url = url
        self._response = response
        self.status = response.status
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Stream {self.url} status={self.status} {state}>"

    def read_chunk(self, size: int = 65536) -> bytes:
        """Bytes as soon as any arrive; b"" at the clean end. Raises a geetcd error on failure."""
        try:
            return self._response.read1(size)
        except (HTTPError, OSError, ValueError) as exc:
            raise translate(exc, self.url, "stream read") from exc

    def read_all(self) -> bytes:
        """The whole remaining body (for error answers)."""
        try:
            return self._response.read()
        except (HTTPError, OSError, ValueError) as exc:
            raise translate(exc, self.url, "stream read") from exc

    def abort(self) -> None:
        """Wake a reader blocked in read_chunk() (from another greenlet). Never raises."""
        # Raised when the response is already released or closed: nothing to wake then.
        with contextlib.suppress(RuntimeError, OSError, AttributeError, ValueError):
            self._response.shutdown()

    def close(self) -> None:
        """Close the response and its connection. Idempotent; never raises.

        The connection is not released to the stream pool: stream pools do not block, so no
        slot needs returning, and a closed connection is worth nothing to the next stream.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self._response.close()
        except (RuntimeError, OSError, HTTPError, ValueError):
            log.debug("error closing stream to %s", self.url, exc_info=True)


class Transport:
    """One pool per endpoint URL; every request of a client goes through here.

    Pools are created on first use (construction does no I/O), hold at most ``maxsize``
    connections and make callers wait (cooperatively) for a free one. Streams use their own
    pool per endpoint, so long-lived watches never starve unary calls of connections.
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
        self._pools: dict[str, HTTPConnectionPool] = {}
        self._gates: dict[str, FairGate] = {}
        self._heads: dict[str, RequestHead] = {}
        self._stream_pools: dict[str, HTTPConnectionPool] = {}
        self._closed = False

    def __repr__(self) -> str:
        tls = self.tls is not None
        return f"<Transport pools={len(self._pools)} maxsize={self.maxsize} tls={tls}>"

    def _new_pool(self, url: str, maxsize: int, *, block: bool = True) -> HTTPConnectionPool:
        scheme, host, port = parse_endpoint(url)
        if scheme == "https":
            tls = self.tls or TLS()
            if self._ssl_context is None:
                self._ssl_context = make_ssl_context(tls)
            return _TLSPool(
                host,
                port,
                maxsize=maxsize,
                block=block,
                retries=False,
                ssl_context=self._ssl_context,
                server_hostname=tls.server_hostname,
                assert_hostname=tls.server_hostname if tls.verify else False,
            )
        return _Pool(host, port, maxsize=maxsize, block=block, retries=False)

    def ssl_context(self) -> _stdlib_ssl.SSLContext:
        """The client's gevent.ssl context (built from ``tls``, or defaults, on first use);
        shared by the pools and the WebSocket streams (:mod:`geetcd.websocket`)."""
        if self._ssl_context is None:
            self._ssl_context = make_ssl_context(self.tls or TLS())
        return self._ssl_context

    def pool(self, url: str) -> HTTPConnectionPool:
        """The unary pool for ``url`` (created on first use)."""
        pool = self._pools.get(url)
        if pool is None:
            pool = self._pools[url] = self._new_pool(url, self.maxsize)
            self._gates[url] = FairGate(self.maxsize)
            scheme, host, port = parse_endpoint(url)
            default_port = 443 if scheme == "https" else 80
            self._heads[url] = RequestHead(host, port, default_port, self.headers)
        return pool

    def pool_usage(self, url: str) -> tuple[int, int]:
        """(connections in use, maxsize) of the unary pool for ``url``; (0, maxsize) if none."""
        pool = self._pools.get(url)
        if pool is None or pool.pool is None:
            return 0, self.maxsize
        idle_or_unopened = pool.pool.qsize()
        return self.maxsize - idle_or_unopened, self.maxsize

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
    ) -> RawResponse:
        """Send one request and read the whole answer.

        With ``deadline`` (a ``time.monotonic()`` value), the wait for a pooled connection
        lasts until the deadline at most (PoolTimeout), and the connect and read timeouts are
        cut, after that wait, to what is left of it: the wait counts against the one
        deadline. Without it, the wait is bounded by ``pool_timeout`` (default
        ``read_timeout``). Every socket read is bounded by ``read_timeout`` (a member that
        stops sending raises ResponseTimeout; one that keeps trickling bytes is not cut off).
        ``abandon()``, asked once a connection is free, True means the member was benched
        meanwhile: MemberBenched is raised and nothing is sent.

        Returns the status and body for any HTTP answer (errors included); raises only the
        translated transport errors listed in the module docstring, and InvalidArgument,
        before anything is sent, for a header or path that could split the request (CR,
        LF, control characters).
        """
        if self._closed:
            raise ConnectionFailed("client is closed", member=url)
        pool = self._pools.get(url) or self.pool(url)
        gate = self._gates[url]
        try:
            request = request_bytes(
                method, path, self._heads[url].for_headers(headers or self.headers), body
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
                    waited = left
            except EtcdError:
                gate.release()
                raise
        try:
            status, data, answer_headers = self._exchange(
                pool,
                request,
                method,
                path,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
            )
        except (HTTPError, OSError, HTTPException, _stdlib_ssl.SSLError, CertificateError) as exc:
            raise translate(exc, url, what or path) from exc
        finally:
            gate.release()
        return RawResponse(status, data, answer_headers)

    @staticmethod
    def _exchange(
        pool: HTTPConnectionPool,
        request: bytes,
        method: str,
        path: str,
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        """One request on a pooled connection: urllib3 opens (and TLS-wraps) the connection,
        :mod:`geetcd.http1` writes the request in one ``sendall`` and reads the answer.

        The FairGate in front guarantees a free connection, so the pool never waits here.
        A connection the server dropped while idle is replaced by the pool (as urlopen
        does); after any failure, or an answer that leaves the connection unusable, the
        connection is closed, never reused. A read that outlasts ``read_timeout`` raises
        ReadTimeoutError, as from urlopen.
        """
        conn: Any = pool._get_conn(timeout=max(0.001, connect_timeout))
        if conn.sock is None and conn.ever_connected:  # the pool found it dropped and closed it
            close_dropped_idle(pool)
        # A TLS connection opened by this request: with TLS 1.3 the server's refusal of the
        # client certificate arrives as an alert after the client's side of the handshake
        # completed, so it shows as a failed write or read (EOF, reset); look for it then.
        fresh_tls = conn if isinstance(conn, HTTPSConnection) and conn.sock is None else None
        reusable = False
        try:
            sock = conn.sock
            if sock is None:
                conn.timeout = connect_timeout  # the connect and the TLS handshake
                conn.connect()
                sock = conn.sock
            sock.settimeout(read_timeout)  # the write and every socket read from here on
            sock.sendall(request)
            status, data, answer_headers, reusable = read_response(sock, method)
            return status, data, answer_headers
        except TimeoutError as exc:
            raise ReadTimeoutError(pool, path, f"Read timed out ({read_timeout} s)") from exc
        except (OSError, HTTPException, ProtocolError) as exc:
            alert = _pending_tls_alert(fresh_tls) if fresh_tls is not None else None
            if alert is not None:
                raise alert from exc
            close_dropped_idle(pool)
            raise
        finally:
            if not reusable:
                conn.close()
            pool._put_conn(conn)

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
        """Send a streaming request (``method``, POST by default); return once the status line
        arrived.

        After the headers, reads have no timeout: the stream owner decides liveness (a hung
        member sends nothing and resets nothing) and aborts the stream itself.
        """
        if self._closed:
            raise ConnectionFailed("client is closed", member=url)
        pool = self._stream_pools.get(url)
        if pool is None:
            # Not blocking: every stream gets a new connection at once, however many streams
            # are open; the pool only pre-allocates ``stream_idle`` slots.
            pool = self._stream_pools[url] = self._new_pool(url, self.stream_idle, block=False)
        timeout = urllib3.Timeout(connect=connect_timeout, read=first_byte_timeout)
        timer = gevent.Timeout(connect_timeout + first_byte_timeout + 0.25)
        timer.start()
        try:
            response = pool.urlopen(
                method,
                path,
                body=body,
                headers=headers or self.headers,
                retries=False,
                redirect=False,
                assert_same_host=False,
                timeout=timeout,
                pool_timeout=connect_timeout,  # type: ignore[arg-type]  # float is fine
                preload_content=False,
                decode_content=False,
                release_conn=False,
            )
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            raise ResponseTimeout(f"stream {path} to {url}: no answer in time", member=url) from exc
        except (HTTPError, OSError, _stdlib_ssl.SSLError) as exc:
            raise translate(exc, url, path) from exc
        finally:
            timer.close()
        # From now on only the stream owner's liveness logic bounds reads.
        sock: Any = getattr(getattr(response, "connection", None), "sock", None)
        if sock is not None:
            sock.settimeout(None)
        return Stream(url, response)

    def open_websocket(
        self,
        url: str,
        path: str,
        *,
        connect_timeout: float,
        handshake_timeout: float,
    ) -> WebSocket:
        """Open a cooperative WebSocket to ``path`` on ``url`` with this transport's TLS
        context (see :func:`geetcd.websocket.open_websocket` for the errors raised)."""
        if self._closed:
            raise ConnectionFailed("client is closed", member=url)
        from geetcd.websocket import open_websocket

        return open_websocket(
            self,
            url,
            path,
            connect_timeout=connect_timeout,
            handshake_timeout=handshake_timeout,
        )

    def forget(self, url: str) -> None:
        """Close and drop the pools of an endpoint that left the cluster. Never raises."""
        for pools in (self._pools, self._stream_pools):
            pool = pools.pop(url, None)
            if pool is not None:
                pool.close()

    def close(self) -> None:
        """Close every pool; later requests raise ConnectionFailed. Idempotent."""
        self._closed = True
        for url in list(self._pools) + list(self._stream_pools):
            self.forget(url)
