"""Leases against a real single-member etcd: grant, keepalive, revoke, loss, sessions."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import gevent
import gevent.pool
import pytest

import geetcd
from geetcd.lease import Lease, LeaseLoss, Session, _resolve_grant, keepalive_of
from geetcd.protocol.lease import grant_body


def wait_until(predicate: Callable[[], object], timeout: float, step: float = 0.1) -> bool:
    """Poll ``predicate`` cooperatively until true or ``timeout``; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        gevent.sleep(step)


# ------------------------------------------------------------------ grant and arguments
def test_grant_returns_lease_with_server_ttl(etcd_client: geetcd.Client) -> None:
    lease = etcd_client.lease(30)
    assert isinstance(lease, Lease)
    assert lease.id > 0 and lease.ttl == 30
    assert not lease.lost.is_set() and lease.lost_reason is None
    assert not lease.kept_alive
    assert 29.0 < lease.remaining <= 30.0
    assert f"id={lease.id}" in repr(lease) and "ttl=30" in repr(lease)
    info = etcd_client.lease_time_to_live(lease.id)
    assert info.id == lease.id and info.granted_ttl == 30 and 28 <= info.ttl <= 30
    assert lease.id in etcd_client.leases()
    lease.revoke()


def test_ttl_below_server_minimum_is_raised_by_etcd(etcd_client: geetcd.Client) -> None:
    lease = etcd_client.lease(1)
    assert lease.ttl == 2  # etcd's minimum TTL with default election settings
    lease.revoke()


@pytest.mark.parametrize(
    ("ttl", "exc"),
    [
        (0, geetcd.InvalidArgument),
        (-3, geetcd.InvalidArgument),
        (1.5, geetcd.InvalidType),
        (True, geetcd.InvalidType),
    ],
)
def test_bad_ttl_refused_before_sending(
    etcd_client: geetcd.Client, ttl: object, exc: type[Exception]
) -> None:
    before = set(etcd_client.leases())
    with pytest.raises(exc):
        etcd_client.lease(ttl)  # type: ignore[arg-type]
    assert set(etcd_client.leases()) <= before


def test_ttl_too_large_comes_from_server(etcd_client: geetcd.Client) -> None:
    with pytest.raises(geetcd.LeaseTTLTooLarge) as info:
        etcd_client.lease(9_999_999_999)
    assert info.value.code == 11
    assert isinstance(info.value, geetcd.InvalidArgument)


def test_explicit_id_and_lease_exists(etcd_client: geetcd.Client) -> None:
    lease_id = 0x6765_6574_6364_0000 + int(time.time() * 1000) % 0xFFFF
    lease = etcd_client.lease(20, id=lease_id)
    try:
        assert lease.id == lease_id
        with pytest.raises(geetcd.LeaseExists):
            etcd_client.lease(20, id=lease_id)
    finally:
        lease.revoke()


def test_explicit_id_grant_with_lost_answer_is_resolved(etcd_client: geetcd.Client) -> None:
    # What grant() does after OutcomeUnknown with an explicit id: ask, then adopt or resend.
    unknown = geetcd.OutcomeUnknown("answer lost (simulated)")
    deadline = time.monotonic() + 10
    applied_id = 0x6765_6574_6365_0000 + int(time.time() * 1000) % 0xFFFF
    etcd_client.lease(20, id=applied_id)  # the "lost" attempt was applied
    lease_id, ttl, sent_at = _resolve_grant(
        etcd_client, grant_body(20, applied_id), applied_id, deadline, unknown
    )
    assert (lease_id, ttl) == (applied_id, 20)
    assert sent_at <= time.monotonic()
    missing_id = applied_id + 1  # the "lost" attempt never arrived: granted now
    assert etcd_client.lease_time_to_live(missing_id).ttl == -1
    lease_id, ttl, _ = _resolve_grant(
        etcd_client, grant_body(20, missing_id), missing_id, deadline, unknown
    )
    assert (lease_id, ttl) == (missing_id, 20)
    assert etcd_client.lease_time_to_live(missing_id).granted_ttl == 20
    with pytest.raises(geetcd.OutcomeUnknown):
        _resolve_grant(
            etcd_client,
            grant_body(20, missing_id + 1),
            missing_id + 1,
            time.monotonic() - 1,
            unknown,
        )
    etcd_client.revoke_lease(applied_id)
    etcd_client.revoke_lease(missing_id)


