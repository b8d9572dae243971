"""Maintenance and membership messages (pure: bodies in, models out; no I/O).

Paths are relative to the gateway prefix (``/v3``). Shapes seen on etcd 3.5.1
(ETCD-PROTOCOL.md §3.0, §3.5): int64/uint64 fields are JSON strings in answers, zero values
are left out, member fields are ``ID``/``peerURLs``/``clientURLs``/``isLearner``, alarm
fields ``memberID``/``alarm``.

The snapshot stream (``/maintenance/snapshot``) is one JSON object per line,
``{"result": {"header": .., "remaining_bytes": "N", "blob": "<base64>"}}``; the last message
carries the 32-byte sha256 of every byte before it (etcd's trailer), and an error ends the
stream as ``{"error": {...}}``. :class:`SnapshotDecoder` turns the bytes into blobs.

HashKV and the raw snapshot are gRPC calls: their protobuf messages are built and parsed
here, in gRPC frames (:mod:`geetcd.protocol.grpc`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from geetcd.errors import InvalidArgument, InvalidType, MalformedResponse
from geetcd.models import Header, MemberInfo
from geetcd.protocol.codec import as_int
from geetcd.protocol.errors import error_from_object
from geetcd.protocol.grpc import decode_fields, frame, unframe
from geetcd.protocol.grpc import encode_varint as _varint
from geetcd.protocol.grpc import field_int as _int
from geetcd.protocol.kv import parse_header

__all__ = [
    "ALARM",
    "ALARM_NAMES",
    "DEFRAGMENT",
    "HASH",
    "HASH_KV_GRPC",
    "MEMBER_ADD",
    "MEMBER_PROMOTE",
    "MEMBER_REMOVE",
    "MEMBER_UPDATE",
    "MOVE_LEADER",
    "SNAPSHOT",
    "SNAPSHOT_GRPC",
    "SNAPSHOT_REQUEST",
    "Alarm",
    "HashKV",
    "MemberAddResponse",
    "SnapshotDecoder",
    "alarm_body",
    "check_member_id",
    "check_peer_urls",
    "decode_fields",
    "hash_kv_request",
    "member_body",
    "parse_alarms",
    "parse_hash_kv",
    "parse_member_add",
    "parse_snapshot_message",
    "parse_members",
]

DEFRAGMENT = "/maintenance/defragment"
ALARM = "/maintenance/alarm"
MOVE_LEADER = "/maintenance/transfer-leadership"
SNAPSHOT = "/maintenance/snapshot"
HASH = "/maintenance/hash"  # the whole-database Hash: never a HashKV
MEMBER_ADD = "/cluster/member/add"
MEMBER_REMOVE = "/cluster/member/remove"
MEMBER_UPDATE = "/cluster/member/update"
MEMBER_PROMOTE = "/cluster/member/promote"

# etcdserverpb.AlarmType
ALARM_NAMES = ("NONE", "NOSPACE", "CORRUPT")

_SHA256_SIZE = 32


@dataclass(frozen=True, slots=True)
class Alarm:
    """An active alarm: ``member_id`` raised ``alarm`` (``"NOSPACE"`` or ``"CORRUPT"``)."""

    member_id: int
    alarm: str


@dataclass(frozen=True, slots=True)
class HashKV:
    """A member's HashKV: the hash of its keyspace up to ``revision`` (``header.revision`` is
    the member's current one) and the ``compact_revision`` it was computed from."""

    header: Header
    hash: int
    compact_revision: int
    hash_revision: int = 0


@dataclass(frozen=True, slots=True)
class MemberAddResponse:
    """The answer of ``member_add``: ``member`` is the new one (no name and no client URLs
    until it starts), ``members`` the whole list, new member included (as in Go)."""

    header: Header
    member: MemberInfo
    members: tuple[MemberInfo, ...]


def check_member_id(member_id: object, what: str = "member_id") -> int:
    """A member id: an int in [1, 2**64) (ids are uint64). InvalidType / InvalidArgument."""
    if isinstance(member_id, bool) or not isinstance(member_id, int):
        raise InvalidType(f"{what} must be an int, got {type(member_id).__name__}")
    if not 0 < member_id < 2**64:
        raise InvalidArgument(f"{what} must be in [1, 2**64), got {member_id}")
    return member_id


