"""Immutable results of etcd calls: frozen, slotted dataclasses.

Keys and values are ``bytes``; every int64 the gateway sends as a JSON string is an ``int``;
fields etcd omits because they are zero are 0 / False / None / empty tuples here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "DeleteResponse",
    "Event",
    "EventType",
    "Header",
    "KeyValue",
    "LeaseGrant",
    "LeaseInfo",
    "MemberInfo",
    "MemberList",
    "PutResponse",
    "RangeResponse",
    "Status",
    "TxnResponse",
    "OpResponse",
    "WatchResponse",
]


@dataclass(frozen=True, slots=True)
class Header:
    """The response header: which cluster and member answered, at which revision and term."""

    cluster_id: int = 0
    member_id: int = 0
    revision: int = 0
    raft_term: int = 0


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key with its value and metadata. ``lease`` is 0 when the key has no lease."""

    key: bytes
    value: bytes = b""
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    lease: int = 0

    def __repr__(self) -> str:
        value = self.value if len(self.value) <= 32 else self.value[:32] + b"..."
        return (
            f"KeyValue(key={self.key!r}, value={value!r}, mod_revision={self.mod_revision}, "
            f"version={self.version}, lease={self.lease})"
        )


@dataclass(frozen=True, slots=True)
class RangeResponse:
    """``count`` is the total number of keys in the range, not ``len(kvs)`` (see ``more``)."""

    header: Header
    kvs: tuple[KeyValue, ...] = ()
    count: int = 0
    more: bool = False


@dataclass(frozen=True, slots=True)
class PutResponse:
    """``prev_kv`` is set only when asked for and the key existed."""

    header: Header
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class DeleteResponse:
    """``deleted`` keys were removed; ``prev_kvs`` only when asked for."""

    header: Header
    deleted: int = 0
    prev_kvs: tuple[KeyValue, ...] = ()


@dataclass(frozen=True, slots=True)
class TxnResponse:
    """``responses`` are those of the branch that ran (``success`` if ``succeeded``)."""

    header: Header
    succeeded: bool = False
    responses: tuple[OpResponse, ...] = ()


OpResponse: TypeAlias = RangeResponse | PutResponse | DeleteResponse | TxnResponse


@dataclass(frozen=True, slots=True)
class Status:
    """A member's status. ``leader`` is None when the member knows no leader."""

    header: Header
    version: str = ""
    db_size: int = 0
    db_size_in_use: int = 0
    leader: int | None = None
    raft_index: int = 0
    raft_term: int = 0
    raft_applied_index: int = 0
    errors: tuple[str, ...] = ()
    is_learner: bool = False


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """A cluster member as the server lists it. ``client_urls`` are its advertised endpoints."""

    id: int
    name: str = ""
    peer_urls: tuple[str, ...] = ()
    client_urls: tuple[str, ...] = ()
    is_learner: bool = False


@dataclass(frozen=True, slots=True)
class MemberList:
    """The answer of ``/v3/cluster/member/list``."""

    header: Header
    members: tuple[MemberInfo, ...] = ()


class EventType(enum.Enum):
    """The kind of a watch event."""

    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Event:
    """One change. A DELETE's ``kv`` has only ``key`` and ``mod_revision``."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None

    @property
    def revision(self) -> int:
        """The revision at which this change happened (``kv.mod_revision``)."""
        return self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class WatchResponse:
    """One message of a watch stream.

    A message with no events that is neither ``created`` nor ``canceled`` is a progress
    notification: the stream has seen everything up to ``header.revision``.
    """

    header: Header
    watch_id: int = 0
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""
    fragment: bool = False
    events: tuple[Event, ...] = ()

    @property
    def is_progress_notify(self) -> bool:
        """True for a header-only progress message."""
        return not self.events and not self.created and not self.canceled


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    """A granted lease: its ``id`` and the ``ttl`` the server chose (seconds)."""

    header: Header
    id: int
    ttl: int


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """A lease's remaining ``ttl`` (-1 when it does not exist), ``granted_ttl`` and ``keys``."""

    id: int
    ttl: int
    granted_ttl: int = 0
    keys: tuple[bytes, ...] = ()