# ------------------------------------------------------------------ keepalive
def test_kept_alive_lease_keeps_key_then_expires_after_stop(etcd_client: geetcd.Client) -> None:
    lease = etcd_client.lease(2)
    etcd_client.put("held", "v", lease=lease)
    lease.keep_alive()
    assert lease.kept_alive and "kept-alive" in repr(lease)
    gevent.sleep(10.0)
    kv = etcd_client.get("held")
    assert kv is not None and kv.lease == lease.id
    assert not lease.lost.is_set()
    assert keepalive_of(etcd_client).stats.refreshed >= 10  # ~every 0.67 s for 10 s

    lease.stop_keep_alive()
    stopped = time.monotonic()
    assert not lease.kept_alive
    assert wait_until(lambda: etcd_client.get("held") is None, timeout=2 + 4.0)
    assert time.monotonic() - stopped >= 1.0  # it did live on for about its TTL
    with pytest.raises(geetcd.LeaseNotFound):
        lease.refresh()
    assert lease.lost.is_set() and lease.lost_reason is LeaseLoss.EXPIRED


def test_refresh_returns_ttl(etcd_client: geetcd.Client) -> None:
    lease = etcd_client.lease(7)
    gevent.sleep(1.2)
    assert lease.refresh() == 7
    assert lease.time_to_live().ttl >= 6
    lease.revoke()
    with pytest.raises(geetcd.LeaseNotFound):
        lease.refresh()


def test_revoke_deletes_keys_and_second_revoke_raises(etcd_client: geetcd.Client) -> None:
    lease = etcd_client.lease(30, keepalive=True)
    etcd_client.put("a", "1", lease=lease)
    etcd_client.put("b", "2", lease=lease.id)
    info = lease.time_to_live(keys=True)
    assert sorted(info.keys) == [b"a", b"b"]  # namespace stripped
    lease.revoke()
    assert lease.lost.is_set() and lease.lost_reason is LeaseLoss.REVOKED
    assert not lease.kept_alive
    assert etcd_client.get("a") is None and etcd_client.get("b") is None
    with pytest.raises(geetcd.LeaseNotFound):
        lease.revoke()
    with pytest.raises(geetcd.LeaseNotFound):
        etcd_client.revoke_lease(lease.id)
    assert lease.time_to_live().ttl == -1
    with pytest.raises(geetcd.LeaseNotFound):
        lease.keep_alive()


def test_revoke_lease_by_id_marks_kept_lease(etcd_client: geetcd.Client) -> None:
    lease = etcd_client.lease(30, keepalive=True)
    etcd_client.revoke_lease(lease)
    assert lease.lost_reason is LeaseLoss.REVOKED
    assert etcd_client.lease_time_to_live(lease.id).ttl == -1


def test_put_with_unknown_lease(etcd_client: geetcd.Client) -> None:
    with pytest.raises(geetcd.LeaseNotFound) as info:
        etcd_client.put("k", "v", lease=0x7777_0000_0000_0001)
    assert info.value.http_status == 404 and info.value.code == 5
    assert etcd_client.get("k") is None


def test_time_to_live_of_unknown_lease_is_not_an_error(etcd_client: geetcd.Client) -> None:
    info = etcd_client.lease_time_to_live(0x7777_0000_0000_0002, keys=True)
    assert info.ttl == -1 and info.keys == ()


def test_revoked_elsewhere_sets_lost_and_runs_callbacks(
    etcd_client: geetcd.Client, etcd_endpoints: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    lease = etcd_client.lease(6, keepalive=True)
    seen: list[tuple[Lease, LeaseLoss | None]] = []

    def broken(_lease: Lease) -> None:
        raise RuntimeError("callback bug")

    lease.on_lost(broken)
    lease.on_lost(lambda le: seen.append((le, le.lost_reason)))
    with geetcd.Client(etcd_endpoints) as other:
        other.revoke_lease(lease.id)
    revoked = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="geetcd.lease"):
        assert lease.lost.wait(6 / 3 + 2.0)
        assert time.monotonic() - revoked <= 6 / 3 + 2.0
        assert wait_until(lambda: bool(seen), 2.0)
    assert seen == [(lease, LeaseLoss.EXPIRED)]
    assert not lease.kept_alive
    assert any("callback bug" in (r.exc_text or "") for r in caplog.records)
    late: list[Lease] = []
    lease.on_lost(late.append)  # already lost: runs at once, in a client greenlet
    assert wait_until(lambda: late == [lease], 2.0)


