"""Watch requests and the stream decoder (sans-IO: bytes in, models out).

The gateway's ``/v3/watch`` answers with newline-delimited JSON (ETCD-PROTOCOL.md §3.4):
one ``{"result": {WatchResponse}}`` line per message, and, when the stream fails, one
``{"error": {"grpc_code": .., "http_code": .., "message": ..}}`` object that arrives as the
last chunk *without* a trailing newline. :class:`WatchDecoder` turns raw chunks into
:class:`~geetcd.models.WatchResponse` objects and those errors into (returned, not raised)
:class:`~geetcd.errors.EtcdError` instances.

Gateway quirks handled here: a missing ``watch_id`` is 0, a PUT event has no ``type``, a
DELETE event's ``kv`` has only ``key`` and ``mod_revision``, and the header of a
compaction cancel has no ``revision`` (0 here).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from typing import Any, NamedTuple, TypeAlias

from geetcd.errors import (
    AuthError,
    AuthRequired,
    EtcdError,
    InvalidArgument,
    InvalidAuthToken,
    InvalidType,
    MalformedResponse,
    PermissionDenied,
    WatchCanceled,
    WatchCompacted,
)
from geetcd.models import Event, EventType, WatchResponse
from geetcd.protocol.codec import Keyspace, as_int, b64
from geetcd.protocol.errors import error_from_object
from geetcd.protocol.kv import parse_header, parse_kv

__all__ = [
    "WATCH",
    "WatchBatch",
    "WatchDecoder",
    "WatchFilter",
    "PROGRESS_REQUEST",
    "PROGRESS_WATCH_ID",
    "WatchItem",
    "cancel_body",
    "cancel_error",
    "create_body",
    "decode_message",
    "group_by_revision",
    "normalize_filters",
    "parse_event",
    "parse_watch_response",
]

WATCH = "/watch"

WatchItem: TypeAlias = WatchResponse | EtcdError


class WatchBatch(NamedTuple):
    """The events of one revision, delivered together (a txn's events are never split).

    ``events`` is empty for a progress notification: everything up to ``revision`` has been
    delivered. Unpacks as ``revision, events``.
    """

    revision: int
    events: tuple[Event, ...]


class WatchFilter(enum.Enum):
    """Server-side event filters: NOPUT drops PUT events, NODELETE drops DELETE events."""

    NOPUT = "NOPUT"
    NODELETE = "NODELETE"


def normalize_filters(filters: Iterable[object] | str | WatchFilter | None) -> tuple[str, ...]:
    """Wire names (sorted, unique) for ``"noput"``/``"nodelete"``/enum members.

    Accepts one filter or an iterable of them, case-insensitive strings or
    :class:`WatchFilter` members. Raises InvalidArgument / InvalidType for anything else.
    """
    if filters is None:
        return ()
    if isinstance(filters, (str, WatchFilter)):
        filters = (filters,)
    if not isinstance(filters, Iterable):
        raise InvalidType(f"filters must be a list of 'noput'/'nodelete', got {filters!r}")
    names: set[str] = set()
    for item in filters:
        if isinstance(item, WatchFilter):
            names.add(item.value)
        elif isinstance(item, str):
            name = item.strip().upper()
            if name not in WatchFilter.__members__:
                raise InvalidArgument(f"unknown watch filter {item!r} (use 'noput' or 'nodelete')")
            names.add(name)
        else:
            raise InvalidType(f"a watch filter must be a str or WatchFilter, got {item!r}")
    return tuple(sorted(names))


def create_body(
    key: bytes,
    range_end: bytes | None = None,
    *,
    start_revision: int = 0,
    prev_kv: bool = False,
    filters: tuple[str, ...] = (),
    progress_notify: bool = False,
    watch_id: int = 0,
    fragment: bool = False,
) -> dict[str, Any]:
    """The body of one ``/v3/watch`` request: a single ``create_request``.

    ``key``/``range_end`` are wire bytes (namespace applied); zero values are not sent.
    ``watch_id`` (a multiplexed stream: the client's own ID for this watch, >= 1) and
    ``fragment`` (let the server split a response bigger than its request limit) are for
    WebSocket streams.
    """
    request: dict[str, Any] = {"key": b64(key)}
    if watch_id:
        request["watch_id"] = watch_id
    if fragment:
        request["fragment"] = True
    if range_end is not None:
        request["range_end"] = b64(range_end)
    if start_revision:
        request["start_revision"] = start_revision
    if prev_kv:
        request["prev_kv"] = True
    if filters:
        request["filters"] = list(filters)
    if progress_notify:
        request["progress_notify"] = True
    return {"create_request": request}


def cancel_body(watch_id: int) -> dict[str, Any]:
    """The message canceling watch ``watch_id`` on a multiplexed stream."""
    return {"cancel_request": {"watch_id": watch_id}}


PROGRESS_REQUEST = '{"progress_request":{}}'
"""The message asking a multiplexed stream for a progress answer (``watch_id`` -1)."""

PROGRESS_WATCH_ID = -1
"""The ``watch_id`` of answers that belong to no one watch: a progress answer, or the
refusal of a ``create_request`` (``created`` and ``canceled`` both set)."""


def parse_event(obj: dict[str, Any], ks: Keyspace | None = None) -> Event:
    """One event. A missing ``type`` is PUT; keys are stripped of the namespace."""
    kind = obj.get("type")
    if kind is None or kind in ("PUT", 0):
        etype = EventType.PUT
    elif kind in ("DELETE", 1):
        etype = EventType.DELETE
    else:
        raise MalformedResponse(f"unknown watch event type {kind!r}")
    kv = obj.get("kv")
    if not isinstance(kv, dict):
        raise MalformedResponse(f"watch event without kv: {obj!r:.80}")
    prev = obj.get("prev_kv")
    return Event(etype, parse_kv(kv, ks), parse_kv(prev, ks) if prev else None)


def parse_watch_response(obj: dict[str, Any], ks: Keyspace | None = None) -> WatchResponse:
    """The ``result`` object of one stream line."""
    events = obj.get("events")
    return WatchResponse(
        header=parse_header(obj.get("header")),
        watch_id=as_int(obj.get("watch_id")),
        created=bool(obj.get("created", False)),
        canceled=bool(obj.get("canceled", False)),
        compact_revision=as_int(obj.get("compact_revision")),
        cancel_reason=str(obj.get("cancel_reason") or ""),
        fragment=bool(obj.get("fragment", False)),
        events=tuple(parse_event(e, ks) for e in events) if events else (),
    )


def group_by_revision(events: tuple[Event, ...]) -> list[WatchBatch]:
    """Split one message's events into one WatchBatch per revision, in order.

    Events of one revision (one txn) always stay together; a historical replay may carry
    several revisions in one message.
    """
    if not events:
        return []
    first = events[0].kv.mod_revision
    if events[-1].kv.mod_revision == first:
        return [WatchBatch(first, events)]
    batches: list[WatchBatch] = []
    start = 0
    for i in range(1, len(events)):
        if events[i].kv.mod_revision != events[start].kv.mod_revision:
            batches.append(WatchBatch(events[start].kv.mod_revision, events[start:i]))
            start = i
    batches.append(WatchBatch(events[start].kv.mod_revision, events[start:]))
    return batches


def cancel_error(response: WatchResponse, member: str | None = None) -> EtcdError:
    """The exception for a ``canceled`` message (returned, never raised).

    A ``compact_revision`` gives WatchCompacted; a cancel reason that names an auth problem
    gives InvalidAuthToken, AuthRequired or PermissionDenied (the last two with
    ``token_suspect`` set: see geetcd.errors); anything else WatchCanceled.
    """
    reason = response.cancel_reason
    if response.compact_revision:
        return WatchCompacted(
            f"watch start revision has been compacted (compact_revision="
            f"{response.compact_revision})",
            compact_revision=response.compact_revision,
            member=member,
        )
    lowered = reason.lower()
    if "invalid auth token" in lowered:
        return InvalidAuthToken(f"watch canceled: {reason}", code=16, member=member)
    if "user name is empty" in lowered:
        return AuthRequired(f"watch canceled: {reason}", code=3, member=member)
    suspect: EtcdError | None = None
    if "permission denied" in lowered or "permissiondenied" in lowered:
        suspect = PermissionDenied(f"watch canceled: {reason}", code=7, member=member)
    elif "unauthenticated" in lowered:
        suspect = AuthError(f"watch canceled: {reason}", code=16, member=member)
    if suspect is not None:
        suspect.token_suspect = True  # etcd's answer to an expired token on a watch stream
        return suspect
    return WatchCanceled(
        f"watch canceled by the server: {reason or 'no reason given'}", reason=reason, member=member
    )


class WatchDecoder:
    """Incremental decoder of one watch stream.

    :meth:`feed` takes raw chunks exactly as read from the socket and returns the complete
    items found so far: a WatchResponse per ``result`` line, an EtcdError per stream error
    object (or MalformedResponse for a line that is not a watch message). :meth:`end` is
    called at EOF and decodes what is left without a trailing newline. Never raises.
    """

    __slots__ = ("_ks", "_member", "_pending", "_pending_size")

    def __init__(self, ks: Keyspace | None = None, member: str | None = None) -> None:
        self._ks = ks
        self._member = member
        self._pending: list[bytes] = []
        self._pending_size = 0

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the end of their line."""
        return self._pending_size

    def feed(self, data: bytes) -> list[WatchItem]:
        """Decode every complete line in what was received so far (``data`` appended)."""
        if not data:
            return []
        if b"\n" not in data:
            self._pending.append(data)
            self._pending_size += len(data)
            if data.endswith(b"}") and self._looks_like_error():
                return self._flush_error()
            return []
        if self._pending:
            self._pending.append(data)
            data = b"".join(self._pending)
            self._pending.clear()
        lines = data.split(b"\n")
        rest = lines.pop()
        if rest:
            self._pending.append(rest)
        self._pending_size = len(rest)
        items = [self._decode(line) for line in lines if line.strip()]
        if rest.endswith(b"}") and self._looks_like_error():
            items.extend(self._flush_error())
        return items

    def end(self) -> list[WatchItem]:
        """Decode the bytes left at EOF (the error object has no trailing newline)."""
        if not self._pending:
            return []
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        return [self._decode(data)] if data.strip() else []

    def _looks_like_error(self) -> bool:
        head = self._pending[0].lstrip()
        return head.startswith(b'{"error"')

    def _flush_error(self) -> list[WatchItem]:
        """An error object complete without its newline: emit it now (else keep waiting)."""
        data = b"".join(self._pending)
        try:
            json.loads(data)
        except ValueError:
            return []
        self._pending.clear()
        self._pending_size = 0
        return [self._decode(data)]

    def _decode(self, line: bytes) -> WatchItem:
        return decode_message(line, self._ks, self._member)


def decode_message(
    message: bytes | str, ks: Keyspace | None = None, member: str | None = None
) -> WatchItem:
    """One whole stream message (an HTTP stream line, or a WebSocket message): the
    WatchResponse of a ``result``, the EtcdError of an ``error`` object, or a
    MalformedResponse for anything else (returned, never raised)."""
    try:
        obj = json.loads(message)
    except ValueError as exc:
        malformed = MalformedResponse(
            f"watch stream message is not JSON: {message[:80]!r}", member=member
        )
        malformed.__cause__ = exc
        return malformed
    if not isinstance(obj, dict):
        return MalformedResponse(
            f"watch stream message is not an object: {message[:80]!r}", member=member
        )
    result = obj.get("result")
    if isinstance(result, dict):
        try:
            return parse_watch_response(result, ks)
        except EtcdError as exc:
            exc.member = exc.member or member
            return exc
    error = error_from_object(obj, 200, member)
    if error is not None:
        return error
    return MalformedResponse(
        f"watch stream message has neither result nor error: {message[:80]!r}",
        member=member,
    )
