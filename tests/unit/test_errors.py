"""The error table (ETCD-PROTOCOL.md §3.1), both error-body shapes, and how the request loop
acts on the ``transient`` / ``retry_safe`` flags (with a fake transport, no network).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import gevent.pool
import pytest
from fake_transport import Call, FakeTransport, Handler

import geetcd
from geetcd import errors as E
from geetcd._executor import Executor
from geetcd.cluster import ClusterState, Member, MemberState, PickPolicy
from geetcd.config import ExponentialBackoff, NoBackoff, Retry
from geetcd.models import Header
from geetcd.protocol.codec import decode_json, encode_json
from geetcd.protocol.errors import error_from_body, error_from_object
from geetcd.protocol.kv import parse_range
from geetcd.transport import RawResponse

MEMBER = "http://127.0.0.1:23101"


def unary(code: int, message: str) -> bytes:
    """The unary error body: error and message identical, code the gRPC code."""
    return encode_json({"error": message, "code": code, "message": message})


# (situation, HTTP status, gRPC code, message, class, transient, retry_safe)
TABLE: list[tuple[str, int, int, str, type[E.EtcdError], bool, bool]] = [
    ("missing key", 400, 3, "etcdserver: key is not provided", E.InvalidArgument, False, False),
    (
        "bad base64",
        400,
        3,
        "illegal base64 data at input byte 4",
        E.InvalidArgument,
        False,
        False,
    ),
    ("bad json", 400, 3, "unexpected EOF", E.InvalidArgument, False, False),
    ("ignore_value, missing key", 400, 3, "etcdserver: key not found", E.KeyNotFound, False, False),
    (
        "duplicate key in txn",
        400,
        3,
        "etcdserver: duplicate key given in txn request",
        E.InvalidArgument,
        False,
        False,
    ),
    (
        "too many txn ops",
        400,
        3,
        "etcdserver: too many operations in txn request",
        E.TooManyOperations,
        False,
        False,
    ),
    (
        "value over 1.5 MiB",
        400,
        3,
        "etcdserver: request is too large",
        E.RequestTooLarge,
        False,
        False,
    ),
    (
        "body over 2 MiB (429 is not 'retry later')",
        429,
        8,
        "grpc: received message larger than max (2097160 vs. 2097152)",
        E.RequestTooLarge,
        False,
        False,
    ),
    (
        "future revision",
        400,
        11,
        "etcdserver: mvcc: required revision is a future revision",
        E.FutureRevision,
        False,
        False,
    ),
    (
        "compacted revision",
        400,
        11,
        "etcdserver: mvcc: required revision has been compacted",
        E.CompactedRevision,
        False,
        False,
    ),
    (
        "lease TTL too large",
        400,
        11,
        "etcdserver: too large lease TTL",
        E.LeaseTTLTooLarge,
        False,
        False,
    ),
    (
        "unknown lease",
        404,
        5,
        "etcdserver: requested lease not found",
        E.LeaseNotFound,
        False,
        False,
    ),
    ("lease exists", 400, 9, "etcdserver: lease already exists", E.LeaseExists, False, False),
    ("auth on, no token", 400, 3, "etcdserver: user name is empty", E.AuthRequired, False, False),
    (
        "wrong password",
        400,
        3,
        "etcdserver: authentication failed, invalid user ID or password",
        E.AuthFailed,
        False,
        False,
    ),
    (
        "invalid token",
        401,
        16,
        "etcdserver: invalid auth token",
        E.InvalidAuthToken,
        False,
        True,
    ),
    (
        "permission denied",
        403,
        7,
        "etcdserver: permission denied",
        E.PermissionDenied,
        False,
        False,
    ),
    (
        "auth not enabled",
        400,
        9,
        "etcdserver: authentication is not enabled",
        E.AuthNotEnabled,
        False,
        False,
    ),
    (
        "NOSPACE",
        429,
        8,
        "etcdserver: mvcc: database space exceeded",
        E.QuotaExceeded,
        False,
        False,
    ),
    ("no quorum", 503, 14, "etcdserver: request timed out", E.RequestTimedOut, True, False),
    (
        "leader hung",
        503,
        14,
        "etcdserver: request timed out, possibly due to previous leader failure",
        E.RequestTimedOut,
        True,
        False,
    ),
    ("no leader (hasleader header)", 503, 14, "etcdserver: no leader", E.NoLeader, True, True),
    (
        "no quorum, lease grant",
        500,
        2,
        "context deadline exceeded",
        E.RequestTimedOut,
        True,
        False,
    ),
    (
        "stream body not an object",
        500,
        2,
        "json: cannot unmarshal array into Go value of type map[string]json.RawMessage",
        E.ServerError,
        False,
        False,
    ),
    ("too many requests", 429, 8, "etcdserver: too many requests", E.TooManyRequests, True, True),
]


@pytest.mark.parametrize(
    ("situation", "status", "code", "message", "cls", "transient", "retry_safe"),
    TABLE,
    ids=[row[0] for row in TABLE],
)
def test_error_table_unary_shape(
    situation: str,
    status: int,
    code: int,
    message: str,
    cls: type[E.EtcdError],
    transient: bool,
    retry_safe: bool,
) -> None:
    error = error_from_body(status, unary(code, message), MEMBER)
    assert type(error) is cls, situation
    assert error.code == code
    assert error.http_status == status
    assert error.member == MEMBER
    assert error.message == message
    assert error.transient is transient
    assert error.retry_safe is retry_safe
    assert message in str(error) and MEMBER in str(error)


def test_429_larger_than_max_is_not_a_retry() -> None:
    error = error_from_body(
        429, unary(8, "grpc: received message larger than max (2202023 vs. 2097152)")
    )
    assert isinstance(error, E.RequestTooLarge)
    assert isinstance(error, E.InvalidArgument) and isinstance(error, ValueError)
    assert not isinstance(error, (E.UnavailableError, E.TooManyRequests, E.QuotaExceeded))
    assert not error.transient and not error.retry_safe


def test_etcd_3_4_key_order_is_the_same() -> None:
    body = b'{"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14}'
    error = error_from_body(503, body)
    assert isinstance(error, E.NoLeader) and error.code == 14


def test_stream_error_shape() -> None:
    body = (
        b'{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader",'
        b'"http_status":"Service Unavailable"}}'
    )
    error = error_from_body(503, body, MEMBER)
    assert type(error) is E.NoLeader
    assert error.code == 14 and error.http_status == 503 and error.member == MEMBER
    assert error.message == "etcdserver: no leader"


def test_stream_error_mid_stream_after_http_200() -> None:
    # the last chunk of a watch after SIGTERM: HTTP 200 already sent, no trailing newline
    body = (
        b'{"error":{"grpc_code":14,"http_code":503,"message":"error reading from server: EOF",'
        b'"http_status":"Service Unavailable"}}'
    )
    error = error_from_object(decode_json(body), 200, MEMBER)
    assert error is not None
    assert type(error) is E.UnavailableError
    assert error.http_status == 503  # the body's http_code wins over the 200 of the stream
    assert error.transient is True


def test_stream_error_without_http_code_keeps_the_http_status() -> None:
    error = error_from_object({"error": {"grpc_code": 2, "message": "boom"}}, 500, None)
    assert error is not None
    assert type(error) is E.ServerError and error.http_status == 500 and error.code == 2


def test_error_from_object_ignores_ordinary_objects() -> None:
    assert error_from_object({"result": {"header": {}}}, 200, None) is None
    assert error_from_object({"header": {"revision": "2"}}, 200, None) is None


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (404, b"404 page not found\n", E.ServerError),  # /v3alpha on 3.5, text/plain
        (405, b"Method Not Allowed", E.ServerError),
        (502, b"<html>Bad Gateway</html>", E.UnavailableError),
        (503, b"", E.UnavailableError),
        (504, b"upstream timed out", E.UnavailableError),
        (500, b"internal", E.ServerError),
    ],
)
def test_plain_text_answers(status: int, body: bytes, cls: type[E.EtcdError]) -> None:
    error = error_from_body(status, body, MEMBER)
    assert type(error) is cls
    assert error.code is None
    assert error.http_status == status
    assert error.member == MEMBER
    if body:
        assert body.decode().strip()[:20] in error.message
    else:
        assert str(status) in error.message


def test_plain_404_message_is_kept_for_the_gateway_prefix_fallback() -> None:
    error = error_from_body(404, b"404 page not found")
    assert "page not found" in error.message and error.code is None


@pytest.mark.parametrize(
    "body",
    [
        b'{"code":"x","message":"m"}',
        b'{"code":{},"message":"m"}',
        b'{"code":null,"error":"m"}',
        b'{"code":true,"error":"m"}',
        b'{"code":1e400,"error":"m"}',
        b'{"error":{"grpc_code":14,"http_code":"Service Unavailable","message":"m"}}',
        b'{"error":{"grpc_code":"fourteen"}}',
        b'{"error":[1,2]}',
        b'{"error":null}',
        b"[1,2]",
        b"null",
        b"\xff\xfe\x00garbage",
        b"{",
        b'"just a string"',
    ],
)
def test_error_from_body_never_raises(body: bytes) -> None:
    error = error_from_body(503, body, MEMBER)
    assert isinstance(error, E.EtcdError)
    assert error.member == MEMBER
    assert error.code is None or isinstance(error.code, int)
    assert isinstance(error.http_status, int)


def test_numeric_strings_as_codes_are_understood() -> None:
    error = error_from_body(400, b'{"error":"x","code":"11","message":"has been compacted"}')
    assert type(error) is E.CompactedRevision and error.code == 11


def test_unknown_code_is_a_server_error() -> None:
    error = error_from_body(500, unary(13, "etcdserver: something internal"))
    assert type(error) is E.ServerError and error.code == 13
    assert not error.transient


def test_error_from_status_direct() -> None:
    error = E.error_from_status(None, 5, "etcdserver: member not found")
    assert type(error) is E.NotFound
    error = E.error_from_status(400, 9, "etcdserver: user name already exists")
    assert type(error) is E.FailedPrecondition
    error = E.error_from_status(None, 16, "etcdserver: something else")
    assert type(error) is E.AuthError
    assert type(E.error_from_status(None, 4, "deadline")) is E.RequestTimedOut


# ---------------------------------------------------------------------------- the tree
def test_builtin_bases() -> None:
    assert issubclass(E.InvalidArgument, ValueError)
    assert issubclass(E.InvalidType, TypeError) and issubclass(E.InvalidType, E.InvalidArgument)
    assert issubclass(E.DeadlineExceeded, TimeoutError)
    assert issubclass(E.PoolTimeout, E.DeadlineExceeded)
    assert issubclass(E.WatchCompacted, E.CompactedRevision)
    assert issubclass(E.WatchCompacted, E.WatchError)
    assert issubclass(E.LeaseTTLTooLarge, E.InvalidArgument)
    assert issubclass(E.LeaseTTLTooLarge, E.LeaseError)
    for name in E.__all__:
        obj = getattr(E, name)
        if isinstance(obj, type):
            assert issubclass(obj, E.EtcdError), name
            assert obj.__doc__, f"{name} has no docstring"


@pytest.mark.parametrize(
    ("cls", "transient", "retry_safe"),
    [
        (E.ConnectionFailed, True, True),  # never reached the server
        (E.ConnectionLost, True, False),  # may have been applied
        (E.ResponseTimeout, True, False),
        (E.NoLeader, True, True),
        (E.RequestTimedOut, True, False),
        (E.TooManyRequests, True, True),
        (E.MalformedResponse, True, False),
        (E.UnavailableError, True, False),
        (E.InvalidAuthToken, False, True),
        (E.TLSError, False, False),
        (E.OutcomeUnknown, False, False),
        (E.InvalidArgument, False, False),
        (E.QuotaExceeded, False, False),
        (E.ServerError, False, False),
    ],
)
def test_flags(cls: type[E.EtcdError], transient: bool, retry_safe: bool) -> None:
    assert cls.transient is transient
    assert cls.retry_safe is retry_safe
    error = cls("x")
    assert error.transient is transient and error.retry_safe is retry_safe


def test_str_and_fields() -> None:
    error = E.NoLeader("etcdserver: no leader", code=14, http_status=503, member=MEMBER)
    assert str(error) == f"etcdserver: no leader (member={MEMBER}, http=503, code=14)"
    assert str(E.EtcdError("plain")) == "plain"
    assert error.args == ("etcdserver: no leader",)


def test_structured_subclass_fields() -> None:
    compacted = E.CompactedRevision("gone", compact_revision=6, code=11)
    assert compacted.compact_revision == 6 and compacted.code == 11
    overflow = E.WatchOverflow("behind", last_revision=41)
    assert overflow.last_revision == 41
    canceled = E.WatchCanceled("canceled", reason="permission denied")
    assert canceled.reason == "permission denied"
    cause = E.ConnectionFailed("refused", member=MEMBER)
    unavailable = E.ClusterUnavailable("no member", errors={MEMBER: cause, "http://b:1": None})
    assert unavailable.errors == {MEMBER: cause, "http://b:1": None}
    assert MEMBER in str(unavailable) and "refused" in str(unavailable)


# ---------------------------------------------------------------------------- the request loop
# The fake transport of fake_transport.py; real ClusterState and Executor.


OK_RANGE = encode_json(
    {
        "header": {"cluster_id": "1", "member_id": "2", "revision": "9", "raft_term": "2"},
        "kvs": [{"key": "aw==", "value": "dg==", "mod_revision": "9", "version": "1"}],
        "count": "1",
    }
)
OK_PUT = encode_json({"header": {"cluster_id": "1", "member_id": "2", "revision": "10"}})
URLS = ["http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"]


class Loop:
    """A real ClusterState + Executor over a FakeTransport; probes always fail (members
    stay benched) unless ``probe_ok``."""

    def __init__(
        self,
        handler: Handler,
        urls: list[str] = URLS,
        *,
        timeout: float = 5.0,
        attempt_timeout: float = 1.0,
        retry: Retry | None = None,
        probe_ok: bool = False,
    ) -> None:
        self.group = gevent.pool.Group()
        self.probes: list[str] = []
        self.cluster = ClusterState(
            urls,
            probe=self._probe,
            group=self.group,
            policy=PickPolicy.ROUND_ROBIN,
            bench_backoff=ExponentialBackoff(base=0.05, cap=0.2),
        )
        self.probe_ok = probe_ok
        self.transport = FakeTransport(handler)
        self.executor = Executor(
            self.cluster,
            self.transport,  # type: ignore[arg-type]
            timeout=timeout,
            attempt_timeout=attempt_timeout,
            connect_timeout=0.5,
            retry=retry if retry is not None else Retry(backoff=NoBackoff()),
        )

    def _probe(self, member: Member) -> Header:
        self.probes.append(member.url)
        if not self.probe_ok:
            raise E.ConnectionFailed("probe refused", member=member.url)
        return Header(cluster_id=1)

    def range(self, **kwargs: Any) -> Any:
        return self.executor.call(
            "/kv/range", {"key": "aw=="}, parse_range, idempotent=True, **kwargs
        )

    def put(self, **kwargs: Any) -> Any:
        return self.executor.call(
            "/kv/put", {"key": "aw==", "value": "dg=="}, lambda o: o, idempotent=False, **kwargs
        )

    def member(self, url: str) -> Member:
        (member,) = [m for m in self.cluster.members if m.url == url]
        return member

    def close(self) -> None:
        self.cluster.close()
        self.group.kill(timeout=2)


@pytest.fixture
def make_loop() -> Iterator[Callable[..., Loop]]:
    loops: list[Loop] = []

    def make(handler: Handler, **kwargs: Any) -> Loop:
        loop = Loop(handler, **kwargs)
        loops.append(loop)
        return loop

    with gevent.Timeout(30):  # a guard: nothing in here may hang
        yield make
    for loop in loops:
        loop.close()


def test_read_fails_over_after_connection_lost(make_loop: Callable[..., Loop]) -> None:
    def handler(call: Call, n: int) -> RawResponse:
        if n == 1:
            raise E.ConnectionLost("connection reset by peer", member=call.url)
        return RawResponse(200, OK_RANGE)

    loop = make_loop(handler)
    response = loop.range()
    assert response.kvs[0].value == b"v"
    assert len(loop.transport.calls) == 2
    first, second = loop.transport.calls
    assert first.url != second.url
    assert first.path == second.path == "/v3/kv/range"
    assert first.body == second.body
    assert loop.member(first.url).state is MemberState.DOWN
    assert isinstance(loop.member(first.url).last_error, E.ConnectionLost)
    assert loop.member(second.url).state is MemberState.HEALTHY


def test_put_after_connection_lost_is_outcome_unknown_and_not_resent(
    make_loop: Callable[..., Loop],
) -> None:
    lost = E.ConnectionLost("connection broke after sending", member=URLS[0])

    def handler(call: Call, n: int) -> RawResponse:
        raise lost

    loop = make_loop(handler)
    with pytest.raises(E.OutcomeUnknown) as info:
        loop.put()
    assert info.value.__cause__ is lost
    assert len(loop.transport.calls) == 1  # NOT re-sent anywhere
    assert info.value.member == loop.transport.calls[0].url
    assert "may or may not" in str(info.value)
    gevent.sleep(0.3)  # any stray retry would show up here
    assert len(loop.transport.calls) == 1


@pytest.mark.parametrize(
    "error_cls", [E.ResponseTimeout, E.RequestTimedOut, E.MalformedResponse, E.UnavailableError]
)
def test_put_after_any_maybe_applied_failure_is_outcome_unknown(
    make_loop: Callable[..., Loop], error_cls: type[E.EtcdError]
) -> None:
    def handler(call: Call, n: int) -> RawResponse:
        raise error_cls("maybe applied", member=call.url)

    loop = make_loop(handler)
    with pytest.raises(E.OutcomeUnknown) as info:
        loop.put()
    assert type(info.value.__cause__) is error_cls
    assert len(loop.transport.calls) == 1


def test_put_after_connection_failed_is_resent_on_another_member(
    make_loop: Callable[..., Loop],
) -> None:
    def handler(call: Call, n: int) -> RawResponse:
        if n == 1:
            raise E.ConnectionFailed("connection refused", member=call.url)
        return RawResponse(200, OK_PUT)

    loop = make_loop(handler)
    result = loop.put()
    assert result["header"]["revision"] == "10"
    assert len(loop.transport.calls) == 2
    first, second = loop.transport.calls
    assert first.url != second.url
    assert first.body == second.body
    assert loop.member(first.url).state is MemberState.DOWN


def test_put_after_no_leader_answer_is_resent(make_loop: Callable[..., Loop]) -> None:
    def handler(call: Call, n: int) -> RawResponse:
        if n == 1:
            return RawResponse(503, unary(14, "etcdserver: no leader"))
        return RawResponse(200, OK_PUT)

    loop = make_loop(handler)
    loop.put()
    assert len(loop.transport.calls) == 2
    assert loop.transport.calls[0].url != loop.transport.calls[1].url


def test_non_transient_answer_is_raised_at_once_without_benching(
    make_loop: Callable[..., Loop],
) -> None:
    def handler(call: Call, n: int) -> RawResponse:
        return RawResponse(400, unary(3, "etcdserver: key is not provided"))

    loop = make_loop(handler)
    for send in (loop.range, loop.put):
        before = len(loop.transport.calls)
        with pytest.raises(E.InvalidArgument) as info:
            send()
        assert len(loop.transport.calls) == before + 1
        assert info.value.code == 3 and info.value.http_status == 400
    assert all(m.state is MemberState.HEALTHY for m in loop.cluster.members)
    assert all(m.failures == 0 and m.last_error is None for m in loop.cluster.members)
    assert loop.probes == []


def test_compacted_answer_is_not_retried(make_loop: Callable[..., Loop]) -> None:
    def handler(call: Call, n: int) -> RawResponse:
        return RawResponse(400, unary(11, "etcdserver: mvcc: required revision has been compacted"))

    loop = make_loop(handler)
    with pytest.raises(E.CompactedRevision):
        loop.range()
    assert len(loop.transport.calls) == 1


def test_retry_exhaustion_raises_the_last_error(make_loop: Callable[..., Loop]) -> None:
    def handler(call: Call, n: int) -> RawResponse:
        raise E.ConnectionLost(f"lost #{n}", member=call.url)

    loop = make_loop(handler, retry=Retry(attempts=1, backoff=NoBackoff()))
    with pytest.raises(E.ConnectionLost) as info:
        loop.range()
    assert len(loop.transport.calls) == 2  # first try + 1 retry
    assert info.value.message == "lost #2"


def test_per_call_retry_none_tries_once(make_loop: Callable[..., Loop]) -> None:
    def handler(call: Call, n: int) -> RawResponse:
        raise E.ConnectionFailed("refused", member=call.url)

    loop = make_loop(handler)
    with pytest.raises(E.ConnectionFailed):
        loop.range(retry=Retry.none())
    assert len(loop.transport.calls) == 1


def test_attempt_timeouts_never_exceed_the_deadline(make_loop: Callable[..., Loop]) -> None:
    def handler(call: Call, n: int) -> RawResponse:
        return RawResponse(200, OK_RANGE)

    loop = make_loop(handler, attempt_timeout=1.0)
    loop.range(timeout=0.3)
    (call,) = loop.transport.calls
    assert 0 < call.read_timeout <= 0.3
    assert 0 < call.connect_timeout <= 0.3
    loop.range(timeout=30)
    assert loop.transport.calls[1].read_timeout == 1.0  # attempt_timeout
    assert loop.transport.calls[1].connect_timeout == 0.5


def test_hung_members_give_cluster_unavailable_by_the_deadline(
    make_loop: Callable[..., Loop],
) -> None:
    def handler(call: Call, n: int) -> RawResponse:
        # a hung member: connect works, nothing comes back until the read timeout
        gevent.sleep(call.read_timeout)
        raise E.ResponseTimeout("no answer", member=call.url)

    loop = make_loop(handler, attempt_timeout=0.2)
    started = time.monotonic()
    with pytest.raises((E.ClusterUnavailable, E.DeadlineExceeded)) as info:
        loop.range(timeout=1.0)
    elapsed = time.monotonic() - started
    assert elapsed < 3.0
    assert len({c.url for c in loop.transport.calls}) == len(URLS)  # every member tried
    if isinstance(info.value, E.ClusterUnavailable):
        assert set(info.value.errors) == set(URLS)
        assert isinstance(info.value.__cause__, E.EtcdError)


def test_refused_everywhere_gives_cluster_unavailable_for_writes_too(
    make_loop: Callable[..., Loop],
) -> None:
    def handler(call: Call, n: int) -> RawResponse:
        raise E.ConnectionFailed("connection refused", member=call.url)

    loop = make_loop(handler)
    started = time.monotonic()
    with pytest.raises(E.ClusterUnavailable) as info:
        loop.put(timeout=0.5)
    assert time.monotonic() - started < 3.0
    assert isinstance(info.value.__cause__, E.ConnectionFailed)
    assert all(isinstance(e, E.ConnectionFailed) for e in info.value.errors.values())
    assert len(loop.transport.calls) == len(URLS)  # each member once; then benched


def test_deadline_passing_during_an_attempt_is_deadline_exceeded(
    make_loop: Callable[..., Loop],
) -> None:
    def handler(call: Call, n: int) -> RawResponse:
        gevent.sleep(call.read_timeout + 0.05)  # the attempt outlives the call's deadline
        raise E.ResponseTimeout("no answer", member=call.url)

    loop = make_loop(handler, attempt_timeout=2.0)
    started = time.monotonic()
    with pytest.raises(E.DeadlineExceeded) as info:
        loop.range(timeout=0.3)
    assert time.monotonic() - started < 3.0
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value.__cause__, E.ResponseTimeout)
    assert len(loop.transport.calls) == 1


def test_benched_member_comes_back_after_a_probe(make_loop: Callable[..., Loop]) -> None:
    def handler(call: Call, n: int) -> RawResponse:
        if n == 1:
            raise E.ConnectionFailed("refused", member=call.url)
        return RawResponse(200, OK_RANGE)

    loop = make_loop(handler, urls=URLS[:1], probe_ok=True)
    response = loop.range(timeout=5.0)  # waits in pick() for the prober, then succeeds
    assert response.count == 1
    assert loop.probes == [URLS[0]]
    assert loop.cluster.members[0].state is MemberState.HEALTHY


# ---------------------------------------------------------------------------- via the Client
# The same fake behind a real geetcd.Client: the KV methods pick the right idempotency.


@pytest.fixture
def fake_client() -> Iterator[tuple[geetcd.Client, FakeTransport]]:
    def handler(call: Call, n: int) -> RawResponse:
        if call.what == "health probe":
            raise E.ConnectionFailed("probe refused", member=call.url)
        raise E.ConnectionLost("connection broke", member=call.url)

    transport = FakeTransport(handler)
    client = geetcd.Client(URLS, timeout=0.5, namespace="/ns/", transport=transport)  # type: ignore[arg-type]
    with gevent.Timeout(30):
        yield client, transport
    client.close()


def requests(transport: FakeTransport) -> list[Call]:
    return [c for c in transport.calls if c.what != "health probe"]


@pytest.mark.parametrize(
    "write",
    [
        lambda c: c.put("k", "v"),
        lambda c: c.delete("k"),
        lambda c: c.delete_prefix("d/"),
        lambda c: c.txn([geetcd.Compare.version("k") == 0], [geetcd.Op.put("k", "v")]),
        lambda c: c.txn([], [geetcd.Op.get("k")], [geetcd.Op.delete("k")]),
        lambda c: c.txn([], [geetcd.Op.txn([], [geetcd.Op.put("k", "v")])]),
        lambda c: c.put_if_absent("k", "v"),
        lambda c: c.replace("k", "a", "b"),
        lambda c: c.compact(5),
    ],
)
def test_client_writes_are_not_resent(
    fake_client: tuple[geetcd.Client, FakeTransport], write: Callable[[geetcd.Client], Any]
) -> None:
    client, transport = fake_client
    with pytest.raises(E.OutcomeUnknown) as info:
        write(client)
    assert isinstance(info.value.__cause__, E.ConnectionLost)
    assert len(requests(transport)) == 1


@pytest.mark.parametrize(
    "read",
    [
        lambda c: c.get("k"),
        lambda c: c.range("a", "z"),
        lambda c: c.get_prefix("d/"),
        lambda c: c.txn([], [geetcd.Op.get("k")], [geetcd.Op.get("j", prefix=True)]),
        lambda c: c.txn([], [geetcd.Op.txn([], [geetcd.Op.get("k")])]),
        lambda c: c.status(),
        lambda c: c.member_list(),
    ],
)
def test_client_reads_fail_over(
    fake_client: tuple[geetcd.Client, FakeTransport], read: Callable[[geetcd.Client], Any]
) -> None:
    client, transport = fake_client
    with pytest.raises(E.EtcdError) as info:
        read(client)
    assert not isinstance(info.value, E.OutcomeUnknown)
    sent = requests(transport)
    assert len(sent) == len(URLS)  # retried on every member
    assert len({c.url for c in sent}) == len(URLS)


def test_client_refuses_bad_input_before_sending(
    fake_client: tuple[geetcd.Client, FakeTransport],
) -> None:
    client, transport = fake_client
    with pytest.raises(E.InvalidArgument):
        client.put("", "v")
    with pytest.raises(E.InvalidArgument):
        client.get(b"")
    with pytest.raises(E.InvalidArgument):
        client.txn([], [geetcd.Op.put("", "v")])
    with pytest.raises(E.InvalidType):
        client.put("k", 5)  # type: ignore[arg-type]
    with pytest.raises(E.InvalidType):
        client.range("k", limit="5")  # type: ignore[arg-type]
    with pytest.raises(E.InvalidArgument):
        client.range("k", revision=-1)
    assert transport.calls == []


def test_client_sends_namespaced_wire_keys(
    fake_client: tuple[geetcd.Client, FakeTransport],
) -> None:
    client, transport = fake_client

    def handler(call: Call, n: int) -> RawResponse:
        return RawResponse(200, encode_json({"header": {"revision": "3"}}))

    transport.handler = handler
    client.get_prefix("d/")
    client.put("k", b"\xff")
    bodies = [decode_json(c.body or b"{}") for c in transport.calls]
    assert bodies[0] == {"key": "L25zL2Qv", "range_end": "L25zL2Qw"}  # /ns/d/ .. /ns/d0
    assert bodies[1] == {"key": "L25zL2s=", "value": "/w=="}
    assert [c.path for c in transport.calls] == ["/v3/kv/range", "/v3/kv/put"]
