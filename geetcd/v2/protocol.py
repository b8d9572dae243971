"""The v2 keys API on the wire, with no I/O: build requests, parse answers.

Requests are :class:`Request` values (method, path with query string, form body, whether the
request loop may send it again after an answer was lost). Answers are parsed from status,
body bytes and headers into :mod:`geetcd.v2.models`, or into the exception to raise
(returned, never raised, by :func:`error_from_answer`).

Wire facts (ETCD-PROTOCOL.md §4, checked on etcd 3.5.1): values and TTLs travel as an
``application/x-www-form-urlencoded`` body; flags (``dir``, ``prevExist``, ``prevValue``,
``prevIndex``, ``recursive``, ``sorted``, ``quorum``, ``wait``, ``waitIndex``, ``refresh``) in
the query string. Go's router answers a path with ``//``, ``.`` or ``..`` segments with a
301 redirect, so keys are cleaned here the way go-etcd's ``path.Join`` did.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlencode

from geetcd.errors import (
    EtcdError,
    InvalidArgument,
    InvalidType,
    MalformedResponse,
    UnsupportedServer,
)
from geetcd.models import MemberInfo
from geetcd.protocol.codec import decode_json
from geetcd.protocol.errors import error_from_body
from geetcd.v2.errors import v2_error
from geetcd.v2.models import Node, Response, Version

__all__ = [
    "INDEX_PROBE_KEY",
    "Request",
    "add_child_dir_request",
    "cluster_id_of",
    "compare_and_delete_request",
    "compare_and_swap_request",
    "create_dir_request",
    "create_in_order_request",
    "create_request",
    "delete_dir_request",
    "delete_request",
    "error_from_answer",
    "get_request",
    "index_of",
    "key_path",
    "parse_leader",
    "parse_members",
    "parse_node",
    "parse_response",
    "parse_stats",
    "parse_version",
    "refresh_request",
    "set_dir_request",
    "set_request",
    "update_dir_request",
    "update_request",
    "watch_request",
]

KEYS: Final = "/v2/keys"
MEMBERS: Final = "/v2/members"
LEADER: Final = "/v2/members/leader"
VERSION: Final = "/version"
STATS_SELF: Final = "/v2/stats/self"
STATS_LEADER: Final = "/v2/stats/leader"
STATS_STORE: Final = "/v2/stats/store"

# A hidden key (v2 hides names starting with "_" from listings) that is read to learn the
# current etcd index: a 404 answer carries it as well as a 200 does.
INDEX_PROBE_KEY: Final = "/_geetcd_index_probe"

FORM_HEADERS: Final[Mapping[str, str]] = {
    "Content-Type": "application/x-www-form-urlencoded",
    "Accept": "application/json",
}
PLAIN_HEADERS: Final[Mapping[str, str]] = {"Accept": "application/json"}


@dataclass(frozen=True, slots=True)
class Request:
    """One v2 request: ``path`` includes the query string; ``body`` is the form (or None).

    ``idempotent``: the request loop may send it to another member after an answer was lost
    (reads, and writes whose replay leaves the same state and the same success answer).
    """

    method: str
    path: str
    body: bytes | None = None
    idempotent: bool = False

    @property
    def headers(self) -> Mapping[str, str]:
        """The headers to send: the form content type when there is a body."""
        return FORM_HEADERS if self.body is not None else PLAIN_HEADERS


# ---------------------------------------------------------------------------- validation
def key_path(key: object, what: str = "key") -> str:
    """The URL path (under /v2/keys) of ``key``, cleaned and percent-encoded.

    ``"a"``, ``"/a"``, ``"/a/"`` and ``"//a/./b/.."`` all name ``/a``; ``"/"`` names the
    root. Raises InvalidType for a non-str key, InvalidArgument for an empty one.
    """
    if not isinstance(key, str):
        raise InvalidType(f"{what} must be a str, got {type(key).__name__}")
    if not key:
        raise InvalidArgument(f"{what} must not be empty")
    parts: list[str] = []
    for part in key.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(quote(part, safe=""))
    return KEYS + "/" + "/".join(parts)


def _value(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidArgument("a v2 value must be UTF-8 text") from exc
    raise InvalidType(f"value must be str or bytes, got {type(value).__name__}")


def _ttl(ttl: object) -> int | None:
    """None (no TTL) or whole seconds >= 1. ``0`` also means "no TTL", as in go-etcd
    (which sends a ttl only when it is above zero), so code ported from it passes 0
    unchanged; no ttl field is sent then. Negative values raise InvalidArgument."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        raise InvalidType(f"ttl must be an int number of seconds or None, got {ttl!r}")
    if ttl < 0:
        raise InvalidArgument(f"ttl must be >= 0 seconds (0 or None: no TTL), got {ttl}")
    return ttl or None


