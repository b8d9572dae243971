"""KV requests (range, put, delete-range, txn, compaction) and their parsers."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from geetcd.errors import InvalidArgument, InvalidType, MalformedResponse
from geetcd.models import (
    DeleteResponse,
    Header,
    KeyValue,
    OpResponse,
    PutResponse,
    RangeResponse,
    TxnResponse,
)
from geetcd.protocol.codec import Keyspace, as_int, b64, unb64

__all__ = [
    "COMPACT",
    "DELETE",
    "PUT",
    "RANGE",
    "TXN",
    "SortOrder",
    "SortTarget",
    "compact_body",
    "delete_body",
    "parse_delete",
    "parse_header",
    "parse_kv",
    "parse_put",
    "parse_range",
    "parse_txn",
    "put_body",
    "range_body",
    "sort_order",
    "sort_target",
]

RANGE = "/kv/range"
PUT = "/kv/put"
DELETE = "/kv/deleterange"
TXN = "/kv/txn"
COMPACT = "/kv/compaction"


class SortOrder(enum.IntEnum):
    """Range sort order (proto enum values)."""

    NONE = 0
    ASCEND = 1
    DESCEND = 2


class SortTarget(enum.IntEnum):
    """What a range is sorted by (proto enum values)."""

    KEY = 0
    VERSION = 1
    CREATE = 2
    MOD = 3
    VALUE = 4


def _enum(value: object, cls: type[enum.IntEnum], what: str) -> int:
    if isinstance(value, cls):
        return int(value)
    if isinstance(value, str):
        try:
            return int(cls[value.upper()])
        except KeyError:
            names = ", ".join(repr(m.name.lower()) for m in cls)
            raise InvalidArgument(f"{what} must be one of {names}, got {value!r}") from None
    raise InvalidType(f"{what} must be a str or {cls.__name__}, got {type(value).__name__}")


def sort_order(value: object) -> int:
    """``"ascend"``/``"descend"``/``"none"`` or a SortOrder -> proto value."""
    return _enum(value, SortOrder, "sort_order")


def sort_target(value: object) -> int:
    """``"key"``/``"version"``/``"create"``/``"mod"``/``"value"`` or a SortTarget -> proto value."""
    return _enum(value, SortTarget, "sort_target")


def check_int(value: object, what: str, minimum: int = 0) -> int:
    """Validate an integer option (bools refused) and return it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidType(f"{what} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise InvalidArgument(f"{what} must be >= {minimum}, got {value}")
    return value


def check_bool(value: object, what: str) -> bool:
    """Validate a boolean option (the gateway refuses "true" strings) and return it."""
    if not isinstance(value, bool):
        raise InvalidType(f"{what} must be a bool, got {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class RangeOptions:
    """Validated optional fields of a range request (zero values are not sent)."""

    limit: int = 0
    revision: int = 0
    sort_order: int = 0
    sort_target: int = 0
    serializable: bool = False
    keys_only: bool = False
    count_only: bool = False
    min_mod_revision: int = 0
    max_mod_revision: int = 0
    min_create_revision: int = 0
    max_create_revision: int = 0


def range_body(
    key: bytes, range_end: bytes | None, opts: RangeOptions | None = None
) -> dict[str, Any]:
    """The JSON body of a RangeRequest; only non-zero fields are sent."""
    body: dict[str, Any] = {"key": b64(key)}
    if range_end is not None:
        body["range_end"] = b64(range_end)
    if opts is not None:
        for name in RangeOptions.__slots__:
            value = getattr(opts, name)
            if value:
                body[name] = value
    return body


def put_body(
    key: bytes,
    value: bytes,
    *,
    lease: int = 0,
    prev_kv: bool = False,
    ignore_value: bool = False,
    ignore_lease: bool = False,
) -> dict[str, Any]:
    """The JSON body of a PutRequest. ``ignore_value`` sends no value."""
    body: dict[str, Any] = {"key": b64(key)}
    if not ignore_value:
        body["value"] = b64(value)
    else:
        body["ignore_value"] = True
    if lease:
        body["lease"] = lease
    if prev_kv:
        body["prev_kv"] = True
    if ignore_lease:
        body["ignore_lease"] = True
    return body


def delete_body(key: bytes, range_end: bytes | None, *, prev_kv: bool = False) -> dict[str, Any]:
    """The JSON body of a DeleteRangeRequest."""
    body: dict[str, Any] = {"key": b64(key)}
    if range_end is not None:
        body["range_end"] = b64(range_end)
    if prev_kv:
        body["prev_kv"] = True
    return body


def compact_body(revision: int, *, physical: bool = False) -> dict[str, Any]:
    """The JSON body of a CompactionRequest."""
    body: dict[str, Any] = {"revision": revision}
    if physical:
        body["physical"] = True
    return body


def parse_header(obj: dict[str, Any] | None) -> Header:
    """A ResponseHeader; missing fields (member list, nested txn) are 0."""
    if not obj:
        return Header()
    return Header(
        cluster_id=as_int(obj.get("cluster_id")),
        member_id=as_int(obj.get("member_id")),
        revision=as_int(obj.get("revision")),
        raft_term=as_int(obj.get("raft_term")),
    )


def parse_kv(obj: dict[str, Any], ks: Keyspace | None = None) -> KeyValue:
    """A KeyValue; the namespace (if any) is stripped from the key."""
    try:
        key = unb64(obj["key"])
    except KeyError as exc:
        raise MalformedResponse(f"key-value without key: {obj!r:.80}") from exc
    value = obj.get("value")
    return KeyValue(
        key=ks.unkey(key) if ks is not None else key,
        value=unb64(value) if value else b"",
        create_revision=as_int(obj.get("create_revision")),
        mod_revision=as_int(obj.get("mod_revision")),
        version=as_int(obj.get("version")),
        lease=as_int(obj.get("lease")),
    )


def parse_range(obj: dict[str, Any], ks: Keyspace | None = None) -> RangeResponse:
    """A RangeResponse; ``count`` is the total in range, ``more`` whether kvs were cut."""
    kvs = obj.get("kvs")
    return RangeResponse(
        header=parse_header(obj.get("header")),
        kvs=tuple(parse_kv(kv, ks) for kv in kvs) if kvs else (),
        count=as_int(obj.get("count")),
        more=bool(obj.get("more", False)),
    )


def parse_put(obj: dict[str, Any], ks: Keyspace | None = None) -> PutResponse:
    """A PutResponse; ``prev_kv`` only when requested and present."""
    prev = obj.get("prev_kv")
    return PutResponse(
        header=parse_header(obj.get("header")),
        prev_kv=parse_kv(prev, ks) if prev else None,
    )


def parse_delete(obj: dict[str, Any], ks: Keyspace | None = None) -> DeleteResponse:
    """A DeleteRangeResponse."""
    prev = obj.get("prev_kvs")
    return DeleteResponse(
        header=parse_header(obj.get("header")),
        deleted=as_int(obj.get("deleted")),
        prev_kvs=tuple(parse_kv(kv, ks) for kv in prev) if prev else (),
    )


def _parse_op_response(obj: dict[str, Any], ks: Keyspace | None) -> OpResponse:
    if "response_range" in obj:
        return parse_range(obj["response_range"], ks)
    if "response_put" in obj:
        return parse_put(obj["response_put"], ks)
    if "response_delete_range" in obj:
        return parse_delete(obj["response_delete_range"], ks)
    if "response_txn" in obj:
        return parse_txn(obj["response_txn"], ks)
    raise MalformedResponse(f"unknown txn response op: {sorted(obj)!r}")


def parse_txn(obj: dict[str, Any], ks: Keyspace | None = None) -> TxnResponse:
    """A TxnResponse. A failed compare is not an error: ``succeeded`` is False."""
    responses: Sequence[dict[str, Any]] = obj.get("responses") or ()
    return TxnResponse(
        header=parse_header(obj.get("header")),
        succeeded=bool(obj.get("succeeded", False)),
        responses=tuple(_parse_op_response(r, ks) for r in responses),
    )
