"""TokenAuth logic (single flight, stale invalidation, cached failure, auth disabled) and the
auth admin wire bodies, with a fake transport behind the real Executor and ClusterState.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import gevent.pool
import pytest
from fake_transport import Call, FakeTransport

import geetcd
from geetcd import errors as E
from geetcd._executor import Executor
from geetcd.auth import AuthAdmin, Permission, TokenAuth, _parse_permission
from geetcd.cluster import ClusterState, PickPolicy
from geetcd.config import ExponentialBackoff, Retry
from geetcd.protocol.codec import Keyspace, b64, decode_json, encode_json
from geetcd.protocol.kv import parse_range
from geetcd.transport import RawResponse

URLS = ["http://127.0.0.1:1", "http://127.0.0.1:2"]
DEFAULTS = {"Content-Type": "application/json", "Grpc-Metadata-hasleader": "true"}
OK_RANGE = encode_json({"header": {"revision": "5"}, "count": "0"})


def error(status: int, code: int, message: str) -> RawResponse:
    return RawResponse(status, encode_json({"error": message, "code": code, "message": message}))


WRONG_PASSWORD = error(400, 3, "etcdserver: authentication failed, invalid user ID or password")
NOT_ENABLED = error(400, 9, "etcdserver: authentication is not enabled")
INVALID_TOKEN = error(401, 16, "etcdserver: invalid auth token")


class FakeServer(FakeTransport):
    """Answers /v3/auth/authenticate with tokens "tok1", "tok2", ... (or ``auth_answer``) after
    ``delay`` seconds; answers /v3/kv/range with ``kv_answer(headers)``."""

    def __init__(self) -> None:
        super().__init__(self._answer, headers=dict(DEFAULTS))
        self.delay = 0.0
        self.auth_answer: RawResponse | None = None
        self.auth_raise: Callable[[str], None] | None = None
        self.kv_answer: Callable[[Any], RawResponse] = lambda headers: RawResponse(200, OK_RANGE)
        self.tokens = 0
        self.auth_urls: list[str] = []
        self.kv_headers: list[Any] = []

    def _answer(self, call: Call, _n: int) -> RawResponse:
        if call.what == "health probe":
            return RawResponse(200, OK_RANGE)
        if call.path == "/v3/auth/authenticate":
            assert call.headers is None, "authenticate must never carry a token"
            assert call.body is not None
            assert decode_json(call.body) == {"name": "alice", "password": "pw"}
            self.auth_urls.append(call.url)
            if self.delay:
                gevent.sleep(self.delay)
            if self.auth_raise is not None:
                self.auth_raise(call.url)
            if self.auth_answer is not None:
                return self.auth_answer
            self.tokens += 1
            return RawResponse(200, encode_json({"header": {}, "token": f"tok{self.tokens}"}))
        self.kv_headers.append(call.headers)
        return self.kv_answer(call.headers)


class Setup:
    def __init__(self, **auth_options: Any) -> None:
        self.group = gevent.pool.Group()
        self.server = FakeServer()
        self.cluster = ClusterState(
            URLS,
            probe=lambda m: geetcd.Header(),
            group=self.group,
            policy=PickPolicy.ROUND_ROBIN,
            bench_backoff=ExponentialBackoff(base=0.01, cap=0.05),
        )
        self.executor = Executor(
            self.cluster,
            self.server,  # type: ignore[arg-type]
            timeout=5.0,
            attempt_timeout=1.0,
            connect_timeout=1.0,
            retry=Retry(),
        )
        self.auth = TokenAuth("alice", "pw", **auth_options)
        self.executor.auth = self.auth

    def headers(self, timeout: float = 5.0) -> Any:
        return self.auth.headers(self.executor, time.monotonic() + timeout)

    def get(self) -> Any:
        return self.executor.call("/kv/range", {"key": "aw=="}, parse_range, idempotent=True)


@pytest.fixture
def setup() -> Iterator[Setup]:
    s = Setup()
    with gevent.Timeout(30):
        yield s
    s.cluster.close()
    s.group.kill()


def test_headers_are_defaults_plus_bare_token_built_once(setup: Setup) -> None:
    first = setup.headers()
    second = setup.headers()
    assert first == {**DEFAULTS, "Authorization": "tok1"}
    assert first is second  # one dict per token, handed to urllib3 as is
    assert setup.auth.authentications == 1
    assert setup.auth.state == "token"
    assert "tok1" not in repr(setup.auth) and "pw" not in repr(setup.auth)


def test_one_authentication_for_many_concurrent_greenlets(setup: Setup) -> None:
    setup.server.delay = 0.05
    results = gevent.pool.Group().map(lambda _: setup.headers(), range(100))
    assert setup.auth.authentications == 1
    assert all(r is results[0] for r in results)
    assert results[0]["Authorization"] == "tok1"


def test_stale_rejection_keeps_the_fresh_token(setup: Setup) -> None:
    old = setup.headers()
    setup.auth.invalidate(old)
    fresh = setup.headers()
    assert fresh["Authorization"] == "tok2"
    setup.auth.invalidate(old)  # a late 401 for the old token
    assert setup.headers() is fresh
    assert setup.auth.authentications == 2
    setup.auth.invalidate(fresh)
    assert setup.headers()["Authorization"] == "tok3"


def test_invalid_token_answer_reauthenticates_and_retries_once(setup: Setup) -> None:
    def kv(headers: Any) -> RawResponse:
        if headers["Authorization"] == "tok1":
            return INVALID_TOKEN
        return RawResponse(200, OK_RANGE)

    setup.server.kv_answer = kv
    setup.get()
    assert [h["Authorization"] for h in setup.server.kv_headers] == ["tok1", "tok2"]
    assert setup.auth.authentications == 2


def test_wrong_password_one_request_per_burst_and_cached(setup: Setup) -> None:
    setup.server.auth_answer = WRONG_PASSWORD
    setup.server.delay = 0.05

    def attempt(_: int) -> BaseException | None:
        try:
            setup.headers()
        except E.EtcdError as exc:
            return exc
        return None

    started = time.monotonic()
    errors = gevent.pool.Group().map(attempt, range(50))
    assert time.monotonic() - started < 2.0
    assert all(isinstance(e, E.AuthFailed) for e in errors)
    assert len({id(e) for e in errors}) == 50  # each caller gets its own exception object
    assert "authentication failed" in str(errors[0])
    assert setup.auth.authentications == 1
    assert setup.auth.state == "failed"
    with pytest.raises(E.AuthFailed):
        setup.get()  # within failure_ttl: no new request
    assert setup.auth.authentications == 1
    assert setup.server.kv_headers == []  # nothing was sent without a token


def test_failure_cache_expires() -> None:
    s = Setup(failure_ttl=0.1)
    s.server.auth_answer = WRONG_PASSWORD
    with pytest.raises(E.AuthFailed):
        s.headers()
    gevent.sleep(0.15)
    s.server.auth_answer = None
    assert s.headers()["Authorization"] == "tok1"
    assert s.auth.authentications == 2


def test_set_password_clears_the_cached_failure() -> None:
    s = Setup()
    s.server.auth_answer = WRONG_PASSWORD
    with pytest.raises(E.AuthFailed):
        s.headers()
    s.server.auth_answer = None
    s.auth.set_password("pw")
    assert s.headers()["Authorization"] == "tok1"


def test_auth_not_enabled_sends_no_header_until_invalidated(setup: Setup) -> None:
    setup.server.auth_answer = NOT_ENABLED
    assert setup.headers() is None
    assert setup.auth.state == "disabled"
    for _ in range(5):
        setup.get()
    assert setup.server.kv_headers == [None] * 5
    assert setup.auth.authentications == 1  # no new attempt before recheck_interval
    setup.server.auth_answer = None
    setup.auth.invalidate({"Authorization": "not-ours"})  # a stale token: still disabled
    assert setup.headers() is None
    setup.auth.invalidate(None)  # refused without a token: auth may be back on
    assert setup.headers()["Authorization"] == "tok1"


def test_auth_disabled_after_a_token_was_used(setup: Setup) -> None:
    """After auth/disable the token gets 401; re-authenticating says "not enabled"; the
    retry goes out without Authorization."""
    setup.get()

    def kv(headers: Any) -> RawResponse:
        return INVALID_TOKEN if headers is not None else RawResponse(200, OK_RANGE)

    setup.server.kv_answer = kv
    setup.server.auth_answer = NOT_ENABLED
    setup.get()
    assert setup.server.kv_headers[-2:] == [{**DEFAULTS, "Authorization": "tok1"}, None]
    setup.get()
    assert setup.server.kv_headers[-1] is None


def test_disabled_state_is_rechecked_after_interval() -> None:
    s = Setup(recheck_interval=0.1)
    s.server.auth_answer = NOT_ENABLED
    assert s.headers() is None
    assert s.headers() is None
    assert s.auth.authentications == 1
    gevent.sleep(0.15)
    s.server.auth_answer = None
    assert s.headers()["Authorization"] == "tok1"


def test_other_callers_do_not_wait_for_a_recheck() -> None:
    s = Setup(recheck_interval=0.01)
    s.server.auth_answer = NOT_ENABLED
    assert s.headers() is None
    gevent.sleep(0.02)
    s.server.delay = 0.5
    leader = gevent.spawn(s.headers)
    gevent.sleep(0.05)
    started = time.monotonic()
    assert s.headers() is None
    assert time.monotonic() - started < 0.1
    assert leader.get() is None


def test_transient_failure_moves_to_another_member(setup: Setup) -> None:
    def refuse_first(url: str) -> None:
        if url == URLS[0]:
            raise E.ConnectionFailed("refused", member=url)

    setup.server.auth_raise = refuse_first
    assert setup.headers()["Authorization"] == "tok1"
    assert setup.server.auth_urls[-1] == URLS[1]


def test_every_member_refusing_ends_within_the_retry_budget(setup: Setup) -> None:
    def refuse(url: str) -> None:
        raise E.ConnectionFailed("refused", member=url)

    setup.server.auth_raise = refuse
    started = time.monotonic()
    with pytest.raises((E.ConnectionFailed, E.ClusterUnavailable, E.DeadlineExceeded)):
        setup.headers(timeout=1.0)
    assert time.monotonic() - started < 2.0
    assert 2 <= setup.auth.authentications <= Retry().attempts + 1
    assert setup.auth.state == "none"  # nothing cached: the next call tries again
    setup.server.auth_raise = None
    gevent.sleep(0.2)  # let the prober bring a member back
    assert setup.headers()["Authorization"] == "tok1"


def test_non_transient_error_is_raised_and_not_cached(setup: Setup) -> None:
    def tls(url: str) -> None:
        raise E.TLSError("bad certificate", member=url)

    setup.server.auth_raise = tls
    with pytest.raises(E.TLSError):
        setup.headers()
    setup.server.auth_raise = None
    assert setup.headers()["Authorization"] == "tok1"


def test_waiter_deadline_is_its_own(setup: Setup) -> None:
    setup.server.delay = 1.0
    leader = gevent.spawn(setup.headers)
    gevent.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(E.DeadlineExceeded):
        setup.headers(timeout=0.1)
    assert time.monotonic() - started < 0.5
    assert leader.get()["Authorization"] == "tok1"


def test_killed_leader_hands_over_to_a_waiter(setup: Setup) -> None:
    setup.server.delay = 0.2
    leader = gevent.spawn(setup.headers)
    gevent.sleep(0.01)
    waiter = gevent.spawn(setup.headers)
    gevent.sleep(0.01)
    leader.kill()
    assert waiter.get(timeout=5)["Authorization"] == "tok1"
    assert setup.auth.authentications == 2


def test_credentials_are_validated() -> None:
    with pytest.raises(E.InvalidType):
        TokenAuth(None, "pw")
    with pytest.raises(E.InvalidArgument):
        TokenAuth("", "pw")
    with pytest.raises(E.InvalidType):
        TokenAuth("alice", None)
    with pytest.raises(E.InvalidType):
        geetcd.Client("http://127.0.0.1:1", user="alice")
    with pytest.raises(E.InvalidType):
        geetcd.Client("http://127.0.0.1:1", password="pw")


# ---------------------------------------------------------------------------- admin wire bodies
class Recorder:
    def __init__(self, answer: dict[str, Any] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any], bool]] = []
        self.answer = answer or {"header": {"revision": "3"}}

    def __call__(self, path: str, body: dict[str, Any], parse: Any, idem: bool, *_: Any) -> Any:
        self.calls.append((path, body, idem))
        return parse(self.answer)


@pytest.fixture
def admin() -> Iterator[tuple[AuthAdmin, Recorder]]:
    client = geetcd.Client("http://127.0.0.1:1", namespace="/ns/")
    recorder = Recorder()
    client.core.call = recorder  # type: ignore[method-assign]
    yield client.auth, recorder
    client.close()


def test_grant_permission_body_with_namespace(admin: tuple[AuthAdmin, Recorder]) -> None:
    auth, rec = admin
    header = auth.role_grant_permission("reader", "app/", prefix=True, perm="read")
    assert header.revision == 3
    assert rec.calls[-1] == (
        "/auth/role/grant",
        {
            "name": "reader",
            "perm": {"permType": "READ", "key": b64(b"/ns/app/"), "range_end": b64(b"/ns/app0")},
        },
        True,
    )
    auth.role_grant_permission("w", "one-key", perm="write")
    assert rec.calls[-1][1]["perm"] == {"permType": "WRITE", "key": b64(b"/ns/one-key")}
    auth.role_revoke_permission("w", "a", "b")
    assert rec.calls[-1] == (
        "/auth/role/revoke",
        {"role": "w", "key": b64(b"/ns/a"), "range_end": b64(b"/ns/b")},
        False,
    )


def test_admin_validates_before_sending(admin: tuple[AuthAdmin, Recorder]) -> None:
    auth, rec = admin
    with pytest.raises(E.InvalidArgument):
        auth.role_grant_permission("r", "k", perm="READWRITE!")
    with pytest.raises(E.InvalidArgument):
        auth.role_grant_permission("r", "k", "z", prefix=True)
    with pytest.raises(E.InvalidArgument):
        auth.user_add("", "pw")
    with pytest.raises(E.InvalidType):
        auth.user_grant_role("u", None)  # type: ignore[arg-type]
    with pytest.raises(E.InvalidArgument):
        auth.role_grant_permission("r", "")
    assert rec.calls == []


def test_admin_paths_and_fields(admin: tuple[AuthAdmin, Recorder]) -> None:
    auth, rec = admin
    auth.user_add("u", "p")
    auth.user_grant_role("u", "r")
    auth.user_revoke_role("u", "r")
    auth.user_delete("u")
    auth.role_add("r")
    auth.role_delete("r")
    auth.user_change_password("u", "p2")
    assert [(p, b) for p, b, _ in rec.calls] == [
        ("/auth/user/add", {"name": "u", "password": "p"}),
        ("/auth/user/grant", {"user": "u", "role": "r"}),
        ("/auth/user/revoke", {"name": "u", "role": "r"}),
        ("/auth/user/delete", {"name": "u"}),
        ("/auth/role/add", {"name": "r"}),
        ("/auth/role/delete", {"role": "r"}),
        ("/auth/user/changepw", {"name": "u", "password": "p2"}),
    ]
    rec.answer = {"header": {}, "enabled": True, "authRevision": "12"}
    status = auth.status()
    assert (status.enabled, status.auth_revision) == (True, 12)
    rec.answer = {"header": {}}
    assert auth.status().enabled is False
    assert auth.user_list() == [] and auth.role_list() == [] and auth.user_get("u") == []
    rec.answer = {"header": {}, "users": ["a", "b"], "roles": ["r"]}
    assert auth.user_list() == ["a", "b"] and auth.user_get("a") == ["r"]


def test_change_own_password_updates_credentials() -> None:
    client = geetcd.Client("http://127.0.0.1:1", user="alice", password="old")
    client.core.call = Recorder()  # type: ignore[method-assign]
    auth = client.core.executor.auth
    assert isinstance(auth, TokenAuth)
    client.auth.user_change_password("bob", "x")
    assert auth._password == "old"
    client.auth.user_change_password("alice", "new")
    assert auth._password == "new"
    client.close()


def test_parse_permission_types_and_namespace() -> None:
    ks = Keyspace(b"/ns/")
    # READ is the zero value: etcd omits permType
    read = _parse_permission({"key": b64(b"/ns/app/"), "range_end": b64(b"/ns/app0")}, ks)
    assert read == Permission(perm="read", key=b"app/", range_end=b"app0", prefix=True)
    whole = _parse_permission(
        {"permType": "READWRITE", "key": b64(b"/ns/"), "range_end": b64(b"/ns0")}, ks
    )
    assert whole.perm == "readwrite" and whole.range_end == b"\0" and whole.prefix
    single = _parse_permission({"permType": "WRITE", "key": b64(b"/ns/k")}, ks)
    assert single == Permission(perm="write", key=b"k", range_end=None, prefix=False)
    outside = _parse_permission({"permType": 2, "key": b64(b"/other")}, ks)
    assert outside.key == b"/other"
    with pytest.raises(E.MalformedResponse):
        _parse_permission({"permType": "ADMIN", "key": b64(b"k")}, ks)