def _index(value: object, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidType(f"{what} must be an int or None, got {value!r}")
    if value < 1:
        raise InvalidArgument(f"{what} must be >= 1, got {value}")
    return value


def _flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidType(f"{what} must be a bool, got {type(value).__name__}")
    return value


def _prev_value(value: object) -> str | None:
    if value is None:
        return None
    text = _value(value)
    if not text:
        raise InvalidArgument("prev_value must not be empty (etcd refuses an empty prevValue)")
    return text


def _url(key: object, query: Sequence[tuple[str, str]]) -> str:
    path = key_path(key)
    return f"{path}?{urlencode(query)}" if query else path


def _form(value: str | None, ttl: int | None) -> bytes | None:
    fields: list[tuple[str, str]] = []
    if value is not None:
        fields.append(("value", value))
    if ttl is not None:
        fields.append(("ttl", str(ttl)))
    return urlencode(fields).encode("ascii") if fields else None


# ---------------------------------------------------------------------------- requests
def get_request(
    key: object, *, sort: bool = False, recursive: bool = False, quorum: bool = False
) -> Request:
    """GET a key or directory (``sorted``, ``recursive``, ``quorum`` when asked). Idempotent."""
    query = []
    if _flag(recursive, "recursive"):
        query.append(("recursive", "true"))
    if _flag(sort, "sort"):
        query.append(("sorted", "true"))
    if _flag(quorum, "quorum"):
        query.append(("quorum", "true"))
    return Request("GET", _url(key, query), None, True)


def set_request(key: object, value: object, ttl: object = None) -> Request:
    """PUT a value whatever is there (a directory gives NotFile).

    Idempotent in effect: a replay after a lost answer leaves the same value and succeeds.
    """
    return Request("PUT", _url(key, []), _form(_value(value), _ttl(ttl)), True)


def set_dir_request(key: object, ttl: object = None) -> Request:
    """PUT a directory (NotFile if one exists). Not retried: a replay gives NotFile."""
    return Request("PUT", _url(key, [("dir", "true")]), _form(None, _ttl(ttl)), False)


def create_request(key: object, value: object, ttl: object = None) -> Request:
    """PUT ``prevExist=false``: NodeExist if the key exists. Not retried."""
    body = _form(_value(value), _ttl(ttl))
    return Request("PUT", _url(key, [("prevExist", "false")]), body, False)


def create_dir_request(key: object, ttl: object = None) -> Request:
    """PUT ``dir=true&prevExist=false``: NodeExist if the key exists. Not retried."""
    query = [("dir", "true"), ("prevExist", "false")]
    return Request("PUT", _url(key, query), _form(None, _ttl(ttl)), False)


def create_in_order_request(directory: object, value: object, ttl: object = None) -> Request:
    """POST a value to a directory: etcd names the new key after its index. Never retried
    after a lost answer (a replay would add a second item)."""
    body = _form(_value(value), _ttl(ttl))
    return Request("POST", _url(directory, []), body, False)


def add_child_dir_request(directory: object, ttl: object = None) -> Request:
    """POST ``dir=true``: a new in-order sub-directory. Not retried."""
    return Request("POST", _url(directory, [("dir", "true")]), _form(None, _ttl(ttl)), False)


def update_request(key: object, value: object, ttl: object = None) -> Request:
    """PUT ``prevExist=true``: KeyNotFound if missing. Idempotent in effect (like set)."""
    body = _form(_value(value), _ttl(ttl))
    return Request("PUT", _url(key, [("prevExist", "true")]), body, True)


def update_dir_request(key: object, ttl: object = None) -> Request:
    """PUT ``dir=true&prevExist=true``: set or clear a directory's TTL. Idempotent in effect.

    etcd 3.5.1 answers it with errorCode 300 (cause ``nodePath ... : Not a file``) for every
    existing directory: see :class:`geetcd.v2.InternalError`.
    """
    query = [("dir", "true"), ("prevExist", "true")]
    return Request("PUT", _url(key, query), _form(None, _ttl(ttl)), True)


def refresh_request(key: object, ttl: object) -> Request:
    """PUT ``refresh=true&prevExist=true`` with a ttl and no value: resets the TTL without
    changing the value (watchers are not woken). Idempotent in effect."""
    checked = _ttl(ttl)
    if checked is None:
        raise InvalidArgument("refresh needs a ttl")
    query = [("refresh", "true"), ("prevExist", "true")]
    return Request("PUT", _url(key, query), _form(None, checked), True)


def compare_and_swap_request(
    key: object,
    value: object,
    ttl: object = None,
    prev_value: object = None,
    prev_index: object = None,
) -> Request:
    """PUT with ``prevValue`` and/or ``prevIndex`` (at least one). Not retried."""
    query = _conditions(prev_value, prev_index, "compare_and_swap")
    body = _form(_value(value), _ttl(ttl))
    return Request("PUT", _url(key, query), body, False)


def compare_and_delete_request(
    key: object, prev_value: object = None, prev_index: object = None
) -> Request:
    """DELETE with ``prevValue`` and/or ``prevIndex`` (at least one). Not retried."""
    query = _conditions(prev_value, prev_index, "compare_and_delete")
    return Request("DELETE", _url(key, query), None, False)


def _conditions(prev_value: object, prev_index: object, what: str) -> list[tuple[str, str]]:
    value = _prev_value(prev_value)
    index = _index(prev_index, "prev_index")
    if value is None and index is None:
        raise InvalidArgument(f"{what} needs prev_value or prev_index (or both)")
    query = []
    if value is not None:
        query.append(("prevValue", value))
    if index is not None:
        query.append(("prevIndex", str(index)))
    return query


def delete_request(key: object, *, recursive: bool = False) -> Request:
    """DELETE a key, or a directory and its contents with ``recursive``. Not retried (a
    replay after a lost answer would report KeyNotFound)."""
    query = [("recursive", "true")] if _flag(recursive, "recursive") else []
    return Request("DELETE", _url(key, query), None, False)


def delete_dir_request(key: object) -> Request:
    """DELETE ``dir=true``: an empty directory only (DirNotEmpty otherwise). Not retried."""
    return Request("DELETE", _url(key, [("dir", "true")]), None, False)


def watch_request(key: object, wait_index: object = None, *, recursive: bool = False) -> Request:
    """GET ``wait=true``: a long poll for the first event at or after ``wait_index``."""
    query = [("wait", "true")]
    index = _index(wait_index, "wait_index")
    if index is not None:
        query.append(("waitIndex", str(index)))
    if _flag(recursive, "recursive"):
        query.append(("recursive", "true"))
    return Request("GET", _url(key, query), None, True)


# ---------------------------------------------------------------------------- answers
def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, item in headers.items():
        if key.lower() == lowered:
            return item
    return None


def index_of(headers: Mapping[str, str], name: str = "X-Etcd-Index") -> int:
    """An integer header (``X-Etcd-Index``, ``X-Raft-Index``, ``X-Raft-Term``); 0 if absent."""
    value = _header(headers, name)
    if value is None or value == "":
        return 0
    try:
        return int(value)
    except ValueError as exc:
        raise MalformedResponse(f"header {name} is not an integer: {value!r:.40}") from exc


def cluster_id_of(headers: Mapping[str, str]) -> int:
    """The ``X-Etcd-Cluster-Id`` header (hex) as an int; 0 if absent."""
    value = _header(headers, "X-Etcd-Cluster-Id")
    if not value:
        return 0
    try:
        return int(value, 16)
    except ValueError as exc:
        raise MalformedResponse(f"X-Etcd-Cluster-Id is not hex: {value!r:.40}") from exc


def _int(obj: Mapping[str, Any], name: str) -> int:
    value = obj.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedResponse(f"{name} is not an integer: {value!r:.40}")
    return value


def _time(text: object) -> _dt.datetime | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise MalformedResponse(f"expiration is not a string: {text!r:.40}")
    try:
        return _dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise MalformedResponse(f"expiration is not RFC 3339: {text!r:.40}") from exc


def parse_node(obj: object) -> Node:
    """A node object (recursively). The root node has no ``key``: it becomes ``"/"``."""
    if not isinstance(obj, dict):
        raise MalformedResponse(f"node is not an object: {obj!r:.60}")
    key = obj.get("key", "/")
    value = obj.get("value")
    if not isinstance(key, str) or (value is not None and not isinstance(value, str)):
        raise MalformedResponse(f"node key/value are not strings: {obj!r:.80}")
    ttl = obj.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int)):
        raise MalformedResponse(f"ttl is not an integer: {ttl!r:.40}")
    children = obj.get("nodes") or ()
    if not isinstance(children, list | tuple):
        raise MalformedResponse(f"nodes is not a list: {children!r:.60}")
    return Node(
        key=key,
        value=value,
        dir=bool(obj.get("dir", False)),
        ttl=ttl,
        expiration=_time(obj.get("expiration")),
        created_index=_int(obj, "createdIndex"),
        modified_index=_int(obj, "modifiedIndex"),
        nodes=tuple(parse_node(child) for child in children),
    )


