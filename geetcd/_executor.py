"""The request loop: one call = Retry x Backoff x ClusterState.pick(), inside one deadline.

For each attempt: pick a member, send, and on failure decide:

* a deterministic answer of etcd (bad argument, compacted, permission...) is raised at once;
* a member-level failure benches the member (ClusterState.mark_failed) and, if the call is
  idempotent or the error proves the request was not applied (``retry_safe``), the call moves
  to another member; a non-idempotent call whose request may have been applied raises
  :class:`~geetcd.errors.OutcomeUnknown` chained to the cause;
* when retries or the deadline run out, the last error is raised (ClusterUnavailable when no
  member was usable at all, DeadlineExceeded when time ran out between attempts).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Protocol, TypeVar

import gevent

from geetcd.cluster import ClusterState, Member
from geetcd.config import Retry, RetryExhausted
from geetcd.errors import (
    AuthRequired,
    ClusterUnavailable,
    DeadlineExceeded,
    EtcdError,
    InvalidArgument,
    InvalidAuthToken,
    OutcomeUnknown,
    UnsupportedServer,
)
from geetcd.models import Header
from geetcd.protocol.cluster import PROBE_BODY
from geetcd.protocol.codec import decode_json, encode_json
from geetcd.protocol.errors import error_from_body
from geetcd.protocol.kv import RANGE, parse_header
from geetcd.transport import RawResponse, Transport

__all__ = ["Authenticator", "Executor"]

_PROBE_PAYLOAD = encode_json(PROBE_BODY)

T = TypeVar("T")
log = logging.getLogger("geetcd.client")
_monotonic = time.monotonic


class Authenticator(Protocol):
    """What the executor needs from the auth layer (see geetcd.auth)."""

    def headers(self, executor: Executor, deadline: float) -> Mapping[str, str] | None:
        """Headers for the next attempt (None: the transport's defaults)."""

    def invalidate(self, headers: Mapping[str, str] | None) -> None:
        """The token in ``headers`` was rejected: the next headers() authenticates again."""


def check_timeout(value: object, what: str) -> float:
    """Validate a positive number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"{what} must be a number of seconds, got {value!r}")
    if value <= 0:
        raise InvalidArgument(f"{what} must be > 0, got {value!r}")
    return float(value)


class Executor:
    """Runs v3 gateway calls for one client. Shared by every greenlet of that client."""

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
        if not isinstance(retry, Retry):
            raise InvalidArgument(f"retry must be a geetcd.Retry, got {retry!r}")
        self.retry = retry
        self.api_prefix = api_prefix or "/v3"
        self._prefix_fixed = api_prefix is not None
        self.auth: Authenticator | None = None
        # Reads with no answer after hedge_delay seconds are also sent to a second member.
        self.hedge_delay = (
            None if hedge_delay is None else check_timeout(hedge_delay, "hedge_delay")
        )
        self.hedges = 0

    def headers(self, deadline: float) -> Mapping[str, str] | None:
        """Request headers for one attempt: the auth token when auth is configured, else None
        (the transport's defaults). Streams (watch, keepalive) must use this too."""
        return self.auth.headers(self, deadline) if self.auth is not None else None

    def deadline(self, timeout: float | None) -> float:
        """The monotonic deadline for a call with per-call ``timeout`` (client default if None)."""
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
        """

        def interpret(response: RawResponse, member: Member) -> T:
            if response.status == 200:
                return parse(decode_json(response.data))
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
    ) -> T:
        """The request loop shared by the v3 and v2 APIs.

        Sends ``method path`` (prefixed with ``api_prefix`` when ``v3``) to a picked member and
        returns ``interpret(response, member)``, which returns the result or raises an
        EtcdError for error answers. Transient errors bench the member and move the call on
        (writes only when ``retry_safe``, else OutcomeUnknown); other errors are raised.
        """
        retry = retry if retry is not None else self.retry
        if not isinstance(retry, Retry):
            raise InvalidArgument(f"retry must be a geetcd.Retry, got {retry!r}")
        if idempotent and self.hedge_delay is not None and len(self.cluster.members) > 1:
            return self._hedged(
                method,
                path,
                payload,
                interpret,
                deadline=deadline,
                retry=retry,
                v3=v3,
                headers=headers,
            )
        return self._loop(
            method,
            path,
            payload,
            interpret,
            idempotent=idempotent,
            deadline=deadline,
            retry=retry,
            v3=v3,
            headers=headers,
        )

    def _hedged(
        self,
        method: str,
        path: str,
        payload: bytes | None,
        interpret: Callable[[RawResponse, Member], T],
        *,
        deadline: float,
        retry: Retry,
        v3: bool,
        headers: Mapping[str, str] | None,
    ) -> T:
        """Send an idempotent call; if no answer came after ``hedge_delay``, send it again to
        another member and return whichever answers first (the other is abandoned)."""
        assert self.hedge_delay is not None
        first_member: list[Member] = []
        attempt = partial(
            self._loop,
            method,
            path,
            payload,
            interpret,
            idempotent=True,
            deadline=deadline,
            retry=retry,
            v3=v3,
            headers=headers,
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

    def _loop(
        self,
        method: str,
        path: str,
        payload: bytes | None,
        interpret: Callable[[RawResponse, Member], T],
        *,
        idempotent: bool,
        deadline: float,
        retry: Retry,
        v3: bool,
        headers: Mapping[str, str] | None,
        avoid: list[Member] | None = None,
        chosen: list[Member] | None = None,
    ) -> T:
        tried: list[Member] = list(avoid) if avoid else []
        auth_retried = False
        last: EtcdError | None = None
        cluster = self.cluster
        transport = self.transport
        while True:
            if len(tried) >= len(cluster.members):
                # Every member failed this call once already: back off before another round.
                sleep_until(deadline, retry.delay())
            try:
                member = cluster.pick(deadline, tried)
            except ClusterUnavailable as exc:
                if last is None:  # no attempt of ours: chain the newest member error seen
                    errors = [m.last_error for m in cluster.members if m.last_error]
                    raise exc from (errors[-1] if errors else None)
                raise exc from last
            remaining = deadline - _monotonic()
            if remaining <= 0:
                raise DeadlineExceeded(
                    f"{path}: deadline passed after {len(tried)} attempt(s)"
                ) from last
            if chosen is not None:
                chosen.append(member)
            sent_headers = headers
            if v3 and self.auth is not None:
                sent_headers = self.auth.headers(self, deadline)
            member.inflight += 1
            started = _monotonic()
            try:
                response = transport.request(
                    member.url,
                    method,
                    self.api_prefix + path if v3 else path,
                    payload,
                    connect_timeout=min(self.connect_timeout, remaining),
                    read_timeout=min(self.attempt_timeout, remaining),
                    pool_timeout=remaining,
                    headers=sent_headers,
                    what=path,
                )
                result = interpret(response, member)
                cluster.mark_success(member, _monotonic() - started)
                return result
            except EtcdError as exc:
                error = exc
            finally:
                member.inflight -= 1
            last = error
            if not error.transient:
                if (
                    v3
                    and isinstance(error, (InvalidAuthToken, AuthRequired))
                    and self.auth is not None
                    and not auth_retried
                ):
                    auth_retried = True
                    self.auth.invalidate(sent_headers)
                    continue
                if v3 and self._is_missing_gateway(error) and self._switch_prefix(member, deadline):
                    continue
                raise error
            cluster.mark_failed(member, error)
            if not idempotent and not error.retry_safe:
                raise OutcomeUnknown(
                    f"{path} to {member.url} may or may not have been applied: {error.message}",
                    member=member.url,
                ) from error
            tried.append(member)
            try:
                retry = retry.increment(error)
            except RetryExhausted:
                raise error from None
            if not idempotent:
                log.debug("retrying %s after %s (never reached the server)", path, error)

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
