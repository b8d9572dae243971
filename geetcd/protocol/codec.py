"""Wire encoding shared by every v3 message: base64 bytes, int64-as-string, JSON, key spaces."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from geetcd.errors import InvalidArgument, InvalidType, MalformedResponse

__all__ = [
    "Keyspace",
    "as_int",
    "b64",
    "decode_json",
    "encode_json",
    "prefix_end",
    "to_bytes",
    "unb64",
]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode
_loads = json.loads


def to_bytes(value: object, what: str) -> bytes:
    """Coerce a ``str`` (UTF-8) or bytes-like ``value`` to bytes; raise InvalidType otherwise."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise InvalidType(f"{what} must be str or bytes, got {type(value).__name__}")


def b64(data: bytes) -> str:
    """Standard base64 with padding, as the gateway requires (URL-safe or unpadded is a 400)."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """Decode a base64 field from a response; MalformedResponse if it is not base64."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise MalformedResponse(f"field is not base64: {text!r:.60}") from exc


def as_int(value: object) -> int:
    """Parse an int64 the gateway sent as a JSON string (or number); missing means 0."""
    if value is None:
        return 0
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError) as exc:
        raise MalformedResponse(f"expected an integer, got {value!r:.60}") from exc


def encode_json(body: dict[str, Any]) -> bytes:
    """Compact JSON bytes of a request body."""
    return _dumps(body).encode("ascii")


def decode_json(data: bytes) -> dict[str, Any]:
    """Parse one JSON object; raise MalformedResponse (with the cause) if it is not one."""
    try:
        obj = _loads(data)
    except ValueError as exc:
        raise MalformedResponse(f"response is not JSON: {data[:80]!r}") from exc
    if not isinstance(obj, dict):
        raise MalformedResponse(f"response is not a JSON object: {data[:80]!r}")
    return obj


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that selects every key starting with ``prefix``.

    The last byte below 0xff is incremented and the rest dropped; a prefix of only 0xff bytes
    (or an empty one) gives ``b"\\0"``, which etcd reads as "to the end of the key space".
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"
    return stripped[:-1] + bytes((stripped[-1] + 1,))


class Keyspace:
    """Maps the caller's keys into an optional namespace prefix and back.

    With an empty prefix every method is the identity (plus validation). With a prefix, keys
    are stored as ``prefix + key``, the "to the end" range end ``b"\\0"`` becomes the end of
    the prefix, and keys coming back are stripped of the prefix.
    """

    __slots__ = ("_strip", "prefix")

    def __init__(self, prefix: bytes = b"") -> None:
        self.prefix = prefix
        self._strip = len(prefix)

    def __repr__(self) -> str:
        return f"Keyspace({self.prefix!r})"

    def key(self, key: object, what: str = "key") -> bytes:
        """Validate a caller's key and return it on the wire; InvalidArgument for an empty key."""
        raw = to_bytes(key, what)
        if not raw:
            raise InvalidArgument(f"{what} must not be empty")
        return self.prefix + raw

    def range_end(self, wire_key: bytes, range_end: object, prefix: bool) -> bytes | None:
        """The wire ``range_end`` for a caller's ``range_end`` / ``prefix`` flag, or None."""
        if prefix:
            if range_end is not None:
                raise InvalidArgument("give either prefix=True or range_end, not both")
            return prefix_end(wire_key)
        if range_end is None:
            return None
        end = to_bytes(range_end, "range_end")
        if end == b"\0":
            return prefix_end(self.prefix) if self.prefix else b"\0"
        return self.prefix + end

    def span(
        self, key: object, range_end: object = None, prefix: bool = False
    ) -> tuple[bytes, bytes | None]:
        """Wire ``(key, range_end)`` for a caller's key, ``range_end`` and ``prefix`` flag.

        An empty key is allowed only with ``prefix=True`` and then means "every key" (in the
        namespace, when there is one). Raises InvalidArgument / InvalidType before any I/O.
        """
        if prefix and range_end is None and to_bytes(key, "key") == b"":
            if self.prefix:
                return self.prefix, prefix_end(self.prefix)
            return b"\0", b"\0"
        wire = self.key(key)
        return wire, self.range_end(wire, range_end, prefix)

    def unkey(self, wire_key: bytes) -> bytes:
        """Strip the namespace from a key that came back from etcd."""
        return wire_key[self._strip :] if self._strip else wire_key
