"""Every exception geetcd raises, under one root, :class:`EtcdError`.

The tree::

    EtcdError
    ├── InvalidArgument (ValueError)      bad input; raised before sending, or etcd's code 3
    │   ├── InvalidType (TypeError)       a key/value/option of the wrong Python type
    │   ├── RequestTooLarge               value/request over the server's limit
    │   ├── TooManyOperations             more than the server's txn op limit (128)
    │   └── KeyNotFound                   put(ignore_value=True) on a missing key
    ├── RevisionError
    │   ├── CompactedRevision             .compact_revision when known
    │   └── FutureRevision
    ├── LeaseError
    │   ├── LeaseNotFound
    │   ├── LeaseExists
    │   └── LeaseTTLTooLarge (InvalidArgument)
    ├── AuthError
    │   ├── AuthFailed                    wrong user name or password
    │   ├── AuthRequired                  auth is on and no credentials were given
    │   ├── InvalidAuthToken              expired / unknown token (retried once after re-auth)
    │   ├── PermissionDenied
    │   └── AuthNotEnabled
    ├── QuotaExceeded                     NOSPACE alarm: the database is full
    ├── ServerError                       any other answer from etcd (.code, .http_status)
    │   ├── FailedPrecondition / NotFound
    │   └── UnsupportedServer             no usable v3 gateway on this member
    │       └── WebSocketRefused          a WebSocket upgrade was answered with plain HTTP
    ├── MalformedResponse                 etcd answered something this client cannot parse
    ├── UnavailableError                  a member-level failure; another member may succeed
    │   ├── ConnectionFailed              could not connect: the request surely never arrived
    │   ├── MemberBenched                 benched while the request waited: not sent
    │   ├── MemberSilent                  a read moved off a member judged silent (outlier)
    │   ├── ConnectionLost                the connection broke after the request was sent
    │   ├── ResponseTimeout               sent, but no answer within the attempt timeout
    │   ├── NoLeader                      the member has no leader (rejected before applying)
    │   ├── RequestTimedOut               etcd gave up waiting for consensus (outcome unknown)
    │   └── TooManyRequests               etcd shed the request (not applied)
    ├── TLSError                          certificate / handshake failure (never retried)
    ├── ClusterUnavailable                no member could serve before the deadline (.errors)
    │   └── ClientClosed                  the client was closed
    ├── DeadlineExceeded (TimeoutError)   the caller's deadline passed
    │   └── PoolTimeout                   every pooled connection stayed busy until the deadline
    ├── OutcomeUnknown                    a write may or may not have been applied
    ├── ClusterMismatch                   a member belongs to a different cluster id
    ├── WatchError
    │   ├── WatchCompacted (CompactedRevision)   the watch's revision was compacted
    │   ├── WatchOverflow                 the subscriber fell too far behind
    │   └── WatchCanceled                 the server canceled the watch (.reason)
    └── CoordinationError                 a lock / election / STM recipe (geetcd.recipes) failed
        ├── NotLeader                     proclaim() by an Election that is not the leader
        └── STMConflict                   an STM transaction conflicted on every allowed try

Every exception carries ``code`` (gRPC code or None), ``http_status`` (or None) and ``member``
(the endpoint URL that answered, or None). Two class attributes drive the request loop:

* ``transient``: the member failed, not the request; another member may succeed.
* ``retry_safe``: the request was surely not applied, so even a write may be retried.

One more tells long-lived owners (watch streams, the keepalive, v2 watches) what to do:

* ``waited_out``: no member served within the time given (ClusterUnavailable,
  DeadlineExceeded; never ClientClosed); an owner with no deadline of its own waits it out
  and tries again.
* ``permanent``: no retry, wait or other member can help: the request, the credentials or the
  TLS set-up is wrong (InvalidArgument, AuthError, TLSError); an owner ends and reports it.

``token_suspect`` (False unless set on the instance) marks an error that may mean an expired
token although its class says otherwise: a watch canceled with "permission denied" is how
etcd answers an expired token on a watch stream. The attempt loop re-authenticates once.

:func:`error_from_status` is the one table from (HTTP status, gRPC code, message) to class.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "AuthError",
    "AuthFailed",
    "AuthNotEnabled",
    "AuthRequired",
    "ClientClosed",
    "ClusterMismatch",
    "ClusterUnavailable",
    "CompactedRevision",
    "ConnectionFailed",
    "ConnectionLost",
    "CoordinationError",
    "DeadlineExceeded",
    "EtcdError",
    "FailedPrecondition",
    "FutureRevision",
    "InvalidArgument",
    "InvalidAuthToken",
    "InvalidType",
    "KeyNotFound",
    "LeaseError",
    "LeaseExists",
    "LeaseNotFound",
    "LeaseTTLTooLarge",
    "MemberBenched",
    "MemberSilent",
    "MalformedResponse",
    "NoLeader",
    "NotLeader",
    "NotFound",
    "OutcomeUnknown",
    "PermissionDenied",
    "PoolTimeout",
    "QuotaExceeded",
    "RequestTimedOut",
    "RequestTooLarge",
    "ResponseTimeout",
    "RevisionError",
    "STMConflict",
    "ServerError",
    "TLSError",
    "TooManyOperations",
    "TooManyRequests",
    "UnavailableError",
    "UnsupportedServer",
    "WatchCanceled",
    "WatchCompacted",
    "WatchError",
    "WatchOverflow",
    "error_from_status",
]


class EtcdError(Exception):
    """Root of every geetcd exception.

    ``message`` is the human text (etcd's own message when etcd answered); ``code`` the gRPC
    status code etcd sent, ``http_status`` the HTTP status, ``member`` the endpoint involved.
    """

    transient: bool = False
    retry_safe: bool = False
    waited_out: bool = False
    permanent: bool = False
    token_suspect: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        member: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        self.member = member

    def __str__(self) -> str:
        parts = [self.message]
        if self.member:
            parts.append(f"member={self.member}")
        if self.http_status is not None:
            parts.append(f"http={self.http_status}")
        if self.code is not None:
            parts.append(f"code={self.code}")
        return parts[0] if len(parts) == 1 else f"{parts[0]} ({', '.join(parts[1:])})"


class InvalidArgument(EtcdError, ValueError):
    """The request is invalid: raised before sending for caller mistakes, or etcd's code 3."""

    permanent = True


class InvalidType(InvalidArgument, TypeError):
    """An argument has the wrong Python type (for example an int where a key is expected)."""


class RequestTooLarge(InvalidArgument):
    """The request (usually the value) is larger than the server accepts (1.5 MiB default)."""


class TooManyOperations(InvalidArgument):
    """A transaction holds more operations than the server allows (128 by default)."""


class KeyNotFound(InvalidArgument):
    """An operation that needs an existing key (``put(ignore_value=True)``) found none."""


class RevisionError(EtcdError):
    """A revision argument is outside the range the server keeps."""


class CompactedRevision(RevisionError):
    """The requested revision has been compacted away. ``compact_revision`` when known."""

    def __init__(
        self,
        message: str,
        *,
        compact_revision: int | None = None,
        code: int | None = None,
        http_status: int | None = None,
        member: str | None = None,
    ) -> None:
        super().__init__(message, code=code, http_status=http_status, member=member)
        self.compact_revision = compact_revision


class FutureRevision(RevisionError):
    """The requested revision is newer than the store's current revision."""


class LeaseError(EtcdError):
    """Base of lease failures."""


class LeaseNotFound(LeaseError):
    """The lease does not exist (expired, revoked, or never granted)."""


class LeaseExists(LeaseError):
    """A lease with the requested ID already exists."""


class LeaseTTLTooLarge(LeaseError, InvalidArgument):
    """The requested TTL exceeds the server's maximum."""


class AuthError(EtcdError):
    """Base of authentication and authorization failures."""

    permanent = True


class AuthFailed(AuthError):
    """Wrong user name or password. Never retried."""


class AuthRequired(AuthError):
    """Authentication is enabled on the server and the client has no credentials."""


class InvalidAuthToken(AuthError):
    """The token is unknown or expired. The request was rejected before being applied."""

    retry_safe = True


class PermissionDenied(AuthError):
    """The authenticated user lacks the permission for this key or operation."""


class AuthNotEnabled(AuthError):
    """An operation that needs auth to be enabled was called while it is disabled."""


class QuotaExceeded(EtcdError):
    """The database is over its space quota: a NOSPACE alarm is active, and every write
    (put, txn with writes, lease grant) is refused until it is disarmed. Reads and deletes
    still work. ``alarm`` is ``"NOSPACE"``; ``str(error)`` names it (etcd's own text, kept
    as ``message``, "database space exceeded", does not). Free space (compact, defragment
    every member), then call ``Client.alarm_disarm()``."""

    def __init__(
        self,
        message: str,
        *,
        alarm: str = "NOSPACE",
        code: int | None = None,
        http_status: int | None = None,
        member: str | None = None,
    ) -> None:
        super().__init__(message, code=code, http_status=http_status, member=member)
        self.alarm = alarm

    def __str__(self) -> str:
        text = super().__str__()
        if self.alarm in text:
            return text
        return f"{self.alarm} alarm active: {text}; compact, defragment, then alarm_disarm()"


class ServerError(EtcdError):
    """etcd answered with an error this client has no more specific class for."""


class FailedPrecondition(ServerError):
    """etcd's code 9 (for example "user name already exists")."""


class NotFound(ServerError):
    """etcd's code 5 for something that is not a lease (a user, a role, a member)."""


class UnsupportedServer(ServerError):
    """The member has no v3 JSON gateway under any known prefix (/v3, /v3beta, /v3alpha)."""


class WebSocketRefused(UnsupportedServer):
    """The member, or a proxy in front of it, answered a WebSocket upgrade with plain HTTP
    (``http_status``). Not retried: with ``streams="websocket"`` the client's watches and
    keepalives fall back to HTTP streams instead (logged once); nothing is lost."""


class MalformedResponse(EtcdError):
    """The member answered with bytes that are not the JSON this client expects.

    Transient (the member is benched), but the request loop tries each member once at most:
    a server that is not etcd (a proxy, another service on the port) would answer the same
    on every retry, so the call fails after one round instead of retrying until its deadline.
    """

    transient = True


class UnavailableError(EtcdError):
    """A member-level failure: the request loop may try another member."""

    transient = True


class ConnectionFailed(UnavailableError):
    """No connection could be made (refused, unreachable, connect timeout).

    The request surely never reached etcd, so retrying it is safe even for writes.
    """

    retry_safe = True


class MemberBenched(UnavailableError):
    """The member was benched by another call while this request waited for one of its
    connections; the request was not sent (the request loop moves it to another member)."""

    retry_safe = True


class MemberSilent(UnavailableError):
    """The member stopped answering while others kept answering (outlier detection,
    :mod:`geetcd.outlier`): an idempotent request waiting on it was moved to another member.
    Only reads (and other idempotent requests) are ever moved; a write waiting on a silent
    member finishes or times out as it would have."""


class ConnectionLost(UnavailableError):
    """The connection broke after the request was sent; etcd may have applied it."""


class ResponseTimeout(UnavailableError):
    """The request was sent but no answer came within the attempt timeout (hung member)."""


class NoLeader(UnavailableError):
    """The member has no leader. The request was rejected before being applied."""

    retry_safe = True


class RequestTimedOut(UnavailableError):
    """etcd timed out waiting for consensus. A write may still have been applied."""


class TooManyRequests(UnavailableError):
    """etcd rejected the request because its apply loop lags; it was not applied."""

    retry_safe = True


class TLSError(EtcdError):
    """TLS failed with a member (unknown CA, hostname mismatch, missing client certificate)."""

    permanent = True


class ClusterUnavailable(EtcdError):
    """No member could serve the request before the caller's deadline.

    ``errors`` maps each member's endpoint to the last error seen from it (or None).
    """

    waited_out = True

    def __init__(self, message: str, *, errors: Mapping[str, BaseException | None]) -> None:
        detail = "; ".join(f"{url}: {err!r}" for url, err in errors.items())
        super().__init__(f"{message} [{detail}]" if detail else message)
        self.errors = dict(errors)


class ClientClosed(ClusterUnavailable):
    """The client was closed: every call made after :meth:`geetcd.Client.close` raises this
    (watches, leases and v2 calls included). A ClusterUnavailable, so code that handled the
    closed case before keeps working."""

    waited_out = False

    def __init__(self, message: str = "the client is closed") -> None:
        super().__init__(message, errors={})


class DeadlineExceeded(EtcdError, TimeoutError):
    """The caller's deadline passed before the call completed."""

    waited_out = True


class PoolTimeout(DeadlineExceeded):
    """Every connection of the member's pool stayed busy until the deadline."""


class OutcomeUnknown(EtcdError):
    """A non-idempotent request may or may not have been applied.

    Raised instead of retrying a write after the request was sent and the answer was lost.
    The cause (``__cause__``) says what happened. Read the key back to find out.
    """


class ClusterMismatch(EtcdError):
    """A member reported a cluster id different from the one this client is bound to."""


class WatchError(EtcdError):
    """Base of watch failures."""


class WatchCompacted(WatchError, CompactedRevision):
    """The watch's start or resume revision has been compacted.

    Re-read the current state and watch again from ``compact_revision`` (or later).
    """


class WatchOverflow(WatchError):
    """The subscriber fell more than its buffer behind. ``last_revision`` was delivered last."""

    def __init__(self, message: str, *, last_revision: int, member: str | None = None) -> None:
        super().__init__(message, member=member)
        self.last_revision = last_revision


class WatchCanceled(WatchError):
    """The server canceled the watch; ``reason`` is its cancel_reason."""

    def __init__(self, message: str, *, reason: str = "", member: str | None = None) -> None:
        super().__init__(message, member=member)
        self.reason = reason


class CoordinationError(EtcdError):
    """Base of the failures of the coordination recipes (locks, elections, STM)."""


class NotLeader(CoordinationError):
    """An Election operation that needs leadership (``proclaim``) was called by a candidate
    that is not, or is no longer, the leader (its key was deleted or its session lost)."""


class STMConflict(CoordinationError):
    """An STM transaction was rerun ``retries`` times and conflicted every time.

    ``attempts`` is the number of times the function ran. Nothing was committed.
    """

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


# (gRPC code, message fragment or None for "any") -> class. First match wins.
_TABLE: tuple[tuple[int, str | None, type[EtcdError]], ...] = (
    (3, "request is too large", RequestTooLarge),
    (3, "too many operations in txn", TooManyOperations),
    (3, "key not found", KeyNotFound),
    (3, "user name is empty", AuthRequired),
    (3, "authentication failed", AuthFailed),
    (3, None, InvalidArgument),
    (5, "lease not found", LeaseNotFound),
    (5, None, NotFound),
    (7, None, PermissionDenied),
    (8, "database space exceeded", QuotaExceeded),
    (8, "larger than max", RequestTooLarge),
    (8, "too many requests", TooManyRequests),
    (9, "lease already exists", LeaseExists),
    (9, "authentication is not enabled", AuthNotEnabled),
    (9, None, FailedPrecondition),
    (11, "has been compacted", CompactedRevision),
    (11, "future revision", FutureRevision),
    (11, "too large lease ttl", LeaseTTLTooLarge),
    (14, "no leader", NoLeader),
    (14, "timed out", RequestTimedOut),
    (14, None, UnavailableError),
    (16, "invalid auth token", InvalidAuthToken),
    (16, None, AuthError),
    (2, "raft: stopped", UnavailableError),  # a member being removed or shutting down
    (2, "server stopped", UnavailableError),
    (2, "deadline exceeded", RequestTimedOut),
    (4, None, RequestTimedOut),
)


def error_from_status(
    http_status: int | None, code: int | None, message: str, *, member: str | None = None
) -> EtcdError:
    """Return (never raise) the exception for one error answer of etcd.

    Matches on the gRPC ``code`` and a lower-cased fragment of ``message``; without a code
    (a proxy's or a plain-text answer) it falls back on the HTTP status. Never raises.
    """
    lowered = message.lower()
    cls: type[EtcdError] = ServerError
    if code is not None:
        for table_code, fragment, candidate in _TABLE:
            if table_code == code and (fragment is None or fragment in lowered):
                cls = candidate
                break
    elif http_status in (502, 503, 504):
        cls = UnavailableError
    return cls(message, code=code, http_status=http_status, member=member)
