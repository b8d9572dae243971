"""The unary HTTP/1.1 exchange on one pooled connection: one write, a lean reader.

It opens nothing: :mod:`geetcd.transport.pool` hands it a connected socket (dialed, TLS
included; the pool also decides when an idle connection is dropped), and it writes and
reads the bytes of one call on it. It replaces the per-call work ``http.client`` would do
on that connection, which is most of a small call's client CPU:

* **One write.** ``http.client`` sends the request head and the body in two ``send``
  calls (two syscalls, two TCP segments for the server to read). :func:`request_bytes`
  builds the whole request, head and body, as one ``bytes``; it goes out in one
  ``sendall``. The constant part of the head (Host, Content-Type, ...) is built once per
  endpoint and header set by :class:`RequestHead`.
* **A lean response reader.** ``http.client`` parses headers through the ``email``
  package and wraps the answer in two response objects. :func:`read_response` reads the
  status line and headers with bytes operations and the body by ``Content-Length`` or
  chunked framing, exactly as RFC 9112 frames them.

Guarantees:

* Header names and values, and the request target, are checked for CR, LF and other
  control characters before anything is sent (:class:`UnsafeRequest`): a key or a token
  can never split a request.
* A connection is reported reusable only when the answer's framing was complete and
  exact (``Content-Length`` or chunked, nothing left over), HTTP/1.1 and without
  ``Connection: close``; anything else is closed by the caller, never reused.
* Failures are the exceptions ``http.client`` raises for the same cases, so the
  transport's one translation applies unchanged: the peer closing before a status line is
  ``RemoteDisconnected`` (a ``ConnectionResetError``), a malformed or truncated answer is
  urllib3's ``ProtocolError``, a socket read outlasting the socket's timeout is
  ``TimeoutError``.
* Bounded: the status line and headers together may not exceed :data:`MAX_HEAD` bytes
  (64 KiB); the body is read in full, as before (its size is the server's to bound).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from http.client import RemoteDisconnected
from typing import Any, Final

from urllib3.exceptions import ProtocolError

__all__ = [
    "MAX_HEAD",
    "RequestHead",
    "ResponseHeaders",
    "UnsafeRequest",
    "read_response",
    "request_bytes",
]

MAX_HEAD: Final = 65536
"""Most bytes the status line and headers of one answer may take."""

_RECV_SIZE: Final = 65536
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
_NO_BODY_STATUS: Final = frozenset({204, 304})
_UNSAFE_TARGET = re.compile(r"[\x00-\x20\x7f]")
_UNSAFE_HEADER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_HEADER_NAME = _TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class UnsafeRequest(ValueError):
    """A header or request target that would change the request's framing (CR, LF, ...)."""


