"""Promises of the public API, checked against a real etcd: every call that talks to etcd
takes ``timeout=`` and ``retry=``, ``revision=0`` means "latest" as in etcd, every call
after ``close()`` raises ClientClosed, the README's lock compare can succeed, and v2's
``ttl=0`` means "no TTL" as in go-etcd."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import geetcd
from geetcd import Compare, Op, Retry, v2

pytestmark = pytest.mark.timeout(60)


def test_retry_is_used_by_the_calls_that_lacked_it(etcd_client: geetcd.Client) -> None:
    """The calls run with a per-call Retry; a wrong Retry is refused before sending."""
    once = Retry(attempts=1)
    assert etcd_client.put_if_absent("k", "v", retry=once)
    assert etcd_client.replace("k", "v", "w", retry=once)
    assert [kv.value for kv in etcd_client.iter_prefix("", retry=once)] == [b"w"]
    assert etcd_client.status(retry=once).version
    assert etcd_client.member_list(retry=once).members
    lease = etcd_client.lease(5, retry=once)
    assert lease.id in etcd_client.leases(retry=once)
    assert etcd_client.lease_time_to_live(lease, retry=once).ttl > 0
    etcd_client.revoke_lease(lease, retry=once)
    assert etcd_client.lease_time_to_live(lease).ttl == -1
    revision = etcd_client.get("k", retry=once)
    assert revision is not None
    etcd_client.compact(revision.mod_revision, retry=once)
    with pytest.raises(geetcd.InvalidType):
        etcd_client.put_if_absent("k2", "v", retry="3")  # type: ignore[arg-type]
    assert etcd_client.get("k2") is None  # nothing was sent


def test_revision_zero_means_latest(etcd_client: geetcd.Client) -> None:
    etcd_client.put("r", "1")
    etcd_client.put("r", "2")
    latest = etcd_client.get("r", revision=0)
    assert latest is not None and latest.value == b"2"
    assert [kv.value for kv in etcd_client.range("r", revision=0).kvs] == [b"2"]
    assert [kv.value for kv in etcd_client.iter_prefix("r", revision=0)] == [b"2"]
    watch = etcd_client.watch("r", start_revision=0)  # from now, as etcd's 0
    try:
        etcd_client.put("r", "3")
        event = watch.next_event(timeout=5)
        assert event.kv.value == b"3"
    finally:
        watch.cancel()
    with pytest.raises(geetcd.InvalidArgument):
        etcd_client.get("r", revision=-1)


def test_readme_lock_compare_can_succeed(etcd_client: geetcd.Client) -> None:
    etcd_client.put("n", "0")
    taken = etcd_client.txn(
        compare=[Compare.create_revision("lock") == 0, Compare.version("n") > 0],
        success=[Op.put("lock", "me"), Op.get("n")],
        failure=[Op.get("lock")],
    )
    assert taken.succeeded
    again = etcd_client.txn([Compare.create_revision("lock") == 0], [Op.put("lock", "you")])
    assert not again.succeeded
    held = etcd_client.get("lock")
    assert held is not None and held.value == b"me"


def test_every_call_after_close_raises_client_closed(etcd_endpoints: list[str]) -> None:
    client = geetcd.Client(etcd_endpoints, namespace="/geetcd-test/closed/")
    client.put("a", "1")
    client.close()
    attempts = {
        "get": lambda: client.get("a"),
        "put": lambda: client.put("a", "2"),
        "txn": lambda: client.txn([], [Op.get("a")]),
        "watch": lambda: client.watch("a"),
        "lease": lambda: client.lease(5),
        "leases": client.leases,
        "status": client.status,
        "iter_prefix": lambda: list(client.iter_prefix("")),
    }
    for name, attempt in attempts.items():
        with pytest.raises(geetcd.ClientClosed):
            attempt()
        assert name  # (the loop names the failing call in pytest's report)


@pytest.fixture
def etcd_v2(etcd_endpoints: list[str]) -> Iterator[v2.Client]:
    with v2.Client(etcd_endpoints, timeout=10.0) as client:
        yield client


def test_v2_ttl_zero_means_no_ttl(etcd_v2: v2.Client, etcd_prefix: str) -> None:
    """go-etcd sends a ttl only above zero; code ported from it passes 0 everywhere."""
    key = f"{etcd_prefix}ttl0"
    assert etcd_v2.set(key, "a", 0).node.ttl is None
    assert etcd_v2.set(key, "b", 30).node.ttl is not None
    updated = etcd_v2.update(key, "c", 0)  # 0 (and None) remove the TTL, as in go-etcd
    assert updated.node.ttl is None and updated.node.value == "c"
    assert etcd_v2.get(key).node.ttl is None
    assert etcd_v2.create(f"{key}-new", "x", 0).node.ttl is None
    with pytest.raises(geetcd.InvalidArgument):
        etcd_v2.set(key, "d", -1)
    assert etcd_v2.get(key).node.value == "c"  # the refused call sent nothing
