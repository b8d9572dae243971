"""dial(): the one function that creates client sockets (pooled HTTP/1.1, streams,
WebSockets, gRPC).

Each socket is a ``gevent.socket`` (cooperative whether or not the program was monkey
patched), has ``TCP_NODELAY`` set (a request goes out in one write; without it a small
write waits for the previous segment's delayed ACK), is wrapped with the caller's
``gevent.ssl`` context for ``https`` members, and is registered for fork severing
(:mod:`geetcd.transport.fork`) from the moment it exists.
"""

from __future__ import annotations

import socket as _stdlib_socket
import ssl as _stdlib_ssl
from typing import Any

import gevent.socket

from geetcd.errors import ConnectionFailed
from geetcd.transport.errors import translate
from geetcd.transport.fork import track_socket

__all__ = ["dial"]


def dial(
    url: str,
    host: str,
    port: int,
    *,
    timeout: float | None,
    ssl_context: _stdlib_ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    handshake_timeout: float | None = None,
    what: str = "connect",
) -> Any:
    """A connected (and, with ``ssl_context``, TLS-handshaken) socket to ``host:port``.

    ``timeout`` bounds the TCP connect, ``handshake_timeout`` (default: ``timeout``) the TLS
    handshake; the socket comes back with the timeout of the last step still set. The host
    name checked against the server's certificate is ``server_hostname`` or ``host``.
    ``url`` and ``what`` name the member and the call in errors.

    Raises ConnectionFailed when no connection could be made (refused, unreachable, DNS,
    connect timeout: nothing was sent), and the :func:`~geetcd.transport.errors.translate`
    error of a failed handshake (TLSError; ResponseTimeout or ConnectionLost when the peer
    went silent or away). On failure no socket is left open.
    """
    try:
        raw = gevent.socket.create_connection((host, port), timeout)
    except OSError as exc:  # refused, unreachable, gaierror, TimeoutError
        raise ConnectionFailed(f"cannot connect to {url} for {what}: {exc}", member=url) from exc
    track_socket(raw)
    try:
        raw.setsockopt(_stdlib_socket.IPPROTO_TCP, _stdlib_socket.TCP_NODELAY, 1)
        if ssl_context is None:
            return raw
        raw.settimeout(timeout if handshake_timeout is None else handshake_timeout)
        try:
            sock = ssl_context.wrap_socket(raw, server_hostname=server_hostname or host)
        except (OSError, ValueError) as exc:  # ssl.SSLError, CertificateError included
            raise translate(exc, url, what) from exc
        track_socket(sock)
        return sock
    except BaseException:
        raw.close()
        raise