def check_peer_urls(peer_urls: object) -> list[str]:
    """A non-empty list of ``http(s)://host:port`` peer URLs (one str is one URL)."""
    urls = [peer_urls] if isinstance(peer_urls, str) else peer_urls
    if not isinstance(urls, (list, tuple)):
        raise InvalidType(f"peer_urls must be a list of str, got {type(peer_urls).__name__}")
    if not urls:
        raise InvalidArgument("peer_urls must name at least one URL")
    checked: list[str] = []
    for url in urls:
        if not isinstance(url, str):
            raise InvalidType(f"peer URL must be a str, got {type(url).__name__}")
        scheme, _, rest = url.partition("://")
        if scheme not in ("http", "https") or not rest or "/" in rest.rstrip("/"):
            raise InvalidArgument(f"peer URL must be http(s)://host:port, got {url!r}")
        checked.append(url)
    return checked


def member_body(member_id: int, peer_urls: list[str] | None = None) -> dict[str, Any]:
    """The body of remove / promote (``{"ID"}``) or update (``{"ID", "peerURLs"}``)."""
    body: dict[str, Any] = {"ID": str(member_id)}
    if peer_urls is not None:
        body["peerURLs"] = peer_urls
    return body


def alarm_body(action: str, member_id: int = 0, alarm: str = "NONE") -> dict[str, Any]:
    """An AlarmRequest: ``action`` GET / ACTIVATE / DEACTIVATE."""
    body: dict[str, Any] = {"action": action}
    if member_id:
        body["memberID"] = str(member_id)
    if alarm != "NONE":
        body["alarm"] = alarm
    return body


def _member(m: dict[str, Any]) -> MemberInfo:
    return MemberInfo(
        id=as_int(m.get("ID")),
        name=str(m.get("name", "")),
        peer_urls=tuple(str(u) for u in m.get("peerURLs") or ()),
        client_urls=tuple(str(u) for u in m.get("clientURLs") or ()),
        is_learner=bool(m.get("isLearner", False)),
    )


def parse_members(obj: dict[str, Any]) -> tuple[Header, tuple[MemberInfo, ...]]:
    """The header and ``members`` of a member remove / update / promote answer."""
    return parse_header(obj.get("header")), tuple(_member(m) for m in obj.get("members") or ())


def parse_member_add(obj: dict[str, Any]) -> MemberAddResponse:
    """A MemberAddResponse."""
    header, members = parse_members(obj)
    raw = obj.get("member")
    if not isinstance(raw, dict):
        raise MalformedResponse(f"member add answer without a member: {str(obj)[:120]}")
    return MemberAddResponse(header=header, member=_member(raw), members=members)


def parse_alarms(obj: dict[str, Any]) -> tuple[Alarm, ...]:
    """The ``alarms`` of an AlarmResponse (names or numbers accepted)."""
    alarms: list[Alarm] = []
    for a in obj.get("alarms") or ():
        kind = a.get("alarm", "NONE")
        if isinstance(kind, int) and 0 <= kind < len(ALARM_NAMES):
            kind = ALARM_NAMES[kind]
        alarms.append(Alarm(member_id=as_int(a.get("memberID")), alarm=str(kind)))
    return tuple(a for a in alarms if a.alarm != "NONE")


