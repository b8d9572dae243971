"""Token auth and the auth admin API against a real etcd member of this module's own, with
auth enabled and ``--auth-token-ttl=3`` (so enabling auth never disturbs other test files).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import gevent
import gevent.pool
import pytest

import geetcd
from geetcd.auth import Permission, TokenAuth
from geetcd.testing import EtcdCluster

pytestmark = pytest.mark.timeout(120)

ROOT_PASSWORD = "root-pw"
TOKEN_TTL = 3.0
# etcd checks simple-token expiry once a second: wait clearly longer than the TTL
EXPIRY_WAIT = TOKEN_TTL + 2.5


@pytest.fixture(scope="module")
def auth_endpoints() -> Iterator[list[str]]:
    with EtcdCluster(size=1, extra_args=[f"--auth-token-ttl={int(TOKEN_TTL)}"]) as cluster:
        with geetcd.Client(cluster.endpoints, timeout=10) as admin:
            with pytest.raises(geetcd.FailedPrecondition, match="root user does not exist"):
                admin.auth.enable()
            admin.auth.user_add("root", ROOT_PASSWORD)
            admin.auth.role_add("root")
            admin.auth.user_grant_role("root", "root")
            admin.auth.enable()
        yield cluster.endpoints


@pytest.fixture
def root(auth_endpoints: list[str]) -> Iterator[geetcd.Client]:
    with geetcd.Client(auth_endpoints, user="root", password=ROOT_PASSWORD) as client:
        yield client


def auth_of(client: geetcd.Client) -> TokenAuth:
    auth = client.core.executor.auth
    assert isinstance(auth, TokenAuth)
    return auth


def unique(name: str) -> str:
    return f"{name}-{secrets.token_hex(3)}"


def make_user(root: geetcd.Client, roles: list[str], password: str = "pw") -> str:
    user = unique("user")
    root.auth.user_add(user, password)
    for role in roles:
        root.auth.user_grant_role(user, role)
    return user


def test_root_token_and_status(root: geetcd.Client, auth_endpoints: list[str]) -> None:
    root.put("/status-check", "v")
    assert root.get("/status-check").value == b"v"
    status = root.auth.status()
    assert status.enabled is True
    assert status.auth_revision > 0
    assert "root" in root.auth.user_list()
    assert "root" in root.auth.role_list()
    assert root.auth.user_get("root") == ["root"]
    assert auth_of(root).authentications == 1
    with geetcd.Client(auth_endpoints) as anonymous, pytest.raises(geetcd.AuthRequired):
        anonymous.get("/status-check")


def test_role_permissions_on_a_prefix(root: geetcd.Client, auth_endpoints: list[str]) -> None:
    space = f"/{unique('perm')}/"
    reader, writer = unique("reader"), unique("writer")
    with geetcd.Client(
        auth_endpoints, user="root", password=ROOT_PASSWORD, namespace=space
    ) as admin:
        admin.auth.role_add(reader)
        admin.auth.role_add(writer)
        admin.auth.role_grant_permission(reader, "pub/", prefix=True, perm="read")
        admin.auth.role_grant_permission(writer, "rw/", prefix=True)
        admin.auth.role_grant_permission(writer, "pub/only-this", perm="write")
        assert admin.auth.role_get(reader) == [
            Permission(perm="read", key=b"pub/", range_end=b"pub0", prefix=True)
        ]
        assert sorted(admin.auth.role_get(writer), key=lambda p: p.key) == [
            Permission(perm="write", key=b"pub/only-this"),
            Permission(perm="readwrite", key=b"rw/", range_end=b"rw0", prefix=True),
        ]
        admin.put("pub/a", "public")
        user = make_user(root, [reader, writer])
        assert sorted(root.auth.user_get(user)) == sorted([reader, writer])

    with geetcd.Client(auth_endpoints, user=user, password="pw", namespace=space) as alice:
        assert alice.get("pub/a").value == b"public"  # read allowed
        with pytest.raises(geetcd.PermissionDenied):
            alice.put("pub/a", "vandalism")  # read only
        alice.put("pub/only-this", "w")  # a single-key write grant
        alice.put("rw/x", "1")
        assert alice.get("rw/x").value == b"1"
        assert [kv.key for kv in alice.get_prefix("rw/")] == [b"rw/x"]
        with pytest.raises(geetcd.PermissionDenied):
            alice.get("secret")  # outside every grant
        with pytest.raises(geetcd.PermissionDenied):
            alice.auth.user_list()  # admin calls need root
        # revoke the write grant: the user's next write is refused
        root_ns = geetcd.Client(
            auth_endpoints, user="root", password=ROOT_PASSWORD, namespace=space
        )
        with root_ns:
            root_ns.auth.role_revoke_permission(writer, "rw/", prefix=True)
            assert root_ns.auth.role_get(writer) == [Permission(perm="write", key=b"pub/only-this")]
            with pytest.raises(geetcd.FailedPrecondition):
                root_ns.auth.role_revoke_permission(writer, "rw/", prefix=True)
        with pytest.raises(geetcd.PermissionDenied):
            alice.put("rw/x", "2")
        root.auth.user_revoke_role(user, reader)
        with pytest.raises(geetcd.PermissionDenied):
            alice.get("pub/a")
    root.auth.user_delete(user)
    root.auth.role_delete(reader)
    assert user not in root.auth.user_list()
    assert reader not in root.auth.role_list()
    with pytest.raises(geetcd.FailedPrecondition):
        root.auth.role_get(reader)


def test_admin_errors(root: geetcd.Client) -> None:
    user = make_user(root, [])
    with pytest.raises(geetcd.FailedPrecondition, match="already exists"):
        root.auth.user_add(user, "other")
    with pytest.raises(geetcd.FailedPrecondition):
        root.auth.user_grant_role(user, unique("no-such-role"))
    root.auth.user_delete(user)


def test_expired_token_one_authentication_for_200_greenlets(
    root: geetcd.Client, auth_endpoints: list[str]
) -> None:
    key = f"/{unique('expiry')}"
    root.put(key, "v")
    with geetcd.Client(auth_endpoints, user="root", password=ROOT_PASSWORD) as client:
        auth = auth_of(client)
        assert client.get(key).value == b"v"
        assert auth.authentications == 1
        old = auth.headers(client.core.executor, time.monotonic() + 5)
        assert old is not None
        gevent.sleep(EXPIRY_WAIT)  # the token expires unused

        results = gevent.pool.Pool(200).map(lambda _: client.get(key).value, range(200))
        assert results == [b"v"] * 200
        assert auth.authentications == 2  # one re-authentication for all 200
        fresh = auth.headers(client.core.executor, time.monotonic() + 5)
        assert fresh is not None and fresh["Authorization"] != old["Authorization"]
        # writes survive expiry too (401 = rejected before being applied, so retried)
        gevent.sleep(EXPIRY_WAIT)
        client.put(key, "after-expiry")
        assert client.get(key).value == b"after-expiry"
        assert auth.authentications == 3


def test_wrong_password_fails_fast_with_one_request(
    root: geetcd.Client, auth_endpoints: list[str]
) -> None:
    user = make_user(root, [])
    with geetcd.Client(auth_endpoints, user=user, password="wrong") as client:

        def attempt(_: int) -> BaseException | None:
            try:
                client.get("/any")
            except geetcd.EtcdError as exc:
                return exc
            return None

        started = time.monotonic()
        errors = gevent.pool.Pool(50).map(attempt, range(50))
        elapsed = time.monotonic() - started
        assert all(isinstance(e, geetcd.AuthFailed) for e in errors), errors[:3]
        assert "invalid user ID or password" in str(errors[0])
        assert elapsed < 5.0  # nothing waits for a timeout
        assert auth_of(client).authentications == 1
    root.auth.user_change_password(user, "wrong")
    client = geetcd.Client(auth_endpoints, user=user, password="wrong")
    with client, pytest.raises(geetcd.PermissionDenied):
        client.get("/any")  # authenticated now; the user simply has no role
    root.auth.user_delete(user)


def test_watch_reauthenticates_after_expiry_and_denied_watch_raises(
    root: geetcd.Client, auth_endpoints: list[str]
) -> None:
    space = f"/{unique('watch')}/"
    role = unique("watcher")
    root.auth.role_add(role)
    root.auth.role_grant_permission(role, f"{space}ok/", prefix=True)
    user = make_user(root, [role])
    with geetcd.Client(auth_endpoints, user=user, password="pw", namespace=space) as client:
        auth = auth_of(client)
        client.put("ok/k", "1")
        assert auth.authentications == 1
        gevent.sleep(EXPIRY_WAIT)
        # the stream is canceled ("permission denied": an expired token looks the same), the
        # watch invalidates the token, re-authenticates once and is created
        with client.watch("ok/k", timeout=10) as watch:
            assert auth.authentications == 2
            client.put("ok/k", "2")
            event = watch.next_event(timeout=10)
            assert event.kv.value == b"2"
        with pytest.raises(geetcd.PermissionDenied):
            client.watch("denied/k", timeout=10)
        assert auth.authentications == 3  # exactly one more attempt before giving up
    root.auth.user_delete(user)
    root.auth.role_delete(role)


def test_auth_disabled_then_enabled_again(root: geetcd.Client, auth_endpoints: list[str]) -> None:
    key = f"/{unique('toggle')}"
    auth = auth_of(root)
    root.put(key, "1")
    assert auth.authentications == 1
    try:
        root.auth.disable()
        # the token now gets 401; the client re-authenticates once, learns that auth is off
        # and from then on sends no Authorization header
        for n in range(20):
            root.put(key, str(n))
        assert root.get(key).value == b"19"
        assert auth.authentications == 2
        assert auth.state == "disabled"
        assert auth.headers(root.core.executor, time.monotonic() + 1) is None
        with geetcd.Client(auth_endpoints) as anonymous:
            assert anonymous.get(key).value == b"19"
    finally:
        root.auth.enable()
    # enabling through this client makes it authenticate again on its next call
    assert root.get(key).value == b"19"
    assert auth.state == "token"
    assert auth.authentications == 3
    with geetcd.Client(auth_endpoints) as anonymous, pytest.raises(geetcd.AuthRequired):
        anonymous.get(key)
