"""The KV client against a real etcd: every method and option, errors and limits.

``etcd_client`` is bound to a namespace unique to the test, so tests never see each other's
keys. Compaction is global to a server, so the compaction tests use a private etcd.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import geetcd
from geetcd import (
    ClusterUnavailable,
    CompactedRevision,
    Compare,
    DeleteResponse,
    FutureRevision,
    InvalidArgument,
    InvalidType,
    KeyNotFound,
    KeyValue,
    MemberState,
    Op,
    PutResponse,
    RangeResponse,
    RequestTooLarge,
    SortOrder,
    SortTarget,
    TxnResponse,
)
from geetcd.testing import EtcdCluster

pytestmark = pytest.mark.timeout(120)

MiB = 1024 * 1024


@pytest.fixture
def raw_client(etcd_endpoints: list[str]) -> Iterator[geetcd.Client]:
    """A client without namespace, to look at the wire keys."""
    client = geetcd.Client(etcd_endpoints)
    yield client
    client.close()


def put_many(client: geetcd.Client, items: dict[str, str]) -> int:
    """Put ``items`` one by one; return the revision of the last put."""
    revision = 0
    for key, value in items.items():
        revision = client.put(key, value).header.revision
    return revision


# ---------------------------------------------------------------------------- get
def test_put_and_get(etcd_client: geetcd.Client) -> None:
    response = etcd_client.put("a", "1")
    assert isinstance(response, PutResponse)
    assert response.prev_kv is None
    kv = etcd_client.get("a")
    assert isinstance(kv, KeyValue)
    assert kv.key == b"a" and kv.value == b"1"
    assert kv.version == 1
    assert kv.create_revision == kv.mod_revision == response.header.revision
    assert kv.lease == 0


def test_get_missing_is_none(etcd_client: geetcd.Client) -> None:
    assert etcd_client.get("missing") is None
    response = etcd_client.range("missing")
    assert response.kvs == () and response.count == 0 and response.more is False


def test_bytes_keys_and_values_round_trip(etcd_client: geetcd.Client) -> None:
    key = b"\x00bin\xff\xfe"
    value = bytes(range(256))
    etcd_client.put(key, value)
    kv = etcd_client.get(key)
    assert kv is not None and kv.key == key and kv.value == value
    etcd_client.put("é", "ü")
    kv = etcd_client.get("é")
    assert kv is not None and kv.value == "ü".encode()
    etcd_client.put("empty", "")
    kv = etcd_client.get("empty")
    assert kv is not None and kv.value == b"" and kv.version == 1


def test_get_at_old_revision(etcd_client: geetcd.Client) -> None:
    r1 = etcd_client.put("k", "v1").header.revision
    r2 = etcd_client.put("k", "v2").header.revision
    etcd_client.delete("k")
    assert etcd_client.get("k") is None
    old = etcd_client.get("k", revision=r1)
    assert old is not None and old.value == b"v1" and old.mod_revision == r1
    newer = etcd_client.get("k", revision=r2)
    assert newer is not None and newer.value == b"v2" and newer.version == 2
    response = etcd_client.range("k", revision=r1)
    assert response.kvs[0].value == b"v1"


def test_future_revision(etcd_client: geetcd.Client) -> None:
    current = etcd_client.put("k", "v").header.revision
    with pytest.raises(FutureRevision) as info:
        etcd_client.get("k", revision=current + 100_000)
    assert info.value.code == 11 and info.value.http_status == 400
    assert info.value.member in etcd_client.endpoints
    with pytest.raises(FutureRevision):
        etcd_client.range("k", prefix=True, revision=current + 100_000)


def test_serializable_get(etcd_client: geetcd.Client) -> None:
    etcd_client.put("s", "v")
    kv = etcd_client.get("s", serializable=True)
    assert kv is not None and kv.value == b"v"
    response = etcd_client.range("s", serializable=True)
    assert response.count == 1


def test_response_headers(etcd_client: geetcd.Client, etcd_endpoints: list[str]) -> None:
    put = etcd_client.put("h", "v")
    status = etcd_client.status()
    members = etcd_client.member_list()
    for header in (put.header, etcd_client.range("h").header, status.header):
        assert header.revision >= put.header.revision > 0
        assert header.member_id == status.header.member_id > 0
        assert header.cluster_id == status.header.cluster_id > 0
        assert header.raft_term >= 1
    assert members.header.revision == 0  # member list headers carry no revision
    assert members.header.member_id == status.header.member_id


# ---------------------------------------------------------------------------- range
@pytest.fixture
def dir_keys(etcd_client: geetcd.Client) -> dict[str, str]:
    items = {f"dir/{c}": f"val-{c}" for c in "abcde"}
    items["dir0"] = "outside"  # the first key after the prefix
    items["dis"] = "before"
    put_many(etcd_client, items)
    return items


def test_range_prefix(etcd_client: geetcd.Client, dir_keys: dict[str, str]) -> None:
    response = etcd_client.range("dir/", prefix=True)
    assert isinstance(response, RangeResponse)
    assert [kv.key for kv in response.kvs] == [f"dir/{c}".encode() for c in "abcde"]
    assert [kv.value for kv in response.kvs] == [f"val-{c}".encode() for c in "abcde"]
    assert response.count == 5 and response.more is False


def test_range_end(etcd_client: geetcd.Client, dir_keys: dict[str, str]) -> None:
    response = etcd_client.range("dir/b", "dir/d")
    assert [kv.key for kv in response.kvs] == [b"dir/b", b"dir/c"]
    # "\0" as range_end: to the end of the namespace
    response = etcd_client.range("dir/d", "\0")
    assert [kv.key for kv in response.kvs] == [b"dir/d", b"dir/e", b"dir0", b"dis"]
    # the empty key with prefix=True: the whole namespace
    assert etcd_client.range("", prefix=True).count == len(dir_keys)


def test_range_limit_more_and_total_count(
    etcd_client: geetcd.Client, dir_keys: dict[str, str]
) -> None:
    response = etcd_client.range("dir/", prefix=True, limit=2)
    assert [kv.key for kv in response.kvs] == [b"dir/a", b"dir/b"]
    assert response.more is True
    assert response.count == 5  # the total in range, not len(kvs)
    response = etcd_client.range("dir/", prefix=True, limit=5)
    assert len(response.kvs) == 5 and response.more is False


def test_range_keys_only_and_count_only(
    etcd_client: geetcd.Client, dir_keys: dict[str, str]
) -> None:
    keys_only = etcd_client.range("dir/", prefix=True, keys_only=True)
    assert [kv.key for kv in keys_only.kvs] == [f"dir/{c}".encode() for c in "abcde"]
    assert all(kv.value == b"" and kv.mod_revision > 0 for kv in keys_only.kvs)
    count_only = etcd_client.range("dir/", prefix=True, count_only=True)
    assert count_only.kvs == () and count_only.count == 5


@pytest.mark.parametrize(
    ("order", "target"),
    [
        ("descend", "key"),
        (SortOrder.DESCEND, SortTarget.KEY),
        ("DESCEND", "KEY"),
    ],
)
def test_range_sort_descend_by_key(
    etcd_client: geetcd.Client, dir_keys: dict[str, str], order: Any, target: Any
) -> None:
    response = etcd_client.range("dir/", prefix=True, sort_order=order, sort_target=target)
    assert [kv.key for kv in response.kvs] == [f"dir/{c}".encode() for c in "edcba"]


def test_range_sort_targets(etcd_client: geetcd.Client) -> None:
    # values, versions and revisions in an order different from the key order
    etcd_client.put("s/a", "3")
    etcd_client.put("s/b", "1")
    etcd_client.put("s/c", "2")
    etcd_client.put("s/a", "3")  # version 2, newest mod revision
    by_value = etcd_client.range("s/", prefix=True, sort_order="ascend", sort_target="value")
    assert [kv.value for kv in by_value.kvs] == [b"1", b"2", b"3"]
    by_value = etcd_client.range(
        "s/", prefix=True, sort_order=SortOrder.DESCEND, sort_target=SortTarget.VALUE
    )
    assert [kv.value for kv in by_value.kvs] == [b"3", b"2", b"1"]
    by_mod = etcd_client.range("s/", prefix=True, sort_order="ascend", sort_target="mod")
    assert [kv.key for kv in by_mod.kvs] == [b"s/b", b"s/c", b"s/a"]
    by_create = etcd_client.range("s/", prefix=True, sort_order="descend", sort_target="create")
    assert [kv.key for kv in by_create.kvs] == [b"s/c", b"s/b", b"s/a"]
    by_version = etcd_client.range(
        "s/", prefix=True, sort_order="descend", sort_target=SortTarget.VERSION
    )
    assert by_version.kvs[0].key == b"s/a"
    # a target without an order sorts ascending (etcd's rule)
    implicit = etcd_client.range("s/", prefix=True, sort_target="value")
    assert [kv.value for kv in implicit.kvs] == [b"1", b"2", b"3"]
    ascend_by_key = etcd_client.range("s/", prefix=True, sort_order="ascend")
    assert [kv.key for kv in ascend_by_key.kvs] == [b"s/a", b"s/b", b"s/c"]


def test_range_revision_filters(etcd_client: geetcd.Client) -> None:
    r_a = etcd_client.put("f/a", "1").header.revision
    r_b = etcd_client.put("f/b", "1").header.revision
    r_c = etcd_client.put("f/c", "1").header.revision
    r_a2 = etcd_client.put("f/a", "2").header.revision  # a: created r_a, modified r_a2

    def keys(**options: Any) -> list[bytes]:
        return [kv.key for kv in etcd_client.range("f/", prefix=True, **options).kvs]

    assert keys(min_mod_revision=r_b) == [b"f/a", b"f/b", b"f/c"]
    assert keys(min_mod_revision=r_c) == [b"f/a", b"f/c"]
    assert keys(max_mod_revision=r_c) == [b"f/b", b"f/c"]
    assert keys(min_create_revision=r_b) == [b"f/b", b"f/c"]
    assert keys(max_create_revision=r_b) == [b"f/a", b"f/b"]
    assert keys(min_create_revision=r_b, max_create_revision=r_b) == [b"f/b"]
    assert keys(max_create_revision=r_a) == [b"f/a"]
    assert keys(min_mod_revision=r_a2 + 1) == []


def test_get_prefix(etcd_client: geetcd.Client, dir_keys: dict[str, str]) -> None:
    kvs = etcd_client.get_prefix("dir/")
    assert isinstance(kvs, list)
    assert {kv.key.decode(): kv.value.decode() for kv in kvs} == {
        k: v for k, v in dir_keys.items() if k.startswith("dir/")
    }
    limited = etcd_client.get_prefix("dir/", limit=2, keys_only=True)
    assert [kv.key for kv in limited] == [b"dir/a", b"dir/b"]
    assert all(kv.value == b"" for kv in limited)
    assert etcd_client.get_prefix("nothing-here/") == []


def test_namespace_is_applied_on_the_wire(
    etcd_client: geetcd.Client, raw_client: geetcd.Client, etcd_prefix: str
) -> None:
    etcd_client.put("x/y", "v")
    wire = raw_client.get(etcd_prefix + "x/y")
    assert wire is not None and wire.value == b"v" and wire.key == (etcd_prefix + "x/y").encode()
    raw_client.put(etcd_prefix + "from-raw", "r")
    kv = etcd_client.get("from-raw")
    assert kv is not None and kv.key == b"from-raw"
    # keys just outside the namespace stay invisible to it
    outside = etcd_prefix[:-1] + "0"  # the first key after the namespace
    raw_client.put(outside, "o")
    try:
        keys = [kv.key for kv in etcd_client.get_prefix("")]
        assert keys == [b"from-raw", b"x/y"]
        assert etcd_client.range("", prefix=True).count == 2
    finally:
        raw_client.delete(outside)


# ---------------------------------------------------------------------------- put
def test_put_prev_kv(etcd_client: geetcd.Client) -> None:
    first = etcd_client.put("p", "old", prev_kv=True)
    assert first.prev_kv is None  # nothing before
    second = etcd_client.put("p", "new", prev_kv=True)
    assert second.prev_kv is not None
    assert second.prev_kv.key == b"p" and second.prev_kv.value == b"old"
    assert second.prev_kv.mod_revision == first.header.revision
    assert second.header.revision > first.header.revision


def test_put_ignore_value(etcd_client: geetcd.Client) -> None:
    etcd_client.put("iv", "keep")
    response = etcd_client.put("iv", None, ignore_value=True, prev_kv=True)  # type: ignore[arg-type]
    assert response.prev_kv is not None and response.prev_kv.value == b"keep"
    kv = etcd_client.get("iv")
    assert kv is not None and kv.value == b"keep" and kv.version == 2
    with pytest.raises(KeyNotFound) as info:
        etcd_client.put("iv-missing", None, ignore_value=True)  # type: ignore[arg-type]
    assert isinstance(info.value, InvalidArgument)
    assert info.value.code == 3 and info.value.http_status == 400
    assert etcd_client.get("iv-missing") is None


def test_put_with_lease(etcd_client: geetcd.Client) -> None:
    lease_id = etcd_client.core.call(
        "/lease/grant", {"TTL": 30}, lambda o: int(o["ID"]), False, None, None
    )
    assert lease_id > 0
    try:
        etcd_client.put("leased", "v", lease=lease_id)
        kv = etcd_client.get("leased")
        assert kv is not None and kv.lease == lease_id
        # ignore_lease keeps the lease while changing the value
        etcd_client.put("leased", "v2", ignore_lease=True)
        kv = etcd_client.get("leased")
        assert kv is not None and kv.lease == lease_id and kv.value == b"v2"
        # a put without lease detaches it
        etcd_client.put("leased", "v3")
        kv = etcd_client.get("leased")
        assert kv is not None and kv.lease == 0
    finally:
        etcd_client.core.call("/lease/revoke", {"ID": lease_id}, lambda o: o, False, None, None)


def test_put_with_unknown_lease(etcd_client: geetcd.Client) -> None:
    with pytest.raises(geetcd.LeaseNotFound) as info:
        etcd_client.put("k", "v", lease=123456789)
    assert info.value.http_status == 404 and info.value.code == 5


def test_one_mib_value_round_trips(etcd_client: geetcd.Client) -> None:
    value = bytes(range(256)) * (MiB // 256)
    etcd_client.put("big", value)
    kv = etcd_client.get("big")
    assert kv is not None and kv.value == value and len(kv.value) == MiB


def test_a_multi_mib_answer_arrives_whole(etcd_client: geetcd.Client) -> None:
    """Eight 1 MiB values in one range: an answer of ~11 MiB (base64), received over many
    socket reads, is byte-exact and the connection serves the next call."""
    values = {f"bulk/{i}": bytes([i]) * MiB for i in range(8)}
    for key, value in values.items():
        etcd_client.put(key, value)
    got = etcd_client.get_prefix("bulk/")
    assert {kv.key.decode(): kv.value for kv in got} == values
    assert etcd_client.get("bulk/3") is not None


@pytest.mark.parametrize(("size", "status"), [(int(1.6 * MiB), 400), (int(2.1 * MiB), 429)])
def test_over_limit_value_is_request_too_large_and_client_keeps_working(
    etcd_client: geetcd.Client, size: int, status: int
) -> None:
    with pytest.raises(RequestTooLarge) as info:
        etcd_client.put("too-big", b"x" * size)
    assert info.value.http_status == status
    assert not info.value.transient  # not a "retry later", even for the 429
    assert etcd_client.get("too-big") is None
    # the member is not benched and the next calls work
    assert all(m.state is MemberState.HEALTHY for m in etcd_client.cluster_state.members)
    etcd_client.put("after", "ok")
    kv = etcd_client.get("after")
    assert kv is not None and kv.value == b"ok"


# ---------------------------------------------------------------------------- delete
def test_delete_single(etcd_client: geetcd.Client) -> None:
    etcd_client.put("d", "v")
    response = etcd_client.delete("d")
    assert isinstance(response, DeleteResponse)
    assert response.deleted == 1 and response.prev_kvs == ()
    assert etcd_client.get("d") is None
    missing = etcd_client.delete("d")
    assert missing.deleted == 0


def test_delete_prev_kv(etcd_client: geetcd.Client) -> None:
    etcd_client.put("d", "v")
    response = etcd_client.delete("d", prev_kv=True)
    assert response.deleted == 1
    assert [(kv.key, kv.value) for kv in response.prev_kvs] == [(b"d", b"v")]


def test_delete_prefix(etcd_client: geetcd.Client, dir_keys: dict[str, str]) -> None:
    response = etcd_client.delete_prefix("dir/", prev_kv=True)
    assert response.deleted == 5
    assert sorted(kv.key for kv in response.prev_kvs) == [f"dir/{c}".encode() for c in "abcde"]
    assert etcd_client.get_prefix("dir/") == []
    assert etcd_client.get("dir0") is not None  # just after the prefix: untouched
    assert etcd_client.delete("dis", prefix=True).deleted == 1


def test_delete_range_end(etcd_client: geetcd.Client, dir_keys: dict[str, str]) -> None:
    response = etcd_client.delete("dir/b", range_end="dir/d")
    assert response.deleted == 2
    assert [kv.key for kv in etcd_client.get_prefix("dir/")] == [b"dir/a", b"dir/d", b"dir/e"]


# ---------------------------------------------------------------------------- txn
def test_txn_success_branch(etcd_client: geetcd.Client) -> None:
    etcd_client.put("tx", "v1")
    etcd_client.put("gone", "x")
    response = etcd_client.txn(
        [Compare.value("tx") == "v1", Compare.version("tx") > 0],
        [
            Op.put("tx", "v2", prev_kv=True),
            Op.get("tx"),
            Op.delete("gone", prev_kv=True),
            Op.txn([Compare.version("absent") == 0], [Op.get("tx", keys_only=True)]),
        ],
        [Op.get("tx")],
    )
    assert isinstance(response, TxnResponse)
    assert response.succeeded is True
    put, rng, delete, nested = response.responses
    assert isinstance(put, PutResponse)
    assert put.prev_kv is not None and put.prev_kv.value == b"v1" and put.prev_kv.key == b"tx"
    assert isinstance(rng, RangeResponse)
    assert rng.kvs[0].value == b"v2" and rng.kvs[0].key == b"tx" and rng.count == 1
    assert isinstance(delete, DeleteResponse)
    assert delete.deleted == 1 and delete.prev_kvs[0].key == b"gone"
    assert isinstance(nested, TxnResponse) and nested.succeeded is True
    inner = nested.responses[0]
    assert isinstance(inner, RangeResponse)
    assert inner.kvs[0].key == b"tx" and inner.kvs[0].value == b""
    assert response.header.revision == put.header.revision
    assert etcd_client.get("gone") is None


def test_txn_failure_branch(etcd_client: geetcd.Client) -> None:
    etcd_client.put("tx", "actual")
    response = etcd_client.txn(
        [Compare.value("tx") == "expected"],
        [Op.put("tx", "changed")],
        [Op.get("tx"), Op.put("failed-branch", "ran")],
    )
    assert response.succeeded is False
    rng, put = response.responses
    assert isinstance(rng, RangeResponse) and rng.kvs[0].value == b"actual"
    assert isinstance(put, PutResponse)
    kv = etcd_client.get("tx")
    assert kv is not None and kv.value == b"actual"
    assert etcd_client.get("failed-branch") is not None


def test_txn_compares_on_every_target(etcd_client: geetcd.Client) -> None:
    created = etcd_client.put("c", "v").header.revision
    modified = etcd_client.put("c", "w").header.revision

    def holds(comparison: Any) -> bool:
        return etcd_client.txn([comparison]).succeeded

    assert holds(Compare.value("c") == "w")
    assert holds(Compare.value("c") != "v")
    assert holds(Compare.value("c") > "a") and holds(Compare.value("c") < "z")
    assert holds(Compare.version("c") == 2) and not holds(Compare.version("c") < 2)
    assert holds(Compare.create_revision("c") == created)
    assert holds(Compare.mod_revision("c") == modified)
    assert holds(Compare.mod_revision("c") > created)
    assert holds(Compare.lease("c") == 0)
    assert holds(Compare.version("missing") == 0)  # a missing key has version 0
    assert not holds(Compare.value("missing") == "")  # ...but no value to compare
    etcd_client.put("c2", "w")
    assert holds(Compare.value("c", range_end="c3") == "w")  # compare over a range
    assert not holds(Compare.version("c", range_end="c3") == 2)


def test_txn_empty(etcd_client: geetcd.Client) -> None:
    response = etcd_client.txn()
    assert response.succeeded is True and response.responses == ()


def test_read_only_txn(etcd_client: geetcd.Client) -> None:
    etcd_client.put("r1", "a")
    etcd_client.put("r2", "b")
    response = etcd_client.txn([], [Op.get("r", prefix=True), Op.get("r1")], [])
    assert response.succeeded
    all_r, one = response.responses
    assert isinstance(all_r, RangeResponse) and [kv.key for kv in all_r.kvs] == [b"r1", b"r2"]
    assert isinstance(one, RangeResponse) and one.kvs[0].value == b"a"


def test_put_if_absent(etcd_client: geetcd.Client) -> None:
    assert etcd_client.put_if_absent("lock", "me") is True
    assert etcd_client.put_if_absent("lock", "you") is False
    kv = etcd_client.get("lock")
    assert kv is not None and kv.value == b"me"


def test_replace(etcd_client: geetcd.Client) -> None:
    etcd_client.put("cas", "old")
    assert etcd_client.replace("cas", "wrong", "new") is False
    assert etcd_client.replace("cas", "old", "new") is True
    assert etcd_client.replace("cas", "old", "newer") is False
    kv = etcd_client.get("cas")
    assert kv is not None and kv.value == b"new"
    assert etcd_client.replace("cas-missing", "", "x") is False  # no value to compare


def test_txn_duplicate_key_is_invalid_argument(etcd_client: geetcd.Client) -> None:
    with pytest.raises(InvalidArgument) as info:
        etcd_client.txn([], [Op.put("dup", "1"), Op.put("dup", "2")])
    assert "duplicate key" in str(info.value)


# ---------------------------------------------------------------------------- status / members
def test_status(etcd_client: geetcd.Client) -> None:
    status = etcd_client.status()
    assert status.version.startswith("3.")
    assert status.leader == status.header.member_id  # one member: it leads
    assert status.db_size > 0 and status.db_size_in_use > 0
    assert status.raft_index > 0 and status.raft_term > 0
    assert status.raft_applied_index > 0
    assert status.errors == ()


def test_member_list(etcd_client: geetcd.Client, etcd_endpoints: list[str]) -> None:
    members = etcd_client.member_list()
    assert len(members.members) == 1
    (member,) = members.members
    assert member.id == members.header.member_id > 0
    assert member.name
    assert list(member.client_urls) == etcd_endpoints
    assert member.peer_urls and member.peer_urls[0].startswith("http://127.0.0.1:")
    assert member.is_learner is False


# ---------------------------------------------------------------------------- input errors
@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.put(1, "v"),
        lambda c: c.put("k", 1),
        lambda c: c.put("k", None),
        lambda c: c.get(None),
        lambda c: c.get("k", revision="3"),
        lambda c: c.get("k", serializable="yes"),
        lambda c: c.range("k", limit="5"),
        lambda c: c.range("k", keys_only="true"),
        lambda c: c.range("k", range_end=5),
        lambda c: c.range("k", sort_order=2),
        lambda c: c.range("k", min_mod_revision=1.5),
        lambda c: c.delete("k", prev_kv=1),
        lambda c: c.put("k", "v", lease="12"),
        lambda c: c.txn([True]),
        lambda c: c.txn([], ["put k v"]),
        lambda c: c.compact("5"),
        lambda c: c.iter_prefix("p", page_size="10").__next__(),
    ],
)
def test_wrong_types_raise_invalid_type(etcd_client: geetcd.Client, call: Any) -> None:
    with pytest.raises(InvalidType) as info:
        call(etcd_client)
    assert isinstance(info.value, TypeError)
    assert info.value.member is None  # raised before sending


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.range("k", sort_order="sideways"),
        lambda c: c.range("k", limit=-1),
        lambda c: c.get("k", revision=-1),
        lambda c: c.get("k", timeout=0),
        lambda c: c.get("k", timeout=-1),
        lambda c: c.compact(0),
        lambda c: c.iter_prefix("p", page_size=0).__next__(),
    ],
)
def test_bad_values_raise_invalid_argument(etcd_client: geetcd.Client, call: Any) -> None:
    with pytest.raises(InvalidArgument):
        call(etcd_client)


def test_client_context_manager_and_close(etcd_endpoints: list[str]) -> None:
    with geetcd.Client(etcd_endpoints) as client:
        assert client.status().version
        assert "open" in repr(client)
    assert client.closed
    assert "closed" in repr(client)
    client.close()  # idempotent
    with pytest.raises(ClusterUnavailable):
        client.get("k")


# ---------------------------------------------------------------------------- compaction
@pytest.fixture(scope="module")
def private_etcd() -> Iterator[EtcdCluster]:
    """Compaction drops history for every user of a server: keep it off the shared one."""
    with EtcdCluster(size=1) as cluster:
        yield cluster


@pytest.fixture
def private_client(private_etcd: EtcdCluster) -> Iterator[geetcd.Client]:
    client = geetcd.Client(private_etcd.endpoints, namespace="/compaction/")
    yield client
    client.close()


def test_compact_and_compacted_reads(private_client: geetcd.Client) -> None:
    r1 = private_client.put("k", "v1").header.revision
    r2 = private_client.put("k", "v2").header.revision
    r3 = private_client.put("k", "v3").header.revision
    header = private_client.compact(r2)
    assert header.revision >= r3
    with pytest.raises(CompactedRevision) as info:
        private_client.get("k", revision=r1)
    assert info.value.code == 11 and info.value.http_status == 400
    with pytest.raises(CompactedRevision):
        private_client.range("k", prefix=True, revision=r1)
    # the compaction revision itself is still readable
    kv = private_client.get("k", revision=r2)
    assert kv is not None and kv.value == b"v2"
    # compacting at or below the compacted revision again
    with pytest.raises(CompactedRevision):
        private_client.compact(r2)
    with pytest.raises(CompactedRevision):
        private_client.compact(r1)
    # physical compaction of a newer revision works and the client keeps working
    private_client.compact(r3, physical=True)
    kv = private_client.get("k")
    assert kv is not None and kv.value == b"v3"


def test_compact_future_revision(private_client: geetcd.Client) -> None:
    current = private_client.put("f", "v").header.revision
    with pytest.raises(FutureRevision):
        private_client.compact(current + 100_000)