class SnapshotDecoder:
    """Incremental decoder of the snapshot stream: ``feed(bytes)`` yields each blob's bytes
    in order, trailer included; :meth:`verified` (at the end of the stream) tells whether
    the last 32 bytes are the sha256 of every byte before them.

    etcd sends the database in blobs whose ``remaining_bytes`` counts down to 0, then one
    more message (``remaining_bytes`` 0 again) whose blob is the sha256 trailer. An error
    message raises the matching geetcd error; a line that is not JSON raises
    MalformedResponse. Memory: one line (a blob of at most ~32 KiB, base64) plus 32 bytes,
    whatever the database size.
    """

    def __init__(self, member: str | None = None) -> None:
        self.member = member
        self.size = 0  # bytes received, trailer excluded (once the stream ended)
        self.total = 0  # the database size etcd announced (first remaining_bytes + blob)
        self.received = 0  # every byte received, trailer included
        self._buffer = bytearray()
        self._hash = hashlib.sha256()
        self._tail = b""  # the newest bytes, not yet hashed (may be the trailer)

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Blobs decoded from ``data`` (and earlier partial lines)."""
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if self._buffer.strip() and self._buffer.rstrip().endswith(b"}"):
                    # A last message (an error) may come without a newline: try it.
                    try:
                        obj = json.loads(bytes(self._buffer))
                    except ValueError:
                        return
                    self._buffer.clear()
                    yield from self._message(obj)
                return
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise MalformedResponse(
                    f"snapshot stream line is not JSON: {line[:80]!r}", member=self.member
                ) from exc
            yield from self._message(obj)

    def _message(self, obj: object) -> Iterator[bytes]:
        if not isinstance(obj, dict):
            raise MalformedResponse(f"snapshot message {obj!r:.80}", member=self.member)
        error = error_from_object(obj, None, self.member) if "result" not in obj else None
        if error is not None:
            raise error
        result = obj.get("result")
        if not isinstance(result, dict):
            raise MalformedResponse(f"snapshot message {obj!r:.80}", member=self.member)
        try:
            blob = base64.b64decode(result.get("blob") or "", validate=True)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise MalformedResponse("snapshot blob is not base64", member=self.member) from exc
        remaining = as_int(result.get("remaining_bytes"))
        self.add_blob(blob, remaining)
        yield blob

    def add_blob(self, blob: bytes, remaining: int) -> None:
        """Account for one blob (from either stream shape): size, hash, trailer."""
        if not self.total:
            self.total = remaining + len(blob)
        # Everything but the newest 32 bytes is database: hash it now.
        tail = self._tail + blob
        if len(tail) > _SHA256_SIZE:
            self._hash.update(tail[:-_SHA256_SIZE])
            self.size += len(tail) - _SHA256_SIZE
            tail = tail[-_SHA256_SIZE:]
        self._tail = tail
        self.received += len(blob)

    def trailer_hex(self) -> str:
        """The last 32 bytes received (the sha256 trailer once the stream ended), in hex."""
        return self._tail.hex()

    def verified(self) -> bool:
        """True when the stream so far ends with the sha256 trailer of the bytes before it
        and carried at least the announced size. Call it at the end of the stream."""
        return (
            len(self._tail) == _SHA256_SIZE
            and self.size >= self.total
            and self._hash.digest() == self._tail
        )


# ---------------------------------------------------------------------- gRPC messages
# etcd 3.5.1's gateway has no HashKV route (it came in 3.5.10), so hash_kv speaks gRPC:
# a unary call whose request and answer are protobuf messages in gRPC frames
# (geetcd.protocol.grpc). Snapshots go over gRPC too (raw bytes instead of base64 JSON).
# Only the few fields below are encoded / decoded.
HASH_KV_GRPC = "/etcdserverpb.Maintenance/HashKV"


def hash_kv_request(revision: int) -> bytes:
    """A gRPC frame holding ``HashKVRequest{revision}`` (field 1; omitted when 0)."""
    return frame(b"\x08" + _varint(revision) if revision else b"")


SNAPSHOT_GRPC = "/etcdserverpb.Maintenance/Snapshot"
SNAPSHOT_REQUEST = frame(b"")  # an empty SnapshotRequest


def parse_snapshot_message(message: bytes) -> tuple[bytes, int]:
    """``(blob, remaining_bytes)`` of one SnapshotResponse (fields 3 and 2)."""
    fields = decode_fields(message)
    blob = fields.get(3, [b""])[-1]
    if not isinstance(blob, bytes):
        raise MalformedResponse("snapshot blob is not bytes")
    return blob, _int(fields, 2)


def parse_hash_kv(body: bytes) -> HashKV:
    """``HashKVResponse`` from the gRPC answer body (one length-prefixed frame)."""
    fields = decode_fields(unframe(body))
    raw_header = fields.get(1, [b""])[-1]
    header_fields = decode_fields(raw_header) if isinstance(raw_header, bytes) else {}
    header = Header(
        cluster_id=_int(header_fields, 1),
        member_id=_int(header_fields, 2),
        revision=_int(header_fields, 3, signed=True),
        raft_term=_int(header_fields, 4),
    )
    return HashKV(
        header=header,
        hash=_int(fields, 2),
        compact_revision=_int(fields, 3, signed=True),
        hash_revision=_int(fields, 4, signed=True),
    )
