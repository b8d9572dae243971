"""The unary connections to one member: bounded, FIFO-fair, cooperative.

A :class:`MemberPool` is a :class:`~geetcd.transport.gate.FairGate` of ``maxsize`` slots in
front of an urllib3 ``HTTPConnectionPool`` (``HTTPSConnectionPool`` for ``https``) used as
the container of idle connections: its public ``pool`` queue (a gevent ``LifoQueue``,
pre-filled with ``maxsize`` empty slots) and ``close()``. The transport, not urllib3,
hands connections out and takes them back, through that queue, and opens their sockets
with :func:`~geetcd.transport.dial.dial`; :mod:`geetcd.http1` writes each request and reads
its answer. No private urllib3 API is used.

* **Bounded and fair.** A caller first takes a gate slot (waiters served in arrival order),
  so a connection (or an empty slot) is always free when it reaches the queue.
* **Most recently used first**, so a burst's extra connections go idle at the bottom.
* **Dead idle connections are closed.** A connection whose peer closed it while idle (a
  member restarted) is never written to: it is closed and reopened; and once one such
  connection was met, or a call failed, every idle connection whose peer closed it is
  closed too, instead of keeping its socket in CLOSE-WAIT for the pool's life.
* After a failure, or an answer that leaves the connection unusable, the connection is
  closed, never reused.
"""

from __future__ import annotations

import contextlib
import logging
import ssl as _stdlib_ssl
from collections.abc import Mapping
from http.client import HTTPException

import gevent
import gevent.queue
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ProtocolError

from geetcd.errors import ConnectionFailed, MemberSilent, ResponseTimeout
from geetcd.http1 import RequestHead, read_response
from geetcd.transport.connection import CooperativeHTTPConnection, CooperativeHTTPSConnection
from geetcd.transport.dial import dial
from geetcd.transport.endpoint import parse_endpoint
from geetcd.transport.errors import pending_tls_alert
from geetcd.transport.gate import FairGate

__all__ = ["MemberPool", "close_dropped_idle"]

log = logging.getLogger(__name__)

DRAIN_TIMEOUT = 30.0
"""Longest wait for the answer of an abandoned read-only txn (see MemberPool.exchange)."""


class _Pool(HTTPConnectionPool):
    ConnectionCls = CooperativeHTTPConnection
    QueueCls = gevent.queue.LifoQueue  # type: ignore[assignment]  # cooperative queue


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = CooperativeHTTPSConnection
    QueueCls = gevent.queue.LifoQueue  # type: ignore[assignment]  # cooperative queue


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
        if getattr(conn, "sock", None) is None:
            continue
        try:
            dropped = not conn.is_connected
        except (OSError, ValueError):
            dropped = True
        if dropped:
            conn.close()
            closed += 1
    return closed


