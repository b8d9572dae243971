"""The one attempt loop: every request of a client, of every kind, runs through
:meth:`Executor.run`: unary v3 calls, v2 calls, stream opens (v3 watch, v2 long polls),
keepalive batches and authentication.

``run(do, ...)`` is Go clientv3's retry interceptor in the shape of redis-py's
``call_with_retry``: for each attempt it picks a member (``ClusterState.pick``, skipping the
members that failed this call), gets the auth headers, counts the attempt in the member's
``inflight`` (seen by every pick policy), calls ``do(attempt)`` and judges the failure by one
set of rules:

* :func:`should_refresh_token`: the one rule for re-authenticating (at most once per call);
* a deterministic answer of etcd (bad argument, compacted, permission...) is raised at once;
* the caller's own budget running out (a timeout cut short by the deadline) raises
  DeadlineExceeded (OutcomeUnknown for a write that was sent) and never benches the member:
  only ``attempt_timeout`` or a real connection failure says that a member is hung;
* a member-level failure benches the member (``ClusterState.mark_failed``) and
  :func:`may_retry` decides whether the call moves on: always for idempotent calls, for
  writes only when the error proves the request was not applied (``retry_safe``) and
  ``Retry.retry_writes_when_safe`` allows it; a write whose request may have been applied
  raises :class:`~geetcd.errors.OutcomeUnknown` chained to the cause;
* one backoff (the call's :class:`~geetcd.config.Retry`) after each full round of members;
* when retries or the deadline run out, the last error is raised (ClusterUnavailable when no
  member was usable at all, DeadlineExceeded when time ran out between attempts).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar

import gevent

from geetcd.cluster import ClusterState, Member, normalize_endpoints
from geetcd.config import Retry, RetryExhausted, check_duration
from geetcd.errors import (
    AuthRequired,
    ClientClosed,
    ClusterUnavailable,
    ConnectionFailed,
    DeadlineExceeded,
    EtcdError,
    InvalidArgument,
    InvalidAuthToken,
    InvalidType,
    MalformedResponse,
    MemberBenched,
    OutcomeUnknown,
    PoolTimeout,
    ResponseTimeout,
    UnsupportedServer,
)
from geetcd.models import Header
from geetcd.protocol.cluster import PROBE_BODY
from geetcd.protocol.codec import decode_json, encode_json
from geetcd.protocol.errors import error_from_body
from geetcd.protocol.kv import RANGE, parse_header
from geetcd.transport import RawResponse, Transport

__all__ = ["Attempt", "Authenticator", "Executor", "may_retry", "should_refresh_token"]

_PROBE_PAYLOAD = encode_json(PROBE_BODY)

T = TypeVar("T")
log = logging.getLogger(__name__)
_monotonic = time.monotonic


class Authenticator(Protocol):
    """What the executor needs from the auth layer (see geetcd.auth)."""

    def headers(self, executor: Executor, deadline: float) -> Mapping[str, str] | None:
        """Headers for the next attempt (None: the transport's defaults)."""

    def invalidate(self, headers: Mapping[str, str] | None) -> None:
        """The token in ``headers`` was rejected: the next headers() authenticates again."""


def check_timeout(value: object, what: str) -> float:
    """Validate a positive, finite number of seconds (see geetcd.config.check_duration)."""
    return check_duration(value, what)


def should_refresh_token(error: BaseException) -> bool:
    """The one rule for re-authenticating: the token was refused (expired or unknown), the
    request went without one (auth turned on since), or a watch was refused with a
    permission error, which is how etcd answers an expired token on a watch stream."""
    return isinstance(error, (InvalidAuthToken, AuthRequired)) or bool(
        getattr(error, "token_suspect", False)
    )


def may_retry(error: EtcdError, idempotent: bool, retry: Retry) -> bool:
    """The one rule for moving a failed attempt to another member: a transient error, and
    either an idempotent call or a request surely not applied (``retry_safe``) while the
    call's Retry allows retrying such writes."""
    if not error.transient:
        return False
    return idempotent or (error.retry_safe and retry.retry_writes_when_safe)


class Attempt:
    """One attempt of a call, given to ``do``: where to send, with which headers, and for
    how long. ``read_timeout`` is ``attempt_timeout`` capped by the call's deadline;
    ``deadline`` (monotonic) is the call's; transports recompute the cap after waiting for a
    connection, so the wait counts against the same deadline."""

    __slots__ = ("connect_timeout", "deadline", "headers", "member", "read_timeout")

    def __init__(
        self,
        member: Member,
        headers: Mapping[str, str] | None,
        connect_timeout: float,
        read_timeout: float,
        deadline: float,
    ) -> None:
        self.member = member
        self.headers = headers
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.deadline = deadline

    def __repr__(self) -> str:
        return f"<Attempt {self.member.url} read_timeout={self.read_timeout:.3f}>"


class Executor:
    """Runs every request of one client. Shared by every greenlet of that client."""

    def __init__(
        self,
        cluster: ClusterState,
        transport: Transport,
        *,
        timeout: float,
        attempt_timeout: float,
        connect_timeout: float,
        retry: Retry,
        api_prefix: str | None = None,
        hedge_delay: float | None = None,
    ) -> None:
        self.cluster = cluster
        self.transport = transport
        self.timeout = check_timeout(timeout, "timeout")
        self.attempt_timeout = check_timeout(attempt_timeout, "attempt_timeout")
        self.connect_timeout = check_timeout(connect_timeout, "connect_timeout")
        self.retry = check_retry(retry)
        self.api_prefix = api_prefix or "/v3"
        self._prefix_fixed = api_prefix is not None
        self.auth: Authenticator | None = None
        # Reads with no answer after hedge_delay seconds are also sent to a second member.
        self.hedge_delay = (
            None if hedge_delay is None else check_timeout(hedge_delay, "hedge_delay")
        )
        self.hedges = 0
        self.closed = False

    def headers(self, deadline: float) -> Mapping[str, str] | None:
        """Request headers for one attempt: the auth token when auth is configured, else None
        (the transport's defaults)."""
        return self.auth.headers(self, deadline) if self.auth is not None else None

    def deadline(self, timeout: object) -> float:
        """The monotonic deadline for a call with per-call ``timeout`` (client default if None).
        InvalidType / InvalidArgument for a wrong-typed, NaN, infinite or non-positive one."""
        if timeout is None:
            return _monotonic() + self.timeout
        return _monotonic() + check_timeout(timeout, "timeout")

    def call(
        self,
        path: str,
        body: dict[str, Any],
        parse: Callable[[dict[str, Any]], T],
        *,
        idempotent: bool,
        timeout: float | None = None,
        retry: Retry | None = None,
        deadline: float | None = None,
    ) -> T:
        """POST ``body`` to ``api_prefix + path`` on a healthy member; return ``parse(json)``.

        Raises the errors described in the module docstring; never returns a partial result.
        An answer whose JSON has the wrong shape raises MalformedResponse.
        """

        def interpret(response: RawResponse, member: Member) -> T:
            if response.status == 200:
                return parse_answer(parse, response.data, member.url)
            raise error_from_body(response.status, response.data, member.url)

        return self.execute(
            "POST",
            path,
            encode_json(body),
            interpret,
            idempotent=idempotent,
            deadline=deadline if deadline is not None else self.deadline(timeout),
            retry=retry,
            v3=True,
        )

    def execute(
        self,
        method: str,
        path: str,
        payload: bytes | None,
        interpret: Callable[[RawResponse, Member], T],
        *,
        idempotent: bool,
        deadline: float,
        retry: Retry | None = None,
        v3: bool = False,
        headers: Mapping[str, str] | None = None,
        endpoint: str | None = None,
    ) -> T:
        """One unary request through :meth:`run`: ``method path`` (prefixed with
        ``api_prefix`` when ``v3``), answered by ``interpret(response, member)``, which returns
        the result or raises an EtcdError for error answers. ``headers`` (v2 only) replace
        the transport's; v3 requests carry the auth token. ``endpoint``: see :meth:`run`.
        """
        retry = check_retry(retry if retry is not None else self.retry)
        transport = self.transport

        def do(attempt: Attempt) -> T:
            member = attempt.member
            response = transport.request(
                member.url,
                method,
                self.api_prefix + path if v3 else path,
                payload,
                connect_timeout=attempt.connect_timeout,
                read_timeout=attempt.read_timeout,
                deadline=attempt.deadline,
                headers=attempt.headers if v3 else headers,
                what=path,
                abandon=member.benched,
            )
            return interpret(response, member)

        if (
            idempotent
            and endpoint is None
            and self.hedge_delay is not None
            and len(self.cluster.members) > 1
        ):
            return self._hedged(do, path, deadline=deadline, retry=retry, auth=v3)
        return self.run(
            do,
            what=path,
            idempotent=idempotent,
            deadline=deadline,
            retry=retry,
            auth=v3,
            endpoint=endpoint,
            gateway=v3,
        )

    def _hedged(
        self,
        do: Callable[[Attempt], T],
        what: str,
        *,
        deadline: float,
        retry: Retry,
        auth: bool,
    ) -> T:
        """Run an idempotent call; if no answer came after ``hedge_delay``, run it again on
        another member and return whichever answers first (the other is abandoned)."""
        assert self.hedge_delay is not None
        first_member: list[Member] = []
        attempt = partial(
            self.run,
            do,
            what=what,
            idempotent=True,
            deadline=deadline,
            retry=retry,
            auth=auth,
            gateway=auth,
        )
        primary = gevent.spawn(attempt, chosen=first_member)
        secondary: gevent.Greenlet[..., T] | None = None
        try:
            primary.join(timeout=min(self.hedge_delay, max(0.0, deadline - _monotonic())))
            if primary.ready():
                return primary.get()
            self.hedges += 1
            secondary = gevent.spawn(attempt, avoid=first_member[:1])
            racers: list[gevent.Greenlet[..., T]] = [primary, secondary]
            while True:
                gevent.joinall(racers, count=1)
                for racer in racers:
                    if racer.ready() and racer.successful():
                        result: T = racer.get()
                        return result
                pending = [r for r in racers if not r.ready()]
                if not pending:
                    failed: T = primary.get()  # both failed: raises the primary's error
                    return failed
                racers = pending
        finally:
            for loser in (primary, secondary):
                if loser is not None and not loser.ready():
                    loser.kill(block=False)

    def run(
        self,
        do: Callable[[Attempt], T],
        *,
        what: str,
        idempotent: bool,
        deadline: float,
        retry: Retry | None = None,
        auth: bool = True,
        endpoint: str | None = None,
        attempt_timeout: float | None = None,
        avoid: Sequence[Member] = (),
        chosen: list[Member] | None = None,
        gateway: bool = False,
    ) -> T:
        """The attempt loop (see the module docstring): returns what ``do(attempt)`` returns
        for the first attempt that succeeds.

        ``auth``: send the client's token (False for authenticate itself and v2).
        ``endpoint``: a member URL: every attempt goes there and only there (no failover;
        the member's failures are raised as they are). ``attempt_timeout`` overrides the
        client's for this call. ``avoid``: members not to try first. ``chosen`` receives each
        member tried. ``gateway``: a 404 without an etcd error body may mean an older
        gateway prefix (/v3beta, /v3alpha): look it up once and retry.
        """
        if self.closed:
            raise ClientClosed()
        retry = retry if retry is not None else self.retry
        per_attempt = self.attempt_timeout if attempt_timeout is None else attempt_timeout
        cluster = self.cluster
        pinned = self._member_at(endpoint) if endpoint is not None else None
        tried: list[Member] = list(avoid)
        token_refreshed = False
        last: EtcdError | None = None
        while True:
            if pinned is not None:
                member = pinned
                if tried:
                    sleep_until(deadline, retry.delay())
            else:
                if len(tried) >= len(cluster.members):
                    # Every member failed this call once already: back off before another round.
                    sleep_until(deadline, retry.delay())
                try:
                    member = cluster.pick(deadline, tried)
                except ClusterUnavailable as exc:
                    if self.closed:
                        raise ClientClosed() from last
                    if last is None:  # no attempt of ours: chain the newest member error seen
                        errors = [m.last_error for m in cluster.members if m.last_error]
                        raise exc from (errors[-1] if errors else None)
                    raise exc from last
            if chosen is not None:
                chosen.append(member)
            headers = self.auth.headers(self, deadline) if auth and self.auth else None
            remaining = deadline - _monotonic()
            if remaining <= 0:
                raise DeadlineExceeded(
                    f"{what}: deadline passed after {len(tried)} attempt(s)"
                ) from last
            capped = remaining < per_attempt
            member.inflight += 1
            started = _monotonic()
            try:
                result = do(
                    Attempt(
                        member,
                        headers,
                        min(self.connect_timeout, remaining),
                        remaining if capped else per_attempt,
                        deadline,
                    )
                )
            except EtcdError as exc:
                error = exc
            else:
                cluster.mark_success(member, _monotonic() - started)
                return result
            finally:
                member.inflight -= 1
            last = error
            if isinstance(error, MemberBenched):
                tried.append(member)  # not sent: no bench, no retry used
                continue
            refresh = auth and self.auth is not None and not token_refreshed
            if refresh and should_refresh_token(error) and self.auth is not None:
                token_refreshed = True
                self.auth.invalidate(headers)
                continue
            missing_gateway = gateway and self._is_missing_gateway(error)
            if missing_gateway and self._switch_prefix(member, deadline):
                continue
            if _budget_ran_out(error, deadline):
                # The caller's deadline, not the member: no bench.
                if isinstance(error, DeadlineExceeded):
                    raise error  # PoolTimeout: never sent
                if idempotent or error.retry_safe:
                    raise DeadlineExceeded(f"{what}: deadline passed ({error.message})") from error
                raise OutcomeUnknown(
                    f"{what} to {member.url} may or may not have been applied: the deadline "
                    f"passed before the answer came",
                    member=member.url,
                ) from error
            if not error.transient:
                raise error
            cluster.mark_failed(member, error)
            if not may_retry(error, idempotent, retry):
                if idempotent or error.retry_safe:
                    raise error  # writes not retried by choice: surely not applied
                raise OutcomeUnknown(
                    f"{what} to {member.url} may or may not have been applied: {error.message}",
                    member=member.url,
                ) from error
            tried.append(member)
            if isinstance(error, MalformedResponse) and len(tried) >= len(cluster.members):
                raise error  # every member answered garbage: not etcd, not worth a deadline
            try:
                retry = retry.increment(error)
            except RetryExhausted:
                raise error from None
            if not idempotent:
                log.debug("retrying %s after %s (never reached the server)", what, error)

    def _member_at(self, endpoint: object) -> Member:
        """The known member at ``endpoint`` (a URL, normalized as endpoints are)."""
        if not isinstance(endpoint, str):
            raise InvalidType(f"endpoint must be a member URL str, got {type(endpoint).__name__}")
        (url,) = normalize_endpoints(endpoint)
        for member in self.cluster.members:
            if member.url == url:
                return member
        known = ", ".join(m.url for m in self.cluster.members)
        raise InvalidArgument(f"endpoint {url} is not a member this client knows ({known})")

    def member_failed(self, member: Member, error: EtcdError) -> None:
        """A stream owner's report that ``member`` failed its stream (benches it)."""
        self.cluster.mark_failed(member, error)

    def close(self) -> None:
        """Every later :meth:`run` raises ClientClosed. Idempotent."""
        self.closed = True

    # ------------------------------------------------------------------ API prefix
    def _is_missing_gateway(self, error: EtcdError) -> bool:
        return (
            not self._prefix_fixed
            and error.http_status == 404
            and error.code is None
            and "page not found" in error.message
        )

    def _switch_prefix(self, member: Member, deadline: float) -> bool:
        """Pick /v3beta or /v3alpha from ``GET /version`` (etcd 3.3 / 3.2). True if changed."""
        remaining = max(0.05, deadline - _monotonic())
        response = self.transport.request(
            member.url,
            "GET",
            "/version",
            None,
            connect_timeout=min(self.connect_timeout, remaining),
            read_timeout=min(self.attempt_timeout, remaining),
            what="/version",
        )
        try:
            version = str(decode_json(response.data).get("etcdcluster", ""))
        except EtcdError:
            version = ""
        parts = version.split(".")
        minor = int(parts[1]) if len(parts) > 1 and parts[0] == "3" and parts[1].isdigit() else -1
        prefix = "/v3beta" if minor == 3 else "/v3alpha" if minor in (0, 1, 2) else None
        if prefix is None or prefix == self.api_prefix:
            raise UnsupportedServer(
                f"{member.url} has no v3 JSON gateway at {self.api_prefix} (cluster version "
                f"{version or 'unknown'})",
                member=member.url,
                http_status=404,
            )
        log.info("etcd cluster version %s: using API prefix %s", version, prefix)
        self.api_prefix = prefix
        return True

    def probe(self, member: Member, timeout: float = 1.0) -> Header:
        """One cheap request to ``member`` only (for the prober); raises on any failure."""
        response = self.transport.request(
            member.url,
            "POST",
            self.api_prefix + RANGE,
            _PROBE_PAYLOAD,
            connect_timeout=timeout,
            read_timeout=timeout,
            what="health probe",
        )
        if response.status != 200:
            error = error_from_body(response.status, response.data, member.url)
            if error.transient:
                raise error
            # A deterministic refusal (auth required, permission) still proves the member
            # is up and has a leader.
            return parse_header(None)
        return parse_header(decode_json(response.data).get("header"))


def sleep_until(deadline: float, seconds: float) -> None:
    """Sleep ``seconds`` but never past ``deadline``."""
    gevent.sleep(max(0.0, min(seconds, deadline - _monotonic())))


def check_retry(retry: object) -> Retry:
    """``retry`` if it is a geetcd.Retry; InvalidType otherwise."""
    if not isinstance(retry, Retry):
        raise InvalidType(f"retry must be a geetcd.Retry, got {type(retry).__name__}")
    return retry


def parse_answer(parse: Callable[[dict[str, Any]], T], data: bytes, url: str) -> T:
    """``parse(json)`` of a 200 answer; an answer of the wrong shape (``{"kvs": "x"}``,
    ``{"header": "ok"}``, ``{"kvs": [null]}``) raises MalformedResponse with the cause."""
    try:
        return parse(decode_json(data))
    except MalformedResponse as exc:
        if exc.member is None:
            exc.member = url  # the codec does not know who answered
        raise
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
        if isinstance(exc, EtcdError):
            raise
        raise MalformedResponse(
            f"answer of unexpected shape: {data[:80]!r} ({type(exc).__name__}: {exc})",
            member=url,
        ) from exc


def _budget_ran_out(error: EtcdError, deadline: float) -> bool:
    """True when ``error`` is a timeout caused by the caller's own deadline: the wait for a
    connection, the connect or the read was cut short by the deadline, which has now passed.
    Such a timeout says nothing about the member, so it never benches it."""
    if isinstance(error, PoolTimeout):
        return True
    if isinstance(error, ConnectionFailed) and "timed out" not in error.message:
        return False
    if not isinstance(error, (ResponseTimeout, ConnectionFailed)):
        return False
    return _monotonic() >= deadline - 0.001
