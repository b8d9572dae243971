"""The unit-test seam: a transport with the real ``Transport.request`` signature whose answers
come from a handler, recording every request. No sockets (like httpx's MockTransport)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import gevent.queue

from geetcd.errors import ConnectionLost
from geetcd.transport import RawResponse


@dataclass(frozen=True)
class Call:
    """One request as the client sent it."""

    url: str
    method: str
    path: str
    body: bytes | None
    connect_timeout: float
    read_timeout: float
    pool_timeout: float | None
    what: str
    headers: Mapping[str, str] | None = None


Handler = Callable[[Call, int], RawResponse]


class FakeStream:
    """A streaming answer fed by the test (``feed(bytes)``, ``end()``), with the interface of
    geetcd.transport.Stream. ``abort()`` wakes the reader with ConnectionLost, as a socket
    shutdown does."""

    def __init__(self, url: str, status: int = 200, body: bytes = b"") -> None:
        self.url = url
        self.status = status
        self.closed = False
        self._chunks: gevent.queue.Queue[bytes | None] = gevent.queue.Queue()
        self._error_body = body

    def feed(self, data: bytes) -> None:
        self._chunks.put(data)

    def end(self) -> None:
        self._chunks.put(b"")

    def read_chunk(self, size: int = 65536) -> bytes:
        chunk = self._chunks.get()
        if chunk is None:
            raise ConnectionLost("stream aborted", member=self.url)
        return chunk

    def read_all(self) -> bytes:
        return self._error_body

    def abort(self) -> None:
        self._chunks.put(None)

    def close(self) -> None:
        self.closed = True


StreamHandler = Callable[[Call, int], FakeStream]


@dataclass
class FakeTransport:
    """Answers each request with ``handler(call, n)`` (n = 1-based call number), which returns a
    RawResponse or raises a geetcd transport error. ``headers`` stands in for the transport's
    default headers (TokenAuth builds its token headers from them)."""

    handler: Handler
    calls: list[Call] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    stream_handler: StreamHandler | None = None
    streams: list[Call] = field(default_factory=list)

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
        if pool_timeout is None and deadline is not None:
            pool_timeout = deadline - time.monotonic()
        call = Call(
            url, method, path, body, connect_timeout, read_timeout, pool_timeout, what, headers
        )
        self.calls.append(call)
        return self.handler(call, len(self.calls))

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
    ) -> FakeStream:
        """A stream from ``stream_handler(call, n)`` (n = 1-based stream number)."""
        call = Call(url, method, path, body, connect_timeout, first_byte_timeout, None, "stream")
        self.streams.append(call)
        if self.stream_handler is None:
            raise ConnectionLost("no stream handler", member=url)
        return self.stream_handler(call, len(self.streams))

    def pool_usage(self, url: str) -> tuple[int, int]:
        """No pools here: every member looks idle to the pick policies."""
        return 0, 64

    def forget(self, url: str) -> None:
        """Nothing pooled to drop."""

    def close(self) -> None:
        """Nothing to close."""
