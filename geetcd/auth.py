"""Authentication: :class:`TokenAuth` (the token sent with every call) and :class:`AuthAdmin`
(``client.auth``: enable/disable auth, users, roles and permissions).

Token auth, as etcd 3.5 does it over the gateway (ETCD-PROTOCOL.md §3.6):

* ``POST /v3/auth/authenticate {"name", "password"}`` answers ``{"token": ...}``; the token is
  sent as ``Authorization: <token>`` (bare, no "Bearer") and expires after ``--auth-token-ttl``
  seconds without use;
* an expired or unknown token is a 401 InvalidAuthToken, which the request loop answers by
  :meth:`TokenAuth.invalidate` and one retry (the request was rejected before being applied);
* after ``auth/disable`` *any* Authorization header is a 401, so the client must stop sending
  one: authenticating then answers "authentication is not enabled" and :class:`TokenAuth`
  sends no header until auth looks enabled again (see :class:`TokenAuth`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import gevent.event

from geetcd._executor import Attempt, Request, parse_answer
from geetcd.cluster import Member
from geetcd.errors import (
    AuthFailed,
    AuthNotEnabled,
    DeadlineExceeded,
    InvalidArgument,
    InvalidType,
    MalformedResponse,
)
from geetcd.models import Header
from geetcd.protocol.codec import as_int, b64, encode_json, prefix_end, unb64
from geetcd.protocol.errors import error_from_body
from geetcd.protocol.kv import check_bool, parse_header
from geetcd.transport import RawResponse

if TYPE_CHECKING:
    from geetcd._executor import Executor
    from geetcd.core_api import CoreAPI
    from geetcd.protocol.codec import Keyspace

__all__ = ["AuthAdmin", "AuthStatus", "Permission", "TokenAuth"]

_monotonic = time.monotonic

AUTHENTICATE: Final = "/auth/authenticate"
_PERM_TO_WIRE: Final = {"read": "READ", "write": "WRITE", "readwrite": "READWRITE"}
# Responses omit the zero value, so a permission without "permType" is READ.
_PERM_FROM_WIRE: Final = {
    None: "read",
    0: "read",
    "READ": "read",
    1: "write",
    "WRITE": "write",
    2: "readwrite",
    "READWRITE": "readwrite",
}


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidType(f"{what} must be a str, got {type(value).__name__}")
    if not value:
        raise InvalidArgument(f"{what} must not be empty")
    return value


class TokenAuth:
    """Gets, caches and refreshes the auth token of one client. Greenlet-safe.

    Guarantees, for any number of greenlets calling :meth:`headers` at once:

    * **one authentication at a time** (single flight): when the token is missing or was
      invalidated, the first caller authenticates and the others wait for its result, each
      bounded by its own deadline (DeadlineExceeded when it passes first). If the first caller
      dies or fails on a member-level error, a waiting caller authenticates instead;
    * **wrong credentials** raise :class:`~geetcd.errors.AuthFailed` to every waiting caller,
      and the failure is remembered for ``failure_ttl`` seconds: callers in that window get
      AuthFailed at once, without another authenticate request;
    * **auth disabled on the server** ("authentication is not enabled"): :meth:`headers`
      returns None (no Authorization header, which a server without auth would reject) until
      either :meth:`invalidate` is called with headers that carried no token (a request or
      watch without token was refused, so auth is probably back on), or ``recheck_interval``
      seconds have passed; then the next caller tries to authenticate again (the others keep
      sending no header meanwhile). Until then, if another client turned auth back on, calls
      raise AuthRequired (the request loop retries only InvalidAuthToken).

    ``authentications`` counts the authenticate requests sent (for tests and monitoring).
    """

    def __init__(
        self,
        user: object,
        password: object,
        *,
        failure_ttl: float = 1.0,
        recheck_interval: float = 5.0,
    ) -> None:
        self.user = _check_name(user, "user")
        if not isinstance(password, str):
            raise InvalidType(f"password must be a str, got {type(password).__name__}")
        self._password = password
        self.failure_ttl = failure_ttl
        self.recheck_interval = recheck_interval
        self.authentications = 0
        self._token: str | None = None
        self._headers: dict[str, str] | None = None
        self._disabled = False
        self._recheck_at = 0.0
        self._failure: AuthFailed | None = None
        self._failure_until = 0.0
        self._flight: gevent.event.Event | None = None

    def __repr__(self) -> str:
        return (
            f"<TokenAuth user={self.user!r} state={self.state} "
            f"authentications={self.authentications}>"
        )

    @property
    def state(self) -> str:
        """One of "token" (holding one), "disabled" (server auth off), "failed" (wrong
        credentials, cached) or "none" (authenticates on the next call). No I/O."""
        if self._headers is not None:
            return "token"
        if self._disabled:
            return "disabled"
        if self._failure is not None and _monotonic() < self._failure_until:
            return "failed"
        return "none"

    def set_password(self, password: str) -> None:
        """Use ``password`` from the next authentication on (the current token is kept)."""
        if not isinstance(password, str):
            raise InvalidType(f"password must be a str, got {type(password).__name__}")
        self._password = password
        self._failure = None

    # ------------------------------------------------------------------ executor protocol
    def headers(self, executor: Executor, deadline: float) -> Mapping[str, str] | None:
        """The headers for the next request: the transport defaults plus ``Authorization``.

        Returns the same dict object for as long as the token is valid (no allocation per
        call), or None while auth is disabled on the server. Authenticates first when there is
        no token (see the class docstring). Raises AuthFailed, DeadlineExceeded,
        ClusterUnavailable, TLSError or another EtcdError from the authenticate request.
        """
        headers = self._headers
        if headers is not None:
            return headers
        return self._wait_or_lead(executor, deadline)

    def invalidate(self, headers: Mapping[str, str] | None) -> None:
        """A request sent with ``headers`` was refused for its token. Never raises.

        Drops the token only if it is still the one in ``headers`` (a late rejection of an
        old token keeps the fresh one). Headers without a token mean auth may be back on: the
        "disabled" state ends and the next :meth:`headers` authenticates.
        """
        token = headers.get("Authorization") if headers is not None else None
        if token is None:
            self._disabled = False
            self._recheck_at = 0.0
        elif token == self._token:
            self._token = None
            self._headers = None

    # ------------------------------------------------------------------ single flight
    def _wait_or_lead(self, executor: Executor, deadline: float) -> Mapping[str, str] | None:
        while True:
            headers = self._headers
            if headers is not None:
                return headers
            now = _monotonic()
            flight = self._flight
            if self._disabled and (now < self._recheck_at or flight is not None):
                return None
            failure = self._failure
            if failure is not None and now < self._failure_until:
                raise AuthFailed(
                    failure.message,
                    code=failure.code,
                    http_status=failure.http_status,
                    member=failure.member,
                ) from failure
            if flight is None:
                return self._lead(executor, deadline)
            remaining = deadline - now
            if remaining <= 0 or not flight.wait(remaining):
                raise DeadlineExceeded(
                    f"authentication as {self.user!r} did not finish before the deadline"
                )

    def _lead(self, executor: Executor, deadline: float) -> Mapping[str, str] | None:
        flight = self._flight = gevent.event.Event()
        try:
            return self._authenticate(executor, deadline)
        finally:
            # Also when this greenlet is killed: a waiter then authenticates instead.
            self._flight = None
            flight.set()

    def _authenticate(self, executor: Executor, deadline: float) -> Mapping[str, str] | None:
        """Send authenticate the one way every request is sent (:meth:`Executor.send`:
        failover, backoff and in-flight accounting as for every call; no token of course:
        ``auth=False``). ``authentications`` counts its attempts."""
        body = encode_json({"name": self.user, "password": self._password})

        def count(_attempt: Attempt) -> None:
            self.authentications += 1

        def interpret(response: RawResponse, member: Member) -> str:
            if response.status != 200:
                raise error_from_body(response.status, response.data, member.url)
            token = parse_answer(lambda obj: obj.get("token"), response.data, member.url)
            if not isinstance(token, str) or not token:
                raise MalformedResponse("authenticate answered no token", member=member.url)
            return token

        try:
            token = executor.send(
                Request(
                    AUTHENTICATE,
                    body,
                    interpret,
                    idempotent=True,
                    deadline=deadline,
                    name="authenticate",
                    auth=False,
                    hedge=False,
                    on_attempt=count,
                )
            )
        except AuthNotEnabled:
            self._token = self._headers = None
            self._disabled = True
            self._recheck_at = _monotonic() + self.recheck_interval
            return None
        except AuthFailed as exc:
            self._failure = exc
            self._failure_until = _monotonic() + self.failure_ttl
            raise
        headers = {**executor.transport.headers, "Authorization": token}
        self._token, self._headers = token, headers
        self._disabled = False
        self._failure = None
        return headers


# ---------------------------------------------------------------------- admin API
@dataclass(frozen=True, slots=True)
class AuthStatus:
    """Whether auth is enabled, and the revision of the auth store (bumped by every change)."""

    enabled: bool
    auth_revision: int
    header: Header


@dataclass(frozen=True, slots=True)
class Permission:
    """A role's permission on ``key`` (one key) or on ``[key, range_end)``.

    ``perm`` is "read", "write" or "readwrite". Keys are bytes in the client's namespace
    (stripped of it); ``range_end`` is None for a single key, ``b"\\0"`` for "to the end" of
    the namespace (or key space). ``prefix`` is True when the range is every key starting with
    ``key``.
    """

    perm: str
    key: bytes
    range_end: bytes | None = None
    prefix: bool = False


def _header(obj: dict[str, Any]) -> Header:
    return parse_header(obj.get("header"))


def _names(field: str) -> Callable[[dict[str, Any]], list[str]]:
    def parse(obj: dict[str, Any]) -> list[str]:
        values = obj.get(field) or []
        if not isinstance(values, list):
            raise MalformedResponse(f"{field} is not a list: {values!r:.60}")
        return [str(v) for v in values]

    return parse


def _parse_status(obj: dict[str, Any]) -> AuthStatus:
    return AuthStatus(
        enabled=obj.get("enabled") is True,
        auth_revision=as_int(obj.get("authRevision")),
        header=_header(obj),
    )


def _parse_permission(obj: dict[str, Any], ks: Keyspace) -> Permission:
    perm = _PERM_FROM_WIRE.get(obj.get("permType"))
    if perm is None:
        raise MalformedResponse(f"unknown permType {obj.get('permType')!r:.30}")
    wire_key = unb64(obj.get("key") or "")
    wire_end = unb64(obj.get("range_end") or "") or None
    ns = ks.prefix
    is_prefix = wire_end is not None and wire_end == prefix_end(wire_key)
    if wire_end is None:
        end = None
    elif ns and wire_end == prefix_end(ns):
        end = b"\0"
    elif wire_end.startswith(ns):
        end = wire_end[len(ns) :]
    else:
        end = wire_end
    key = ks.unkey(wire_key) if wire_key.startswith(ns) else wire_key
    return Permission(perm=perm, key=key, range_end=end, prefix=is_prefix)


class AuthAdmin:
    """The auth admin API on a core (``client.auth``): every method is one call to etcd.

    Names are non-empty ``str``; invalid arguments raise InvalidArgument / InvalidType before
    anything is sent. Errors of etcd come as geetcd errors: FailedPrecondition for "user name
    already exists", "role not found", "root user does not exist" and the like,
    PermissionDenied for a non-root caller, AuthNotEnabled, etc. Changes (``*_add``,
    ``*_delete``, revoke) are not retried once sent (OutcomeUnknown if the answer is lost);
    reads, enable/disable, grants and password changes are retried like reads.
    """

    __slots__ = ("_core", "_owner")

    def __init__(self, core: CoreAPI, owner: object = None) -> None:
        self._core = core
        self._owner = core if owner is None else owner  # what the repr names (the client)

    def __repr__(self) -> str:
        return f"<AuthAdmin of {self._owner!r}>"

    def _call(
        self,
        path: str,
        body: dict[str, Any],
        parse: Callable[[dict[str, Any]], Any],
        idempotent: bool,
        timeout: float | None,
    ) -> Any:
        return self._core.call(path, body, parse, idempotent, timeout, None)

    # ------------------------------------------------------------------ auth on/off
    def enable(self, *, timeout: float | None = None) -> Header:
        """Turn auth on. Needs a user "root" holding the role "root" (else FailedPrecondition).

        This client authenticates on its next call if it has credentials (other clients that
        saw auth disabled notice after their ``recheck_interval``, see TokenAuth)."""
        header: Header = self._call("/auth/enable", {}, _header, True, timeout)
        auth = self._core.executor.auth
        if isinstance(auth, TokenAuth):
            auth.invalidate(None)
        return header

    def disable(self, *, timeout: float | None = None) -> Header:
        """Turn auth off (as root). This client then stops sending its token."""
        header: Header = self._call("/auth/disable", {}, _header, True, timeout)
        return header

    def status(self, *, timeout: float | None = None) -> AuthStatus:
        """Whether auth is enabled (needs root when it is)."""
        status: AuthStatus = self._call("/auth/status", {}, _parse_status, True, timeout)
        return status

    # ------------------------------------------------------------------ users
    def user_add(self, name: str, password: str, *, timeout: float | None = None) -> Header:
        """Create user ``name`` with ``password`` (FailedPrecondition if it exists)."""
        body = {"name": _check_name(name, "name"), "password": _check_name(password, "password")}
        header: Header = self._call("/auth/user/add", body, _header, False, timeout)
        return header

    def user_delete(self, name: str, *, timeout: float | None = None) -> Header:
        """Delete user ``name`` (FailedPrecondition if it does not exist)."""
        body = {"name": _check_name(name, "name")}
        header: Header = self._call("/auth/user/delete", body, _header, False, timeout)
        return header

    def user_get(self, name: str, *, timeout: float | None = None) -> list[str]:
        """The roles granted to user ``name``."""
        body = {"name": _check_name(name, "name")}
        roles: list[str] = self._call("/auth/user/get", body, _names("roles"), True, timeout)
        return roles

    def user_list(self, *, timeout: float | None = None) -> list[str]:
        """Every user name."""
        users: list[str] = self._call("/auth/user/list", {}, _names("users"), True, timeout)
        return users

    def user_change_password(
        self, name: str, password: str, *, timeout: float | None = None
    ) -> Header:
        """Set the password of ``name``. When ``name`` is this client's own user, the client
        re-authenticates with the new password from then on."""
        body = {"name": _check_name(name, "name"), "password": _check_name(password, "password")}
        header: Header = self._call("/auth/user/changepw", body, _header, True, timeout)
        auth = self._core.executor.auth
        if isinstance(auth, TokenAuth) and auth.user == name:
            auth.set_password(password)
        return header

    def user_grant_role(self, user: str, role: str, *, timeout: float | None = None) -> Header:
        """Grant ``role`` to ``user`` (granting it again is a no-op)."""
        body = {"user": _check_name(user, "user"), "role": _check_name(role, "role")}
        header: Header = self._call("/auth/user/grant", body, _header, True, timeout)
        return header

    def user_revoke_role(self, user: str, role: str, *, timeout: float | None = None) -> Header:
        """Revoke ``role`` from ``user`` (FailedPrecondition if it was not granted)."""
        body = {"name": _check_name(user, "user"), "role": _check_name(role, "role")}
        header: Header = self._call("/auth/user/revoke", body, _header, False, timeout)
        return header

    # ------------------------------------------------------------------ roles
    def role_add(self, name: str, *, timeout: float | None = None) -> Header:
        """Create role ``name`` (FailedPrecondition if it exists)."""
        body = {"name": _check_name(name, "name")}
        header: Header = self._call("/auth/role/add", body, _header, False, timeout)
        return header

    def role_delete(self, name: str, *, timeout: float | None = None) -> Header:
        """Delete role ``name`` (FailedPrecondition if it does not exist)."""
        body = {"role": _check_name(name, "name")}
        header: Header = self._call("/auth/role/delete", body, _header, False, timeout)
        return header

    def role_get(self, name: str, *, timeout: float | None = None) -> list[Permission]:
        """The permissions of role ``name``, keys relative to this client's namespace."""
        body = {"role": _check_name(name, "name")}
        ks = self._core.ks

        def parse(obj: dict[str, Any]) -> list[Permission]:
            perms = obj.get("perm") or []
            if not isinstance(perms, list):
                raise MalformedResponse(f"perm is not a list: {perms!r:.60}")
            return [_parse_permission(p, ks) for p in perms]

        permissions: list[Permission] = self._call("/auth/role/get", body, parse, True, timeout)
        return permissions

    def role_list(self, *, timeout: float | None = None) -> list[str]:
        """Every role name."""
        roles: list[str] = self._call("/auth/role/list", {}, _names("roles"), True, timeout)
        return roles

    def role_grant_permission(
        self,
        role: str,
        key: str | bytes,
        range_end: str | bytes | None = None,
        *,
        prefix: bool = False,
        perm: str = "readwrite",
        timeout: float | None = None,
    ) -> Header:
        """Allow ``role`` to ``perm`` ("read", "write" or "readwrite") ``key``, or
        ``[key, range_end)``, or every key starting with ``key`` (``prefix=True``; an empty
        key then means the whole namespace). Keys are in this client's namespace."""
        perm_type = _PERM_TO_WIRE.get(perm) if isinstance(perm, str) else None
        if perm_type is None:
            raise InvalidArgument(f"perm must be 'read', 'write' or 'readwrite', got {perm!r}")
        wire, end = self._core.ks.span(key, range_end, check_bool(prefix, "prefix"))
        grant: dict[str, Any] = {"permType": perm_type, "key": b64(wire)}
        if end is not None:
            grant["range_end"] = b64(end)
        body = {"name": _check_name(role, "role"), "perm": grant}
        header: Header = self._call("/auth/role/grant", body, _header, True, timeout)
        return header

    def role_revoke_permission(
        self,
        role: str,
        key: str | bytes,
        range_end: str | bytes | None = None,
        *,
        prefix: bool = False,
        timeout: float | None = None,
    ) -> Header:
        """Remove the permission of ``role`` on exactly this key / range / prefix (as it was
        granted); FailedPrecondition if the role has no such permission."""
        wire, end = self._core.ks.span(key, range_end, check_bool(prefix, "prefix"))
        body: dict[str, Any] = {"role": _check_name(role, "role"), "key": b64(wire)}
        if end is not None:
            body["range_end"] = b64(end)
        header: Header = self._call("/auth/role/revoke", body, _header, False, timeout)
        return header