class ResponseHeaders(Mapping[str, str]):
    """An answer's headers; names are case-insensitive, repeated headers are joined by ", "."""

    __slots__ = ("_by_name",)

    def __init__(self, by_lower_name: dict[str, str]) -> None:
        self._by_name = by_lower_name

    def __getitem__(self, name: str) -> str:
        return self._by_name[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:
        return self._by_name.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"ResponseHeaders({self._by_name!r})"


def _header_lines(headers: Mapping[str, str]) -> bytes:
    """``Name: value\\r\\n`` for each header, checked (InvalidHeader on a bad name or value)."""
    lines = []
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise UnsafeRequest(f"invalid header name {name!r}")
        if not isinstance(value, str) or _UNSAFE_HEADER.search(value):
            raise UnsafeRequest(f"invalid value for header {name!r}")
        lines.append(f"{name}: {value}\r\n")
    try:
        return "".join(lines).encode("latin-1")
    except UnicodeEncodeError as exc:
        raise UnsafeRequest(f"header value is not latin-1: {exc}") from exc


class RequestHead:
    """The constant part of request heads to one endpoint: Host and the transport's headers.

    ``for_headers(h)`` returns the header block for a call's header mapping: the block of
    the transport's default mapping is built once; another mapping (a call with an
    ``Authorization`` token) is built for that call, and checked like the default one
    (UnsafeRequest).
    """

    __slots__ = ("_default", "_default_headers", "_host_line")

    def __init__(self, host: str, port: int, default_port: int, headers: Mapping[str, str]):
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 literal
        authority = host if port == default_port else f"{host}:{port}"
        self._host_line = f"Host: {authority}\r\n".encode("latin-1")
        self._default_headers = headers
        self._default = self._host_line + _header_lines(headers)

    def for_headers(self, headers: Mapping[str, str]) -> bytes:
        """The Host line and ``headers``' lines (without Content-Length or the blank line)."""
        if headers is self._default_headers:
            return self._default
        return self._host_line + _header_lines(headers)


def request_bytes(method: str, path: str, header_block: bytes, body: bytes | None) -> bytes:
    """The whole request (request line, headers, Content-Length, body) as one ``bytes``.

    Raises UnsafeRequest for a request target with spaces or control characters.
    """
    if _UNSAFE_TARGET.search(path) or not path.isascii():
        raise UnsafeRequest(
            f"request target contains a space, a control or non-ASCII character: {path!r}"
        )
    if not _TOKEN.fullmatch(method):
        raise UnsafeRequest(f"invalid method {method!r}")
    if body is None:
        if method in _BODY_METHODS:
            return b"%s %s HTTP/1.1\r\n%sContent-Length: 0\r\n\r\n" % (
                method.encode("ascii"),
                path.encode("ascii"),
                header_block,
            )
        return b"%s %s HTTP/1.1\r\n%s\r\n" % (
            method.encode("ascii"),
            path.encode("ascii"),
            header_block,
        )
    return b"%s %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s" % (
        method.encode("ascii"),
        path.encode("ascii"),
        header_block,
        len(body),
        body,
    )


class _Reader:
    """Buffered reads from one socket for one answer (the socket's timeout bounds each)."""

    __slots__ = ("buffer", "position", "sock")

    def __init__(self, sock: Any, first: bytes) -> None:
        self.sock = sock
        self.buffer = first
        self.position = 0

    def _more(self) -> None:
        data = self.sock.recv(_RECV_SIZE)
        if not data:
            raise ProtocolError("connection closed in the middle of the answer")
        self.buffer = self.buffer[self.position :] + data
        self.position = 0

    def line(self) -> bytes:
        """The next CRLF-terminated line, without the CRLF (bounded by MAX_HEAD)."""
        while True:
            end = self.buffer.find(b"\r\n", self.position)
            if end >= 0:
                line = self.buffer[self.position : end]
                self.position = end + 2
                return line
            if len(self.buffer) - self.position > MAX_HEAD:
                raise ProtocolError("chunk size line too long")
            self._more()

    def exactly(self, size: int) -> bytes:
        """The next ``size`` bytes. What is not buffered yet is received straight into one
        buffer of the right size, so a large body is copied a fixed number of times."""
        start = self.position
        have = len(self.buffer) - start
        if have >= size:
            self.position = start + size
            return self.buffer[start : start + size]
        body = bytearray(size)
        body[:have] = self.buffer[start:]
        self.buffer, self.position = b"", 0
        view = memoryview(body)
        filled = have
        while filled < size:
            received = self.sock.recv_into(view[filled:])
            if not received:
                raise ProtocolError("connection closed in the middle of the answer")
            filled += received
        return bytes(body)

    def rest(self) -> bytes:
        """Everything until the peer closes the connection."""
        parts = [self.buffer[self.position :]]
        while data := self.sock.recv(_RECV_SIZE):
            parts.append(data)
        self.buffer, self.position = b"", 0
        return b"".join(parts)

    @property
    def leftover(self) -> int:
        return len(self.buffer) - self.position


def _read_head(sock: Any) -> tuple[bytes, bytes]:
    """(status line and headers, the bytes after them) of the next answer."""
    data = sock.recv(_RECV_SIZE)
    if not data:
        raise RemoteDisconnected("Remote end closed connection without response")
    while True:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            return data[:end], data[end + 4 :]
        if len(data) > MAX_HEAD:
            raise ProtocolError(f"answer headers longer than {MAX_HEAD} bytes")
        more = sock.recv(_RECV_SIZE)
        if not more:
            raise ProtocolError("connection closed in the middle of the answer headers")
        data += more


def _parse_head(head: bytes) -> tuple[int, bool, dict[str, str]]:
    """(status, HTTP/1.1?, headers by lower-cased name) of a status line and headers."""
    lines = head.split(b"\r\n")
    status_line = lines[0]
    version, _, rest = status_line.partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise ProtocolError(f"malformed status line {status_line[:80]!r}")
    headers: dict[str, str] = {}
    name = ""
    for raw in lines[1:]:
        if raw[:1] in (b" ", b"\t"):  # an obsolete folded continuation of the last header
            if not name:
                raise ProtocolError("answer headers start with a continuation line")
            headers[name] += " " + raw.strip().decode("latin-1")
            continue
        key, colon, value = raw.partition(b":")
        if not colon or not key or key != key.strip():
            raise ProtocolError(f"malformed answer header {raw[:80]!r}")
        name = key.decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        headers[name] = f"{headers[name]}, {text}" if name in headers else text
    return int(code), version == b"HTTP/1.1", headers


def _chunked_body(reader: _Reader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = reader.line()
        size_text = size_line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"malformed chunk size {size_line[:40]!r}") from None
        if size < 0:
            raise ProtocolError(f"malformed chunk size {size_line[:40]!r}")
        if size == 0:
            while reader.line():  # trailers, up to the blank line
                pass
            return b"".join(parts)
        parts.append(reader.exactly(size))
        if reader.exactly(2) != b"\r\n":
            raise ProtocolError("chunk not followed by CRLF")


def read_response(sock: Any, method: str) -> tuple[int, bytes, ResponseHeaders, bool]:
    """Read one whole answer from ``sock``: (status, body, headers, reusable).

    Interim 1xx answers (other than 101) are skipped. ``reusable`` is True only when the
    connection may carry the next request (see the module docstring).
    """
    head, after = _read_head(sock)
    status, http11, headers = _parse_head(head)
    while 100 <= status < 200 and status != 101:
        reader_sock = _Prefixed(sock, after)
        head, after = _read_head(reader_sock)
        status, http11, headers = _parse_head(head)
    reader = _Reader(sock, after)
    connection = headers.get("connection", "").lower()
    reusable = http11 and "close" not in connection
    if method == "HEAD" or status in _NO_BODY_STATUS or 100 <= status < 200:
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = _chunked_body(reader)
    elif (length_text := headers.get("content-length")) is not None:
        try:
            length = int(length_text)
        except ValueError:
            raise ProtocolError(f"malformed Content-Length {length_text[:40]!r}") from None
        if length < 0:
            raise ProtocolError(f"malformed Content-Length {length_text[:40]!r}")
        body = reader.exactly(length)
    else:  # no framing: the body lasts until the server closes the connection
        body = reader.rest()
        reusable = False
    if reader.leftover:
        reusable = False  # bytes nobody asked for: never reuse such a connection
    return status, body, ResponseHeaders(headers), reusable


class _Prefixed:
    """A socket whose next ``recv`` first returns bytes already read (after a 1xx answer)."""

    __slots__ = ("_prefix", "_sock")

    def __init__(self, sock: Any, prefix: bytes) -> None:
        self._sock = sock
        self._prefix = prefix

    def recv(self, size: int) -> bytes:
        if self._prefix:
            prefix, self._prefix = self._prefix, b""
            return prefix
        data: bytes = self._sock.recv(size)
        return data