class MemberPool:
    """The unary connections to the member at ``url`` (see the module docstring)."""

    __slots__ = (
        "connections",
        "draining",
        "gate",
        "head",
        "host",
        "maxsize",
        "port",
        "server_hostname",
        "ssl_context",
        "url",
    )

    def __init__(
        self,
        url: str,
        maxsize: int,
        headers: Mapping[str, str],
        *,
        ssl_context: _stdlib_ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        scheme, host, port = parse_endpoint(url)
        self.url = url
        self.host = host
        self.port = port
        self.maxsize = maxsize
        self.ssl_context = ssl_context if scheme == "https" else None
        self.server_hostname = server_hostname
        self.connections: HTTPConnectionPool
        if self.ssl_context is not None:
            verify = self.ssl_context.verify_mode != _stdlib_ssl.CERT_NONE
            self.connections = _TLSPool(
                host,
                port,
                maxsize=maxsize,
                block=True,
                retries=False,
                ssl_context=self.ssl_context,
                server_hostname=server_hostname,
                assert_hostname=server_hostname if verify else False,
            )
        else:
            self.connections = _Pool(host, port, maxsize=maxsize, block=True, retries=False)
        self.gate = FairGate(maxsize)
        self.head = RequestHead(host, port, 443 if scheme == "https" else 80, headers)
        self.draining: set[HTTPConnection] = set()
        """Connections of abandoned read-only txns whose answers are still read (see
        :meth:`exchange`); outside the pool, closed by :meth:`close`."""

    def __repr__(self) -> str:
        in_use, maxsize = self.usage()
        return f"<MemberPool {self.url} in_use={in_use}/{maxsize} waiting={self.gate.waiting}>"

    def usage(self) -> tuple[int, int]:
        """(connections in use, maxsize)."""
        queue = self.connections.pool
        if queue is None:
            return 0, self.maxsize
        return self.maxsize - queue.qsize(), self.maxsize

    def _checkout(self) -> HTTPConnection:
        """A connection for one call; the caller holds a gate slot, so the queue has one.

        The most recently used idle connection, or a new one without a socket. One whose
        peer closed it is closed first (it reconnects), and the other idle ones are checked.
        """
        queue = self.connections.pool
        if queue is None:
            raise ConnectionFailed(f"the pool of {self.url} is closed", member=self.url)
        conn: HTTPConnection | None
        try:
            conn = queue.get(block=False)
        except gevent.queue.Empty:
            conn = None
        if conn is None:
            if self.ssl_context is not None:
                return CooperativeHTTPSConnection(
                    self.host,
                    self.port,
                    ssl_context=self.ssl_context,
                    server_hostname=self.server_hostname,
                )
            return CooperativeHTTPConnection(self.host, self.port)
        if conn.sock is not None and not conn.is_connected:
            log.debug("closing a connection to %s that its peer closed", self.url)
            conn.close()
            close_dropped_idle(self.connections)
        return conn

    def _checkin(self, conn: HTTPConnection) -> None:
        queue = self.connections.pool
        if queue is not None:
            try:
                queue.put(conn, block=False)
                return
            except gevent.queue.Full:
                log.warning("pool of %s is full, closing a connection", self.url)
        conn.close()

    def exchange(
        self,
        request: bytes,
        method: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        what: str,
        drain: bool = False,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        """One request on a pooled connection (the caller holds a gate slot): dial if the
        connection has no socket, write ``request`` in one ``sendall``, read the answer
        with :func:`geetcd.http1.read_response`.

        ``drain``: when the answer does not come in time (ResponseTimeout), the attempt is
        moved off a silent member (MemberSilent) or the caller leaves (its greenlet killed,
        the client closed), the connection is not closed: a greenlet reads the answer in the
        background (for up to ``DRAIN_TIMEOUT``) and closes it then.
        For read-only txns: etcd 3.5.0 to 3.5.4 panics (and the member exits) when the client
        goes away while it applies a read-only txn (etcd issue #14110, fixed in 3.5.5). The
        pool slot is freed at once; the connection waits outside the pool.

        ``connect_timeout`` bounds the connect and the TLS handshake, ``read_timeout`` the
        write and every socket read (ResponseTimeout). Raises ConnectionFailed / TLSError
        from :func:`~geetcd.transport.dial.dial`, and the socket, ``http.client`` or
        urllib3 ``ProtocolError`` exceptions of the exchange untranslated (the transport
        translates them once); a TLS alert the server sent when refusing the client
        certificate is raised in place of the failed write or read it caused.
        """
        conn: HTTPConnection | None = self._checkout()
        assert conn is not None
        reusable = False
        fresh_tls = False
        sent = False
        try:
            sock = conn.sock
            if sock is None:
                sock = conn.sock = dial(
                    self.url,
                    self.host,
                    self.port,
                    timeout=connect_timeout,
                    ssl_context=self.ssl_context,
                    server_hostname=self.server_hostname,
                    what=what,
                )
                # With TLS 1.3 the server's refusal of the client certificate arrives as
                # an alert after the client's side of the handshake completed, so it shows
                # as a failed write or read (EOF, reset); it is looked for then.
                fresh_tls = self.ssl_context is not None
            sock.settimeout(read_timeout)  # the write and every socket read from here on
            sock.sendall(request)
            sent = True
            status, data, headers, reusable = read_response(sock, method)
            return status, data, headers
        except TimeoutError as exc:
            if drain and sent:
                self._drain(conn, method)
                conn = None
            raise ResponseTimeout(
                f"no answer from {self.url} to {what} in time", member=self.url
            ) from exc
        except MemberSilent:
            if drain and sent:
                self._drain(conn, method)
                conn = None
            raise
        except (OSError, HTTPException, ProtocolError) as exc:
            alert = pending_tls_alert(conn.sock) if fresh_tls else None
            if alert is not None:
                raise alert from exc
            close_dropped_idle(self.connections)
            raise
        except BaseException:
            # The caller left (its greenlet killed, client.close(), its own gevent.Timeout):
            # a read-only txn is still read to its end, as above.
            if drain and sent and conn is not None:
                self._drain(conn, method)
                conn = None
            raise
        finally:
            if conn is None:
                self._checkin_slot()  # the connection is draining, outside the pool
            else:
                if not reusable:
                    conn.close()
                self._checkin(conn)

    def _checkin_slot(self) -> None:
        """Give the pool back a connection slot (an empty one: the next call dials)."""
        queue = self.connections.pool
        if queue is not None:
            with contextlib.suppress(gevent.queue.Full):
                queue.put(None, block=False)

    def _drain(self, conn: HTTPConnection, method: str) -> None:
        """Read the answer of ``conn``'s request in a greenlet of its own, then close it."""
        self.draining.add(conn)
        gevent.spawn(self._drain_answer, conn, method)

    def _drain_answer(self, conn: HTTPConnection, method: str) -> None:
        try:
            sock = conn.sock
            if sock is not None:
                sock.settimeout(DRAIN_TIMEOUT)
                read_response(sock, method)
        except (OSError, HTTPException, ProtocolError, ValueError) as exc:
            log.debug("draining an abandoned answer from %s ended: %s", self.url, exc)
        finally:
            self.draining.discard(conn)
            conn.close()

    def close(self) -> None:
        """Close every idle connection; later calls raise ConnectionFailed. Never raises.

        Connections still draining the answer of an abandoned read-only txn are left to their
        greenlets, which close each one once its answer came (within ``DRAIN_TIMEOUT``): cut
        now, they could crash an etcd 3.5.0-3.5.4 member (see :meth:`exchange`)."""
        self.connections.close()
