"""The errors of etcd's v2 keys API, under :class:`geetcd.EtcdError`.

Every error answer of ``/v2/keys`` carries ``{"errorCode", "message", "cause", "index"}``;
each becomes a :class:`V2Error` with those four fields (``error_code``, ``message``,
``cause``, ``index``) plus ``http_status`` and ``member``. The tree::

    V2Error (EtcdError)
    ├── KeyNotFound (LookupError)                     100  key or directory does not exist
    ├── CompareFailed (FailedPrecondition)            101  prevValue / prevIndex did not match
    │                                                      (alias TestFailed, go-etcd's name)
    ├── NotFile                                       102  a value operation on a directory
    ├── NotDir                                        104  a path goes through a plain key
    ├── NodeExist (FailedPrecondition)                105  create / create_dir on an existing key
    ├── RootReadOnly (InvalidArgument)                107  a write to "/"
    ├── DirNotEmpty                                   108  delete_dir on a directory with children
    ├── V2AuthRequired (AuthRequired)                 110  v2 auth is on and no credentials
    ├── InvalidRequest (InvalidArgument)              2xx  a malformed form / query value
    │   ├── PrevValueRequired                         201
    │   ├── TTLNaN                                    202
    │   ├── IndexNaN                                  203
    │   ├── RefreshValue                              211  a value was sent with refresh
    │   └── RefreshTTLRequired                        212
    ├── RaftInternal (RequestTimedOut: transient)     300  consensus failed ("etcdserver: ...")
    ├── InternalError (ServerError)                   300  any other cause (deterministic)
    ├── LeaderElect (UnavailableError: transient)     301
    ├── WatcherCleared (UnavailableError: transient)  400  the server dropped the watch
    └── EventIndexCleared (WatchCompacted)            401  waitIndex older than the kept history

etcd answers 300 "Raft Internal Error" both when consensus failed (cause
``etcdserver: request timed out``: the member, not the request, is the problem) and when the
v2 store refused the apply with an untyped error (cause ``nodePath /1/x : Not a file ()``, as
etcd 3.5 does for every ``update_dir``). Only the first is transient: the request loop fails
over (reads) or raises :class:`geetcd.OutcomeUnknown` (writes); the second is raised at once.

Codes without a class here become a plain :class:`V2Error`.
"""

from __future__ import annotations

import re

from geetcd.errors import (
    AuthRequired,
    EtcdError,
    FailedPrecondition,
    InvalidArgument,
    RequestTimedOut,
    ServerError,
    UnavailableError,
    WatchCompacted,
)

__all__ = [
    "CompareFailed",
    "DirNotEmpty",
    "EventIndexCleared",
    "IndexNaN",
    "InternalError",
    "InvalidRequest",
    "KeyNotFound",
    "LeaderElect",
    "NodeExist",
    "NotDir",
    "NotFile",
    "PrevValueRequired",
    "RaftInternal",
    "RefreshTTLRequired",
    "RefreshValue",
    "RootReadOnly",
    "TTLNaN",
    "TestFailed",
    "V2AuthRequired",
    "V2Error",
    "WatcherCleared",
    "v2_error",
]


class V2Error(EtcdError):
    """An error answer of the v2 API: ``error_code`` (etcd's errorCode), ``message``,
    ``cause`` (usually the key) and ``index`` (the etcd index when it failed; 0 if unknown)."""

    error_code: int = 0

    def __init__(
        self,
        message: str,
        *,
        error_code: int,
        cause: str = "",
        index: int = 0,
        http_status: int | None = None,
        member: str | None = None,
    ) -> None:
        super().__init__(message, http_status=http_status, member=member)
        self.error_code = error_code
        self.cause = cause
        self.index = index

    def __str__(self) -> str:
        text = f"{self.message}: {self.cause}" if self.cause else self.message
        details = [f"errorCode={self.error_code}", f"index={self.index}"]
        if self.member:
            details.append(f"member={self.member}")
        if self.http_status is not None:
            details.append(f"http={self.http_status}")
        return f"{text} ({', '.join(details)})"


class KeyNotFound(V2Error, LookupError):
    """100: the key (or a directory on its path) does not exist."""


class CompareFailed(V2Error, FailedPrecondition):
    """101: compare_and_swap / compare_and_delete found another value or index.

    ``cause`` shows both sides, e.g. ``[wrong != v2] [1 != 8]``.
    """


