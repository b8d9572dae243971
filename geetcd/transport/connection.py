"""urllib3 connection objects whose sockets come from :func:`geetcd.transport.dial.dial`.

The transport keeps urllib3's public connection classes for what they are good at: a
holder of one socket that knows whether its peer closed it (``is_connected``) and how to
close it, and, for streams, ``request()`` / ``getresponse()`` with urllib3's streaming
response (chunked decoding, ``read1``). It never lets urllib3 open a socket: ``connect()``
is overridden (a public ``http.client`` method) to dial, so even a connection used through
urllib3's own ``urlopen`` gets a cooperative, fork-severed socket.
"""

from __future__ import annotations

import ssl as _stdlib_ssl

from urllib3.connection import HTTPConnection, HTTPSConnection

from geetcd.config import TLS
from geetcd.transport.dial import dial
from geetcd.transport.tls import make_ssl_context

__all__ = ["CooperativeHTTPConnection", "CooperativeHTTPSConnection"]


def _seconds(timeout: object) -> float | None:
    """A connection's ``timeout`` as seconds (urllib3's default sentinel: no timeout)."""
    return float(timeout) if isinstance(timeout, (int, float)) else None


class CooperativeHTTPConnection(HTTPConnection):
    """An urllib3 HTTP connection whose socket is opened by ``dial()`` (a gevent socket)."""

    def connect(self) -> None:
        """Open the socket (``timeout`` bounds the connect). Raises ConnectionFailed."""
        url = f"http://{self.host}:{self.port}"
        self.sock = dial(url, self.host, self.port or 80, timeout=_seconds(self.timeout))


class CooperativeHTTPSConnection(HTTPSConnection):
    """The TLS twin of CooperativeHTTPConnection: ``dial()`` wraps the socket with the
    connection's ``ssl_context`` (a gevent.ssl context; a default one when None) and checks
    ``server_hostname`` (default: the host)."""

    def connect(self) -> None:
        """Open the socket and run the TLS handshake (``timeout`` bounds each). Raises
        ConnectionFailed, or TLSError (and the other translated errors) for the handshake."""
        if self.ssl_context is None:
            self.ssl_context = make_ssl_context(TLS())
        url = f"https://{self.host}:{self.port}"
        self.sock = dial(
            url,
            self.host,
            self.port or 443,
            timeout=_seconds(self.timeout),
            ssl_context=self.ssl_context,
            server_hostname=self.server_hostname,
        )
        self.is_verified = self.ssl_context.verify_mode == _stdlib_ssl.CERT_REQUIRED