def test_context_manager_keeps_alive_then_revokes(etcd_client: geetcd.Client) -> None:
    with etcd_client.lease(2) as lease:
        assert lease.kept_alive
        etcd_client.put("cm", "x", lease=lease)
        gevent.sleep(3.0)
        assert etcd_client.get("cm") is not None
    assert lease.lost_reason is LeaseLoss.REVOKED
    assert etcd_client.get("cm") is None
    assert etcd_client.lease_time_to_live(lease.id).ttl == -1


def test_client_close_marks_kept_leases(etcd_endpoints: list[str], etcd_prefix: str) -> None:
    client = geetcd.Client(etcd_endpoints, namespace=etcd_prefix)
    lease = client.lease(5, keepalive=True)
    plain = client.lease(5)
    reasons: list[LeaseLoss | None] = []
    lease.on_lost(lambda le: reasons.append(le.lost_reason))
    client.close()
    assert lease.lost_reason is LeaseLoss.CLOSED and reasons == [LeaseLoss.CLOSED]
    assert not plain.lost.is_set()
    with geetcd.Client(etcd_endpoints) as other:
        assert other.lease_time_to_live(lease.id).ttl > 0  # not revoked: it just expires
        other.revoke_lease(lease.id)
        other.revoke_lease(plain.id)


# ------------------------------------------------------------------ sessions
def test_session_close_revokes(etcd_client: geetcd.Client) -> None:
    with etcd_client.session(ttl=2) as session:
        assert isinstance(session, Session)
        assert session.lease.kept_alive and session.ttl == 2 and session.id == session.lease.id
        etcd_client.put("s", "1", lease=session.id)
        gevent.sleep(3.0)
        assert etcd_client.get("s") is not None and not session.lost.is_set()
        assert "open" in repr(session)
    assert session.closed and session.lost.is_set()
    assert etcd_client.get("s") is None
    session.close()  # idempotent


def test_session_closed_with_client(etcd_endpoints: list[str], etcd_prefix: str) -> None:
    client = geetcd.Client(etcd_endpoints, namespace=etcd_prefix)
    session = client.session(ttl=30)
    called: list[Session] = []
    session.on_lost(called.append)
    client.put("s", "1", lease=session.id)
    client.close()
    assert session.closed and session.lost.is_set() and called == [session]
    with geetcd.Client(etcd_endpoints, namespace=etcd_prefix) as other:
        assert other.lease_time_to_live(session.id).ttl == -1
        assert other.get("s") is None


# ------------------------------------------------------------------ scale
@pytest.mark.slow
def test_5000_leases_kept_alive_30s(etcd_client: geetcd.Client) -> None:
    pool = gevent.pool.Pool(32)
    started = time.monotonic()
    leases: list[Lease] = pool.map(lambda _i: etcd_client.lease(10, keepalive=True), range(5000))
    granted = time.monotonic() - started
    assert len({le.id for le in leases}) == 5000
    keeper = keepalive_of(etcd_client)
    assert len(keeper) == 5000
    etcd_client.put("marker", "m", lease=leases[-1])
    try:
        gevent.sleep(max(0.0, 30.0 - granted))
        lost = [le for le in leases if le.lost.is_set()]
        assert lost == []
        # 5000 leases x 30 s / (10 s / 3) = about 45,000 refreshes.
        assert keeper.stats.refreshed >= 30_000
        assert keeper.stats.lost == 0
        assert etcd_client.get("marker") is not None
        sample = pool.map(lambda le: etcd_client.lease_time_to_live(le).ttl, leases[::250])
        assert all(ttl > 0 for ttl in sample)
    finally:
        for le in leases:
            le.stop_keep_alive()
        pool.map(etcd_client.revoke_lease, leases)
