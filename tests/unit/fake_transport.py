"""The unit-test seam: a transport with the real ``Transport.request`` signature whose answers
come from a handler, recording every request. No sockets (like httpx's MockTransport)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

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


@dataclass
class FakeTransport:
    """Answers each request with ``handler(call, n)`` (n = 1-based call number), which returns a
    RawResponse or raises a geetcd transport error. ``headers`` stands in for the transport's
    default headers (TokenAuth builds its token headers from them)."""

    handler: Handler
    calls: list[Call] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

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

    def pool_usage(self, url: str) -> tuple[int, int]:
        """No pools here: every member looks idle to the pick policies."""
        return 0, 64

    def forget(self, url: str) -> None:
        """Nothing pooled to drop."""

    def close(self) -> None:
        """Nothing to close."""
