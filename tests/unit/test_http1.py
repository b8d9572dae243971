"""geetcd.http1: the one-write request and the lean answer reader, on scripted sockets.

Every answer is also fed split at every byte boundary, so framing never depends on how
the kernel happens to cut the stream.
"""

from __future__ import annotations

from http.client import RemoteDisconnected

import pytest
from urllib3.exceptions import ProtocolError

from geetcd.http1 import (
    MAX_HEAD,
    RequestHead,
    UnsafeRequest,
    read_response,
    request_bytes,
)


class ScriptedSocket:
    """recv() hands out the scripted pieces in order, then b"" (the peer closed)."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = list(pieces)
        self.recv_calls = 0

    def recv(self, size: int) -> bytes:
        self.recv_calls += 1
        if not self.pieces:
            return b""
        piece = self.pieces.pop(0)
        if isinstance(piece, BaseException):
            raise piece
        if len(piece) > size:
            self.pieces.insert(0, piece[size:])
            piece = piece[:size]
        return piece

    def recv_into(self, view: memoryview) -> int:
        data = self.recv(len(view))
        view[: len(data)] = data
        return len(data)


def splits(answer: bytes) -> list[ScriptedSocket]:
    """The answer whole, then cut in two at every position."""
    sockets = [ScriptedSocket(answer)]
    sockets += [ScriptedSocket(answer[:i], answer[i:]) for i in range(1, len(answer))]
    return sockets


OK_JSON = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nGrpc-Metadata-Content-Type: "
    b'application/grpc\r\nContent-Length: 13\r\n\r\n{"count":"1"}'
)
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nX-Etcd-Index: 24\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer-One: x\r\n\r\n"
)


# ---------------------------------------------------------------------------- requests
def test_request_is_one_buffer_with_its_length() -> None:
    head = RequestHead("127.0.0.1", 2379, 80, {"Content-Type": "application/json"})
    body = b'{"key":"Zm9v"}'
    wire = request_bytes("POST", "/v3/kv/range", head.for_headers({}), body)
    assert wire == (
        b"POST /v3/kv/range HTTP/1.1\r\nHost: 127.0.0.1:2379\r\nContent-Length: 14\r\n\r\n" + body
    )
    defaults = {"Content-Type": "application/json"}
    head = RequestHead("127.0.0.1", 2379, 80, defaults)
    default = request_bytes("POST", "/v3/kv/range", head.for_headers(defaults), body)
    assert b"\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n" in default


def test_bodiless_requests() -> None:
    head = RequestHead("::1", 443, 443, {})
    block = head.for_headers({})
    assert block == b"Host: [::1]\r\n"
    assert request_bytes("POST", "/v3/maintenance/status", block, None).endswith(
        b"Content-Length: 0\r\n\r\n"
    )
    get = request_bytes("GET", "/v2/keys/a", block, None)
    assert get == b"GET /v2/keys/a HTTP/1.1\r\nHost: [::1]\r\n\r\n"


def test_default_block_is_built_once() -> None:
    defaults = {"Content-Type": "application/json", "User-Agent": "geetcd"}
    head = RequestHead("localhost", 2379, 80, defaults)
    assert head.for_headers(defaults) is head.for_headers(defaults)
    token = {**defaults, "Authorization": "abc.def"}
    assert head.for_headers(token).endswith(b"Authorization: abc.def\r\n")


@pytest.mark.parametrize(
    "path", ["/v2/keys/a b", "/v2/keys/a\r\nX: y", "/v2/\x00", "/v\x7f", "/v2/keys/\u00e9"]
)
def test_request_target_cannot_split_the_request(path: str) -> None:
    with pytest.raises(UnsafeRequest):
        request_bytes("GET", path, b"", None)


@pytest.mark.parametrize("method", ["GET /x HTTP/1.1\r\n", "P OST", "", "G\u00c9T"])
def test_method_is_a_token(method: str) -> None:
    with pytest.raises(UnsafeRequest):
        request_bytes(method, "/v3/kv/range", b"", None)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "token\r\nX-Evil: 1"},
        {"Authorization": "token\nX"},
        {"Bad Name": "x"},
        {"Bad:Name": "x"},
        {"": "x"},
        {"Authorization": "caf\u00e9\u20ac"},
    ],
)
def test_header_cannot_split_the_request(headers: dict[str, str]) -> None:
    head = RequestHead("127.0.0.1", 2379, 80, {})
    with pytest.raises(UnsafeRequest):
        head.for_headers(headers)
    with pytest.raises(UnsafeRequest):
        RequestHead("127.0.0.1", 2379, 80, headers)


# ---------------------------------------------------------------------------- answers
@pytest.mark.parametrize("sock", splits(OK_JSON), ids=lambda s: str(len(s.pieces[0])))
def test_content_length_answer_at_every_split(sock: ScriptedSocket) -> None:
    status, body, headers, reusable = read_response(sock, "POST")
    assert (status, body, reusable) == (200, b'{"count":"1"}', True)
    assert headers["content-type"] == "application/json"
    assert headers.get("Grpc-Metadata-Content-Type") == "application/grpc"
    assert "CONTENT-LENGTH" in headers
    assert sock.pieces == []  # nothing read beyond the answer


@pytest.mark.parametrize("sock", splits(CHUNKED), ids=lambda s: str(len(s.pieces[0])))
def test_chunked_answer_at_every_split(sock: ScriptedSocket) -> None:
    status, body, headers, reusable = read_response(sock, "GET")
    assert (status, body, reusable) == (200, b"hello, world", True)
    assert headers["X-Etcd-Index"] == "24"


def test_one_recv_for_a_small_answer() -> None:
    sock = ScriptedSocket(OK_JSON)
    read_response(sock, "POST")
    assert sock.recv_calls == 1


def test_large_body_over_many_reads() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    pieces = [answer[i : i + 1000] for i in range(0, len(answer), 1000)]
    status, got, _, reusable = read_response(ScriptedSocket(*pieces), "POST")
    assert (status, got == body, reusable) == (200, True, True)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}extra",
    ],
)
def test_connection_not_reusable(answer: bytes) -> None:
    status, body, _, reusable = read_response(ScriptedSocket(answer), "POST")
    assert (status, body, reusable) == (200, b"{}", False)


def test_unframed_body_lasts_until_close() -> None:
    sock = ScriptedSocket(b"HTTP/1.1 200 OK\r\n\r\nabc", b"def")
    status, body, headers, reusable = read_response(sock, "POST")
    assert (status, body, len(headers), reusable) == (200, b"abcdef", 0, False)


def test_interim_answer_is_skipped_and_statuses_without_body() -> None:
    sock = ScriptedSocket(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
    status, body, _, reusable = read_response(sock, "POST")
    assert (status, body, reusable) == (204, b"", True)


def test_error_answer_keeps_status_and_body() -> None:
    answer = (
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 38\r\n\r\n"
        b'{"error":"bad","code":3,"message":"x"}'
    )
    status, body, _, reusable = read_response(ScriptedSocket(answer), "POST")
    assert status == 400
    assert body.startswith(b'{"error"')
    assert reusable


def test_repeated_headers_are_joined() -> None:
    answer = b"HTTP/1.1 200 OK\r\nVary: a\r\nvary: b\r\nContent-Length: 0\r\n\r\n"
    _, _, headers, _ = read_response(ScriptedSocket(answer), "POST")
    assert headers["Vary"] == "a, b"
    assert len(headers) == 2


def test_peer_closed_before_any_answer() -> None:
    with pytest.raises(RemoteDisconnected) as caught:
        read_response(ScriptedSocket(), "POST")
    assert isinstance(caught.value, ConnectionResetError)  # transport: ConnectionLost


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",  # truncated body
        b"HTTP/1.1 200 OK\r\nContent-Le",  # truncated head
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",  # truncated chunk
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # bad chunk size
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiXX0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",  # not HTTP at all
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded first\r\n\r\n",
    ],
)
def test_malformed_or_truncated_answers(answer: bytes) -> None:
    with pytest.raises(ProtocolError):
        read_response(ScriptedSocket(answer), "POST")


def test_head_is_bounded() -> None:
    endless = [b"HTTP/1.1 200 OK\r\n"] + [b"X-Pad: " + b"p" * 1000 + b"\r\n"] * 200
    sock = ScriptedSocket(*endless)
    with pytest.raises(ProtocolError, match="longer than"):
        read_response(sock, "POST")
    assert sum(len(p) for p in endless) - sum(len(p) for p in sock.pieces) <= 2 * MAX_HEAD


def test_socket_timeout_propagates() -> None:
    sock = ScriptedSocket(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", TimeoutError())
    with pytest.raises(TimeoutError):
        read_response(sock, "POST")