def parse_response(
    status: int, data: bytes, headers: Mapping[str, str], member: str | None = None
) -> Response:
    """A keys answer: 200/201 become a :class:`Response`; anything else raises the error
    :func:`error_from_answer` returns."""
    if status not in (200, 201):
        raise error_from_answer(status, data, headers, member)
    obj = decode_json(data)
    action = obj.get("action")
    if not isinstance(action, str) or "node" not in obj:
        raise MalformedResponse(f"not a v2 keys answer: {data[:80]!r}", member=member)
    prev = obj.get("prevNode")
    return Response(
        action=action,
        node=parse_node(obj["node"]),
        prev_node=parse_node(prev) if prev is not None else None,
        etcd_index=index_of(headers),
        raft_index=index_of(headers, "X-Raft-Index"),
        raft_term=index_of(headers, "X-Raft-Term"),
    )


def error_from_answer(
    status: int, data: bytes, headers: Mapping[str, str], member: str | None = None
) -> EtcdError:
    """The exception for an error answer (returned, never raised; never raises itself).

    A v2 error object becomes its :mod:`geetcd.v2.errors` class (``index`` falls back on
    ``X-Etcd-Index``); the plain-text ``404 page not found`` of a member without
    ``--enable-v2`` becomes UnsupportedServer; anything else goes through the v3 table
    (502/503/504 are transient).
    """
    text = data.decode("utf-8", "replace").strip()
    try:
        obj = decode_json(data)
    except MalformedResponse:
        obj = None
    if obj is not None and isinstance(obj.get("errorCode"), int):
        index = obj.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or index == 0:
            try:
                index = index_of(headers)
            except MalformedResponse:
                index = 0
        return v2_error(
            obj["errorCode"],
            str(obj.get("message", "")),
            str(obj.get("cause", "")),
            index,
            http_status=status,
            member=member,
        )
    if status == 404 and text.startswith("404 page not found"):
        return UnsupportedServer(
            "the v2 API is not served by this member: etcd 3.4/3.5 need --enable-v2=true, "
            "etcd 3.6 removed it",
            member=member,
            http_status=404,
        )
    return error_from_body(status, data, member)


