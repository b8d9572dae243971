"""Lease requests (grant, revoke, time-to-live, list, keepalive) and their parsers. Pure.

Wire facts this module encodes (ETCD-PROTOCOL.md §3.0, §3.3):

* The TTL and ID fields are spelled ``TTL`` and ``ID`` (upper case). The gateway silently
  ignores unknown fields, so a lower-case ``ttl`` would grant a lease of the minimum TTL (2 s).
* ``timetolive`` of an unknown lease is HTTP 200 with ``"TTL": "-1"``, not an error.
* ``keepalive`` takes one or more JSON objects ``{"ID": n}`` in one body and answers one line
  ``{"result": {"header": .., "ID": "n", "TTL": "t"}}`` per object it read; a result without
  ``TTL`` (or ``TTL`` <= 0) means the lease does not exist any more. The gateway may answer
  FEWER lines than IDs (it stops reading the body once it starts answering), so the caller
  re-sends the IDs that got no line. A stream error ``{"error": {...}}`` may come as the last
  line, possibly without a trailing newline.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from geetcd.errors import EtcdError, InvalidArgument, InvalidType, MalformedResponse, ServerError
from geetcd.models import Header, LeaseInfo
from geetcd.protocol.codec import Keyspace, as_int, unb64
from geetcd.protocol.errors import error_from_object
from geetcd.protocol.kv import parse_header

__all__ = [
    "GRANT",
    "KEEPALIVE",
    "LEASES",
    "MAX_ID",
    "REVOKE",
    "TIME_TO_LIVE",
    "KeepAliveAnswer",
    "check_lease_id",
    "check_ttl",
    "grant_body",
    "keepalive_body",
    "lease_body",
    "parse_grant",
    "parse_keepalive",
    "parse_leases",
    "parse_time_to_live",
    "time_to_live_body",
]

GRANT = "/lease/grant"
REVOKE = "/lease/revoke"
TIME_TO_LIVE = "/lease/timetolive"
LEASES = "/lease/leases"
KEEPALIVE = "/lease/keepalive"

# Lease IDs and TTLs are int64 on the wire.
MAX_ID = (1 << 63) - 1


def check_ttl(ttl: object) -> int:
    """Validate a requested TTL in seconds: an int >= 1 (bools refused).

    etcd raises TTLs below its minimum (2 s with default election settings) to that minimum,
    and refuses TTLs above about 9,000,000,000 s with LeaseTTLTooLarge; both are the server's
    decision, so they are not checked here. Raises InvalidType / InvalidArgument.
    """
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        raise InvalidType(f"lease ttl must be an int number of seconds, got {type(ttl).__name__}")
    if ttl < 1:
        raise InvalidArgument(f"lease ttl must be >= 1 second, got {ttl}")
    if ttl > MAX_ID:
        raise InvalidArgument(f"lease ttl must fit in an int64, got {ttl}")
    return ttl


def check_lease_id(lease_id: object) -> int:
    """Validate a lease ID: an int in ``1 .. 2**63-1`` (0 means "no lease" in etcd)."""
    if isinstance(lease_id, bool) or not isinstance(lease_id, int):
        raise InvalidType(f"lease id must be an int, got {type(lease_id).__name__}")
    if not 1 <= lease_id <= MAX_ID:
        raise InvalidArgument(f"lease id must be in 1..2**63-1, got {lease_id}")
    return lease_id


def grant_body(ttl: int, lease_id: int | None = None) -> dict[str, Any]:
    """The JSON body of a LeaseGrantRequest: ``{"TTL": ttl}`` plus ``"ID"`` when chosen.

    The keys are upper case on purpose (a lower-case ``ttl`` is ignored by the gateway).
    """
    body: dict[str, Any] = {"TTL": ttl}
    if lease_id is not None:
        body["ID"] = lease_id
    return body


def lease_body(lease_id: int) -> dict[str, Any]:
    """The JSON body of a request naming one lease (revoke): ``{"ID": id}``."""
    return {"ID": lease_id}


def time_to_live_body(lease_id: int, keys: bool = False) -> dict[str, Any]:
    """The JSON body of a LeaseTimeToLiveRequest (``keys`` asks for the attached keys)."""
    body: dict[str, Any] = {"ID": lease_id}
    if keys:
        body["keys"] = True
    return body


def parse_grant(obj: dict[str, Any]) -> tuple[Header, int, int]:
    """``(header, id, ttl)`` of a grant answer. MalformedResponse without an ID or TTL;
    ServerError when the answer carries a non-empty ``error`` string."""
    error = obj.get("error")
    if isinstance(error, str) and error:
        raise ServerError(f"lease grant failed: {error}")
    lease_id = as_int(obj.get("ID"))
    ttl = as_int(obj.get("TTL"))
    if lease_id <= 0 or ttl <= 0:
        raise MalformedResponse(f"lease grant answer without ID or TTL: {obj!r:.200}")
    return parse_header(obj.get("header")), lease_id, ttl


def parse_time_to_live(obj: dict[str, Any], ks: Keyspace | None = None) -> LeaseInfo:
    """The LeaseInfo of a timetolive answer; ``ttl`` is -1 when the lease does not exist.

    With a namespaced ``ks``, attached keys outside the namespace are left out and the
    namespace is stripped from the others.
    """
    keys: list[bytes] = []
    raw_keys = obj.get("keys") or []
    if not isinstance(raw_keys, list):
        raise MalformedResponse(f"timetolive keys is not a list: {raw_keys!r:.80}")
    prefix = ks.prefix if ks is not None else b""
    for text in raw_keys:
        if not isinstance(text, str):
            raise MalformedResponse(f"timetolive key is not a string: {text!r:.80}")
        key = unb64(text)
        if prefix:
            if not key.startswith(prefix):
                continue
            key = key[len(prefix) :]
        keys.append(key)
    return LeaseInfo(
        id=as_int(obj.get("ID")),
        ttl=as_int(obj.get("TTL")),
        granted_ttl=as_int(obj.get("grantedTTL")),
        keys=tuple(keys),
    )


def parse_leases(obj: dict[str, Any]) -> list[int]:
    """The lease IDs of a leases answer (the server's order, which is arbitrary)."""
    items = obj.get("leases") or []
    if not isinstance(items, list):
        raise MalformedResponse(f"leases is not a list: {items!r:.80}")
    ids: list[int] = []
    for item in items:
        if not isinstance(item, dict):
            raise MalformedResponse(f"lease status is not an object: {item!r:.80}")
        ids.append(as_int(item.get("ID")))
    return ids


def keepalive_body(ids: Iterable[int]) -> bytes:
    """The body of one keepalive POST: one ``{"ID":n}`` object per line, one line per ID."""
    return "".join([f'{{"ID":{i}}}\n' for i in ids]).encode("ascii")


@dataclass(slots=True)
class KeepAliveAnswer:
    """What one keepalive POST answered.

    ``ttls`` maps each answered lease ID to its new TTL (0 when the lease is gone);
    ``error`` is the stream error the answer ended with (or MalformedResponse for bytes that
    are not JSON), else None. IDs that were sent but are not in ``ttls`` got no answer.
    """

    ttls: dict[int, int] = field(default_factory=dict)
    error: EtcdError | None = None
    header: Header | None = None


_decoder = json.JSONDecoder()


def _objects(text: str) -> tuple[list[Any], EtcdError | None]:
    """Every JSON value in ``text`` (newline-separated or simply concatenated)."""
    stripped = text.strip()
    if not stripped:
        return [], None
    # Fast path: the usual answer is newline-delimited objects; parse them in one call.
    try:
        found = json.loads("[" + ",".join(stripped.split("\n")) + "]")
        if isinstance(found, list):
            return found, None
    except ValueError:
        pass
    values: list[Any] = []
    pos = 0
    end = len(text)
    while True:
        while pos < end and text[pos] in " \t\r\n":
            pos += 1
        if pos >= end:
            return values, None
        try:
            value, pos = _decoder.raw_decode(text, pos)
        except ValueError:
            return values, MalformedResponse(
                f"keepalive answer is not JSON: {text[pos : pos + 80]!r}"
            )
        values.append(value)


def parse_keepalive(data: bytes, member: str | None = None) -> KeepAliveAnswer:
    """Parse the whole body of a keepalive POST. Never raises.

    Lines that parse before a bad one are kept; a bad line ends the parse with
    ``error`` = MalformedResponse. A ``{"error": {...}}`` object becomes ``error`` (the class
    from the shared error table, e.g. NoLeader for "no leader").
    """
    answer = KeepAliveAnswer()
    values, answer.error = _objects(data.decode("utf-8", "replace"))
    for value in values:
        if not isinstance(value, dict):
            answer.error = MalformedResponse(f"keepalive line is not an object: {value!r:.80}")
            break
        result = value.get("result")
        if isinstance(result, dict):
            try:
                lease_id = as_int(result.get("ID"))
                ttl = as_int(result.get("TTL"))
            except MalformedResponse as exc:
                answer.error = exc
                break
            answer.ttls[lease_id] = max(ttl, 0)
            if answer.header is None:
                try:
                    answer.header = parse_header(result.get("header"))
                except MalformedResponse:
                    answer.header = Header()
            continue
        error = error_from_object(value, None, member)
        answer.error = error or MalformedResponse(
            f"keepalive line is neither a result nor an error: {value!r:.80}", member=member
        )
        break
    return answer
