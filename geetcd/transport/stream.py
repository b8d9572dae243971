"""Stream: one open streaming HTTP/1.1 response (watch, keepalive, snapshot) on its own
connection, read with urllib3's response (chunked decoding, ``read1``)."""

from __future__ import annotations

import contextlib
import logging
import socket as _stdlib_socket
from http.client import HTTPException
from typing import Any

from urllib3.connection import HTTPConnection
from urllib3.exceptions import HTTPError
from urllib3.response import BaseHTTPResponse

from geetcd.transport.errors import translate

__all__ = ["Stream"]

log = logging.getLogger(__name__)


class Stream:
    """An open streaming response (watch, keepalive). Owned by one reader greenlet.

    ``read_chunk()`` returns the next bytes as they arrive (b"" at the end). ``abort()`` may be
    called from another greenlet: it shuts the socket down so the reader wakes with
    ConnectionLost. ``close()`` (reader side, or after abort) closes the connection and
    never hands it back to a pool, so a live stream can never be reused by another request.
    """

    __slots__ = ("_closed", "_connection", "_response", "_sock", "status", "url")

    def __init__(
        self,
        url: str,
        response: BaseHTTPResponse,
        connection: HTTPConnection | None = None,
        sock: Any = None,
    ) -> None:
        self.url = url
        self._response = response
        self._connection = connection
        if sock is None and connection is not None:
            sock = connection.sock
        self._sock = sock  # kept: http.client drops the connection's when the answer ends it
        self.status = response.status
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Stream {self.url} status={self.status} {state}>"

    def read_chunk(self, size: int = 65536) -> bytes:
        """Bytes as soon as any arrive; b"" at the clean end. Raises a geetcd error on failure."""
        try:
            return self._response.read1(size)
        except (HTTPError, OSError, ValueError, HTTPException) as exc:
            raise translate(exc, self.url, "stream read") from exc

    def read_all(self) -> bytes:
        """The whole remaining body (for error answers)."""
        try:
            return self._response.read()
        except (HTTPError, OSError, ValueError, HTTPException) as exc:
            raise translate(exc, self.url, "stream read") from exc

    def abort(self) -> None:
        """Wake a reader blocked in read_chunk() (from another greenlet). Never raises."""
        if self._sock is None:  # a response without its connection: urllib3 shuts it down
            with contextlib.suppress(RuntimeError, OSError, AttributeError, ValueError):
                self._response.shutdown()
            return
        # Raised when the socket is already closed: nothing to wake then.
        with contextlib.suppress(OSError, ValueError):
            self._sock.shutdown(_stdlib_socket.SHUT_RD)

    def close(self) -> None:
        """Close the response and its connection. Idempotent; never raises.

        The connection is never handed to a pool: a closed connection is worth nothing to
        the next stream.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self._response.close()
            if self._connection is not None:
                self._connection.close()
        except (RuntimeError, OSError, HTTPError, ValueError):
            log.debug("error closing stream to %s", self.url, exc_info=True)