def _member(obj: object) -> MemberInfo:
    if not isinstance(obj, dict):
        raise MalformedResponse(f"member is not an object: {obj!r:.60}")
    raw_id = obj.get("id", "")
    try:
        member_id = int(str(raw_id), 16)
    except ValueError as exc:
        raise MalformedResponse(f"member id is not hex: {raw_id!r:.40}") from exc
    return MemberInfo(
        id=member_id,
        name=str(obj.get("name", "")),
        peer_urls=tuple(str(u) for u in obj.get("peerURLs") or ()),
        client_urls=tuple(str(u) for u in obj.get("clientURLs") or ()),
    )


def parse_members(data: bytes) -> tuple[MemberInfo, ...]:
    """``GET /v2/members``: ids are hex on the wire, ints here (same as v3's)."""
    members = decode_json(data).get("members") or []
    if not isinstance(members, list):
        raise MalformedResponse(f"members is not a list: {data[:80]!r}")
    return tuple(_member(m) for m in members)


def parse_leader(data: bytes) -> MemberInfo:
    """``GET /v2/members/leader``."""
    return _member(decode_json(data))


def parse_version(data: bytes) -> Version:
    """``GET /version``."""
    obj = decode_json(data)
    return Version(server=str(obj.get("etcdserver", "")), cluster=str(obj.get("etcdcluster", "")))


def parse_stats(data: bytes) -> dict[str, Any]:
    """``GET /v2/stats/*``: the JSON object as etcd sent it."""
    return decode_json(data)
