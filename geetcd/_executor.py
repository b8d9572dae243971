"""The one way to send: every unary request of a client, of every kind (v3 calls, v2 calls,
keepalive POSTs, authentication, maintenance), is described once as a :class:`Request` and
run by :meth:`Executor.send`; long-lived streams (v3 watches, the WebSocket channel, v2 long
polls) open through the same loop, :meth:`Executor.run`, from the one stream supervisor
(:mod:`geetcd.supervisor`). ``send`` adds what only unary calls have: hedging, the observer's
call record (:mod:`geetcd.observe`), and ``call``/``execute`` build the Request for JSON v3
calls and v2 calls.

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

Every attempt is registered on its member (``Member.waiting``), so outlier detection
(:mod:`geetcd.outlier`) can move a read off a member that went silent, and every attempt of an
observed call is reported to its observers.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

import gevent

from geetcd.cluster import ClusterState, Member, Waiting, normalize_endpoints
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
from geetcd.observe import CallRecord, Observers
from geetcd.protocol.cluster import LINEARIZABLE_PROBE_BODY
from geetcd.protocol.codec import decode_json, encode_json
from geetcd.protocol.errors import error_from_body
from geetcd.protocol.kv import RANGE, parse_header
from geetcd.transport import RawResponse, Transport

__all__ = [
    "Attempt",
    "Authenticator",
    "Executor",
    "Request",
    "call_name",
    "may_retry",
    "should_refresh_token",
]

_PROBE_PAYLOAD = encode_json(LINEARIZABLE_PROBE_BODY)
_DRAIN: Mapping[str, Any] = {"drain": True}
_NO_OPTIONS: Mapping[str, Any] = {}

T = TypeVar("T")
log = logging.getLogger(__name__)
_monotonic = time.monotonic


class Authenticator(Protocol):
    """What the executor needs from the auth layer (see geetcd.auth)."""

    def headers(self, executor: Executor, deadline: float) -> Mapping[str, str] | None:
        """Headers for the next attempt (None: the transport's defaults)."""

    def invalidate(self, headers: Mapping[str, str] | None) -> None:
        """The token in ``headers`` was rejected: the next headers() authenticates again."""


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


class Request(Generic[T]):
    """One unary request, described once and run by :meth:`Executor.send`.

    ``path``: the API path (``/kv/range``; prefixed with the gateway's ``api_prefix`` when
    ``v3``). ``payload``: the body bytes. ``interpret(response, member)`` returns the result
    or raises an EtcdError for an error answer. ``idempotent``: may be sent again anywhere.
    ``deadline``: monotonic, the whole call's. ``retry``: the call's (None: the client's).
    ``name``: the method name observers see (None: from the path). ``http_method``, ``v3``,
    ``headers`` (replace the transport's; v2 only: v3 requests carry the auth token unless
    ``auth`` is False, as authenticate itself is sent). ``on_attempt(attempt)``: told each
    attempt just before it is sent (a counter's hook; must not raise or switch). ``drain``:
    a read-only txn: when an attempt is abandoned (no answer in time, or moved off a silent
    member), its answer is read to its end in the background instead of the connection being
    cut (etcd 3.5.0-3.5.4 panics when a client leaves a read-only txn it is applying).
    ``endpoint``: a member URL the request is pinned to (no failover). ``attempt_timeout``:
    this request's (None: the client's). ``wait_for_answer``: a write that cannot move on
    once sent waits for its answer until the deadline instead of ``attempt_timeout``
    (better a late answer than OutcomeUnknown; for slow admin writes). ``hedge``: an
    idempotent request may be hedged. ``avoid``: members not to try first.
    """

    __slots__ = (
        "attempt_timeout",
        "auth",
        "avoid",
        "deadline",
        "drain",
        "endpoint",
        "headers",
        "hedge",
        "http_method",
        "idempotent",
        "interpret",
        "name",
        "on_attempt",
        "path",
        "payload",
        "retry",
        "v3",
        "wait_for_answer",
    )

    def __init__(
        self,
        path: str,
        payload: bytes | None,
        interpret: Callable[[RawResponse, Member], T],
        *,
        idempotent: bool,
        deadline: float,
        retry: Retry | None = None,
        name: str | None = None,
        http_method: str = "POST",
        v3: bool = True,
        headers: Mapping[str, str] | None = None,
        endpoint: str | None = None,
        attempt_timeout: float | None = None,
        wait_for_answer: bool = False,
        hedge: bool = True,
        avoid: Sequence[Member] = (),
        auth: bool = True,
        on_attempt: Callable[[Attempt], None] | None = None,
        drain: bool = False,
    ) -> None:
        self.path = path
        self.payload = payload
        self.interpret = interpret
        self.idempotent = idempotent
        self.deadline = deadline
        self.retry = retry
        self.name = name
        self.http_method = http_method
        self.v3 = v3
        self.headers = headers
        self.endpoint = endpoint
        self.attempt_timeout = attempt_timeout
        self.wait_for_answer = wait_for_answer
        self.hedge = hedge
        self.avoid = avoid
        self.auth = auth
        self.on_attempt = on_attempt
        self.drain = drain

    def __repr__(self) -> str:
        return f"<Request {self.http_method} {self.path} idempotent={self.idempotent}>"


_CALL_NAMES = {
    "/kv/range": "range",
    "/kv/put": "put",
    "/kv/deleterange": "delete",
    "/kv/txn": "txn",
    "/kv/compaction": "compact",
    "/lease/grant": "lease_grant",
    "/lease/revoke": "lease_revoke",
    "/lease/timetolive": "lease_time_to_live",
    "/lease/leases": "leases",
    "/maintenance/status": "status",
    "/maintenance/transfer-leadership": "move_leader",
    "/cluster/member/list": "member_list",
    "/auth/authenticate": "authenticate",
}


def call_name(path: str, v3: bool = True) -> str:
    """The method name observers see for a request to ``path`` with no name of its own:
    ``/kv/range`` -> ``range``, ``/lease/grant`` -> ``lease_grant``, ``/cluster/member/add``
    -> ``member_add``, ``/auth/user/add`` -> ``auth_user_add``; every v2 path -> ``v2`` (a v2
    path holds a key, which must never become a label). Bounded: paths come from the code."""
    if not v3:
        return "v2"
    known = _CALL_NAMES.get(path)
    if known is not None:
        return known
    parts = [p for p in path.replace("-", "_").split("/") if p]
    if parts and parts[0] in ("kv", "maintenance", "cluster", "lease"):
        parts = parts[1:]
    return "_".join(parts) or "call"


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
        observers: Observers | None = None,
    ) -> None:
        self.cluster = cluster
        self.transport = transport
        self._transport_drains = "drain" in inspect.signature(transport.request).parameters
        self.timeout = check_duration(timeout, "timeout")
        self.attempt_timeout = check_duration(attempt_timeout, "attempt_timeout")
        self.connect_timeout = check_duration(connect_timeout, "connect_timeout")
        self.retry = check_retry(retry)
        self.api_prefix = api_prefix or "/v3"
        self._prefix_fixed = api_prefix is not None
        self.auth: Authenticator | None = None
        # Reads with no answer after hedge_delay seconds are also sent to a second member.
        self.hedge_delay = (
            None if hedge_delay is None else check_duration(hedge_delay, "hedge_delay")
        )
        self.hedges = 0
        self.closed = False
        self.observers = observers if observers is not None else Observers()
        """The observers of this client's calls (shared with the rest of the core)."""

    def headers(self, deadline: float) -> Mapping[str, str] | None:
        """Request headers for one attempt: the auth token when auth is configured, else None
        (the transport's defaults)."""
        return self.auth.headers(self, deadline) if self.auth is not None else None

    def deadline(self, timeout: object) -> float:
        """The monotonic deadline for a call with per-call ``timeout`` (client default if None).
        InvalidType / InvalidArgument for a wrong-typed, NaN, infinite or non-positive one."""
        if timeout is None:
            return _monotonic() + self.timeout
        return _monotonic() + check_duration(timeout, "timeout")

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
        name: str | None = None,
        endpoint: str | None = None,
        attempt_timeout: float | None = None,
        wait_for_answer: bool = False,
        refine: Callable[[EtcdError], EtcdError] | None = None,
        avoid: Sequence[Member] = (),
        hedge: bool = True,
        drain: bool = False,
        records: Sequence[CallRecord] = (),
    ) -> T:
        """POST ``body`` to ``api_prefix + path`` on a healthy member; return ``parse(json)``
        of the 200 answer. A JSON unary v3 call described as a :class:`Request` and given to
        :meth:`send` (see there for every option); ``refine(error)`` may turn an error answer
        into a more precise error before the loop judges it.

        Raises the errors described in the module docstring; never returns a partial result.
        An answer whose JSON has the wrong shape raises MalformedResponse.
        """

        def interpret(response: RawResponse, member: Member) -> T:
            if response.status == 200:
                return parse_answer(parse, response.data, member.url)
            error = error_from_body(response.status, response.data, member.url)
            raise refine(error) if refine is not None else error

        return self.send(
            Request(
                path,
                encode_json(body),
                interpret,
                idempotent=idempotent,
                deadline=deadline if deadline is not None else self.deadline(timeout),
                retry=retry,
                name=name,
                endpoint=endpoint,
                attempt_timeout=attempt_timeout,
                wait_for_answer=wait_for_answer,
                hedge=hedge,
                avoid=avoid,
                drain=drain,
            ),
            records,
        )

    def send(self, request: Request[T], records: Sequence[CallRecord] = ()) -> T:
        """THE way to send a unary request: runs ``request`` through :meth:`run` (hedged when
        it is an idempotent unpinned read and the client has ``hedge_delay``) and returns what
        its ``interpret`` returns for the first attempt that succeeds.

        Observed as one call named ``request.name`` (default: from its path) when an observer
        is attached; ``records``, when given, are the calls this request carries instead (a
        batch: its attempts are reported to each, and the batcher ends them).
        """
        retry = check_retry(request.retry if request.retry is not None else self.retry)
        observers = self.observers
        if records or not observers.active:
            return self._send(request, retry, records)
        name = request.name or call_name(request.path, request.v3)
        record = observers.call_started(name, _monotonic())
        try:
            result = self._send(request, retry, (record,))
        except BaseException as exc:
            observers.call_ended(record, _monotonic(), exc)
            raise
        observers.call_ended(record, _monotonic(), None)
        return result

    def _send(self, request: Request[T], retry: Retry, records: Sequence[CallRecord]) -> T:
        transport = self.transport
        path = request.path
        http_method = request.http_method
        payload = request.payload
        interpret = request.interpret
        v3 = request.v3
        fixed_headers = request.headers

        on_attempt = request.on_attempt
        # Only when asked and known: a transport given to Client(transport=...) may not know it.
        drain_option = _DRAIN if request.drain and self._transport_drains else _NO_OPTIONS

        def do(attempt: Attempt) -> T:
            member = attempt.member
            if on_attempt is not None:
                on_attempt(attempt)
            response = transport.request(
                member.url,
                http_method,
                self.api_prefix + path if v3 else path,  # the prefix may change (etcd 3.3)
                payload,
                connect_timeout=attempt.connect_timeout,
                read_timeout=attempt.read_timeout,
                deadline=attempt.deadline,
                headers=attempt.headers if v3 else fixed_headers,
                what=path,
                abandon=member.benched,
                **drain_option,
            )
            return interpret(response, member)

        attempt_timeout = request.attempt_timeout
        deadline = request.deadline
        if attempt_timeout is None and request.wait_for_answer and not request.idempotent:
            attempt_timeout = max(self.attempt_timeout, deadline - _monotonic())
        auth = v3 and request.auth
        if (
            request.idempotent
            and request.hedge
            and request.endpoint is None
            and self.hedge_delay is not None
            and len(self.cluster.members) > 1
        ):
            return self._hedged(
                do, path, deadline=deadline, retry=retry, auth=auth, records=records
            )
        return self.run(
            do,
            what=path,
            idempotent=request.idempotent,
            deadline=deadline,
            retry=retry,
            auth=auth,
            endpoint=request.endpoint,
            attempt_timeout=attempt_timeout,
            avoid=request.avoid,
            gateway=v3,
            records=records,
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
        name: str | None = None,
    ) -> T:
        """:meth:`send` of a :class:`Request` built from these arguments (v2 keys calls)."""
        return self.send(
            Request(
                path,
                payload,
                interpret,
                idempotent=idempotent,
                deadline=deadline,
                retry=retry,
                http_method=method,
                v3=v3,
                headers=headers,
                endpoint=endpoint,
                name=name,
            )
        )

    def _hedged(
        self,
        do: Callable[[Attempt], T],
        what: str,
        *,
        deadline: float,
        retry: Retry,
        auth: bool,
        records: Sequence[CallRecord] = (),
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
            records=records,
        )
        primary = gevent.spawn(attempt, chosen=first_member)
        secondary: gevent.Greenlet[..., T] | None = None
        try:
            primary.join(timeout=min(self.hedge_delay, max(0.0, deadline - _monotonic())))
            if primary.ready():
                return primary.get()
            self.hedges += 1
            secondary_chosen: list[Member] = []
            secondary = gevent.spawn(attempt, avoid=first_member[:1], chosen=secondary_chosen)
            if records:
                gevent.sleep(0)  # let the secondary pick its member, to report it
                for record in records:
                    member = secondary_chosen[0].url if secondary_chosen else "?"
                    self.observers.hedged(record, member)
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
        records: Sequence[CallRecord] = (),
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
            # Seen by outlier detection (geetcd.outlier); reads may be moved off a silent member.
            waiting = member.waiting
            # A call allowed a longer wait than attempt_timeout (an admin write that may take
            # until its deadline) is patient: outlier detection leaves it alone.
            entry = Waiting(
                started, gevent.getcurrent(), idempotent, per_attempt > self.attempt_timeout
            )
            waiting[entry] = None
            if len(waiting) == 1 and cluster.on_waiting is not None:
                cluster.on_waiting()  # outlier detection runs while attempts wait
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
                if exc.http_status is not None:
                    member.answered_at = _monotonic()  # an answer, if an error one
            else:
                ended = _monotonic()
                member.answered_at = ended
                cluster.mark_success(member, ended - started)
                if records:
                    self._report(records, member, ended - started, None)
                return result
            finally:
                member.inflight -= 1
                entry.done = True
                del waiting[entry]
            last = error
            if self.closed:
                raise ClientClosed() from error  # closing broke it: the member is not at fault
            if isinstance(error, MemberBenched):
                tried.append(member)  # not sent: no bench, no retry used
                continue
            if records:
                self._report(records, member, _monotonic() - started, error)
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

    def _report(
        self,
        records: Sequence[CallRecord],
        member: Member,
        seconds: float,
        error: BaseException | None,
    ) -> None:
        observers = self.observers
        for record in records:
            record.member = member.url
            observers.attempt_ended(record, member.url, seconds, error)

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
        """One cheap request to ``member`` only: a linearizable count-only range sent with
        ``hasleader`` (it proves the member has a leader it can reach, which a serializable
        read does not: a member cut off from its peers, or forwarding to a paused leader,
        still answers those). For the prober, stream liveness and outlier detection; raises
        on any failure."""
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
