"""gRPC on the wire, sans-IO: length-prefixed message frames, the few protobuf encodings
geetcd needs, request headers and the call's status. Bytes in, values out; no sockets.

A gRPC message travels in a frame: one flag byte (0: not compressed), a 4-byte big-endian
length, the protobuf bytes. The call's outcome is ``grpc-status`` (0: OK) and
``grpc-message`` (percent-encoded) in the answer's trailers, or in its headers when the
answer is trailers-only. :mod:`geetcd.transport.grpc` moves the bytes over HTTP/2.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator, Mapping

from geetcd.errors import EtcdError, MalformedResponse, error_from_status

__all__ = [
    "FrameDecoder",
    "decode_fields",
    "encode_varint",
    "field_int",
    "frame",
    "request_headers",
    "status_error",
    "unframe",
]

_PREFIX = 5


def frame(message: bytes) -> bytes:
    """``message`` in an uncompressed gRPC frame."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def unframe(data: bytes) -> bytes:
    """The message of the one frame ``data`` holds (a unary answer's body).

    MalformedResponse for a compressed, truncated or missing frame."""
    if len(data) < _PREFIX or data[0] != 0:
        raise MalformedResponse(f"not an uncompressed gRPC frame: {data[:16]!r}")
    size = int.from_bytes(data[1:_PREFIX], "big")
    message = data[_PREFIX : _PREFIX + size]
    if len(message) != size:
        raise MalformedResponse("truncated gRPC frame")
    return message


class FrameDecoder:
    """Incremental frame decoder for a server stream: ``feed(bytes)`` yields each message
    (without its prefix) as soon as it is whole. Memory: one partial message."""

    __slots__ = ("_buffer", "member")

    def __init__(self, member: str | None = None) -> None:
        self.member = member
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Messages completed by ``data``; MalformedResponse for a compressed one."""
        buffer = self._buffer
        buffer += data
        while len(buffer) >= _PREFIX:
            if buffer[0] != 0:
                raise MalformedResponse(
                    f"compressed gRPC message from {self.member}", member=self.member
                )
            size = int.from_bytes(buffer[1:_PREFIX], "big")
            if len(buffer) < _PREFIX + size:
                break
            message = bytes(buffer[_PREFIX : _PREFIX + size])
            del buffer[: _PREFIX + size]
            yield message

    @property
    def pending(self) -> int:
        """Bytes of a message not yet whole (non-zero at the end: the stream was cut)."""
        return len(self._buffer)


def request_headers(
    scheme: str, authority: str, path: str, *, timeout: float, token: str | None
) -> list[tuple[str, str]]:
    """The HTTP/2 headers of a gRPC request to ``path`` (``timeout`` seconds left, at
    least 1 ms; ``token``: an etcd auth token)."""
    headers = [
        (":method", "POST"),
        (":scheme", scheme),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("grpc-timeout", f"{max(1, int(timeout * 1000))}m"),
        ("user-agent", "geetcd"),
    ]
    if token:
        headers.append(("authorization", token))
    return headers


def status_error(
    http_status: str | None, trailers: Mapping[str, str], url: str, path: str
) -> EtcdError | None:
    """The error of a finished call (None when it succeeded): an HTTP/2 status other than
    200 is MalformedResponse; a ``grpc-status`` other than 0 (missing: 2, UNKNOWN) is the
    matching geetcd error (:func:`geetcd.errors.error_from_status`)."""
    if http_status != "200":
        return MalformedResponse(
            f"{url} answered {path} with HTTP/2 status {http_status}", member=url
        )
    code = int(trailers.get("grpc-status", "2") or 2)
    if code == 0:
        return None
    message = urllib.parse.unquote(trailers.get("grpc-message", ""))
    return error_from_status(None, code, message or f"gRPC status {code}", member=url)


# ---------------------------------------------------------------------- protobuf wire
def encode_varint(value: int) -> bytes:
    """A protobuf varint (negative values as int64's two's complement, 10 bytes)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_fields(data: bytes) -> dict[int, list[int | bytes]]:
    """The fields of a protobuf message: varints as ints, length-delimited as bytes (fixed
    32/64-bit fields are skipped). MalformedResponse for a truncated message."""
    fields: dict[int, list[int | bytes]] = {}
    pos = 0

    def varint() -> int:
        nonlocal pos
        shift = result = 0
        while True:
            if pos >= len(data) or shift > 63:
                raise MalformedResponse("truncated protobuf varint")
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while pos < len(data):
        tag = varint()
        number, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == 0:
            value = varint()
        elif wire == 2:
            size = varint()
            if pos + size > len(data):
                raise MalformedResponse("truncated protobuf field")
            value, pos = data[pos : pos + size], pos + size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            continue
        else:
            raise MalformedResponse(f"unsupported protobuf wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def field_int(fields: dict[int, list[int | bytes]], number: int, signed: bool = False) -> int:
    """The last value of varint field ``number`` (0 when absent; ``signed``: as int64)."""
    values = fields.get(number)
    value = values[-1] if values else 0
    if not isinstance(value, int):
        raise MalformedResponse(f"protobuf field {number} is not a varint")
    if signed and value >= 1 << 63:
        value -= 1 << 64
    return value