TestFailed = CompareFailed
"""go-etcd's name for :class:`CompareFailed` (etcd's ``EcodeTestFailed``)."""


class NotFile(V2Error):
    """102: a value operation (set, delete without dir/recursive, compare) on a directory,
    or set_dir on an existing directory."""


class NotDir(V2Error):
    """104: the key's path goes through a plain key (``/a/b`` while ``/a`` is a value)."""


class NodeExist(V2Error, FailedPrecondition):
    """105: create / create_dir found the key already there."""


class RootReadOnly(V2Error, InvalidArgument):
    """107: the root directory ``/`` cannot be written."""


class DirNotEmpty(V2Error):
    """108: delete_dir on a directory that still has children (use delete(recursive=True))."""


class V2AuthRequired(V2Error, AuthRequired):
    """110: v2 authentication is enabled and the request carried no valid credentials."""


class InvalidRequest(V2Error, InvalidArgument):
    """2xx: etcd rejected a form or query value. Never applied."""


class PrevValueRequired(InvalidRequest):
    """201: an empty prevValue."""


class TTLNaN(InvalidRequest):
    """202: the ttl is not a non-negative integer."""


class IndexNaN(InvalidRequest):
    """203: prevIndex / waitIndex is not a non-negative integer."""


class RefreshValue(InvalidRequest):
    """211: a value was sent together with ``refresh=true``."""


class RefreshTTLRequired(InvalidRequest):
    """212: ``refresh=true`` without a ttl."""


class RaftInternal(V2Error, RequestTimedOut):
    """300 with an ``etcdserver:`` cause: consensus failed (no quorum, leader lost, timeout).

    Transient: reads fail over to another member; a write whose answer this was may or may
    not have been applied, so the request loop raises :class:`geetcd.OutcomeUnknown` for it.
    """


class InternalError(V2Error, ServerError):
    """300 with any other cause: the v2 store refused the request with an untyped error.

    Deterministic (sending it again gives the same answer), so it is raised at once and the
    member is not benched. etcd 3.5 answers every ``update_dir`` this way.
    """


class LeaderElect(V2Error, UnavailableError):
    """301: the cluster is electing a leader. Transient."""


class WatcherCleared(V2Error, UnavailableError):
    """400: the server dropped the watcher (store recovery). Transient: watch again."""


class EventIndexCleared(V2Error, WatchCompacted):
    """401: the waitIndex is older than the 1000 events etcd keeps.

    ``compact_revision`` is the oldest index still kept (parsed from ``cause``, e.g.
    ``the requested history has been cleared [126/5]``; None when absent) and ``index`` the
    current etcd index. Read the key again and wait from ``index + 1``; a persistent
    :class:`geetcd.v2.V2Watch` does that itself and yields a :class:`geetcd.v2.Resync`.
    """


_CLASSES: dict[int, type[V2Error]] = {
    100: KeyNotFound,
    101: CompareFailed,
    102: NotFile,
    104: NotDir,
    105: NodeExist,
    107: RootReadOnly,
    108: DirNotEmpty,
    110: V2AuthRequired,
    201: PrevValueRequired,
    202: TTLNaN,
    203: IndexNaN,
    211: RefreshValue,
    212: RefreshTTLRequired,
    301: LeaderElect,
    400: WatcherCleared,
    401: EventIndexCleared,
}

_CLEARED = re.compile(r"\[(\d+)/\d+\]")
# Causes of a 300 that mean "the member could not get consensus", not "the store refused".
_TRANSIENT_CAUSES = ("etcdserver:", "context deadline exceeded", "context canceled")


def v2_error(
    error_code: int,
    message: str,
    cause: str = "",
    index: int = 0,
    *,
    http_status: int | None = None,
    member: str | None = None,
) -> V2Error:
    """Return (never raise) the exception for one v2 error answer. Never raises."""
    cls: type[V2Error]
    if error_code == 300:
        transient = cause.lower().startswith(_TRANSIENT_CAUSES)
        cls = RaftInternal if transient else InternalError
    elif error_code in _CLASSES:
        cls = _CLASSES[error_code]
    elif 200 <= error_code < 300:
        cls = InvalidRequest
    else:
        cls = V2Error
    error = cls(
        message,
        error_code=error_code,
        cause=cause,
        index=index,
        http_status=http_status,
        member=member,
    )
    if isinstance(error, EventIndexCleared):
        found = _CLEARED.search(cause)
        error.compact_revision = int(found.group(1)) if found else None
    return error
