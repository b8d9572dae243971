"""geetcd.v2 against a real etcd 3.5 with --enable-v2 (the session ``etcd_server``).

Every test works under its own key prefix (``etcd_prefix``); the v2 key space is separate
from v3, so nothing here touches v3 keys.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import gevent
import pytest
from polling import wait_for

import geetcd
from geetcd import v2
from geetcd.testing import EtcdCluster
from geetcd.v2 import protocol as proto

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def etcd(etcd_endpoints: list[str]) -> Iterator[v2.Client]:
    with v2.Client(etcd_endpoints, timeout=10.0) as client:
        yield client


@pytest.fixture
def p(etcd_prefix: str) -> str:
    """The test's key prefix without the trailing slash, e.g. /geetcd-test/test_x-1a2b3c4d."""
    return etcd_prefix.rstrip("/")


# ---------------------------------------------------------------------------- set / get
def test_set_get_overwrite(etcd: v2.Client, p: str) -> None:
    created = etcd.set(f"{p}/message", "Hello world")
    assert created.action == "set" and created.prev_node is None
    assert created.node.key == f"{p}/message" and created.node.value == "Hello world"
    assert created.node.created_index == created.node.modified_index == created.etcd_index
    assert created.raft_index > 0 and created.raft_term > 0

    again = etcd.set(f"{p}/message", b"v2 \xc3\xa9")
    assert again.node.value == "v2 é"
    assert again.prev_node is not None and again.prev_node.value == "Hello world"
    assert again.node.modified_index > created.node.modified_index

    read = etcd.get(f"{p}/message")
    assert read.action == "get" and read.node == again.node
    assert read.etcd_index >= again.node.modified_index


def test_odd_keys_and_values_round_trip(etcd: v2.Client, p: str) -> None:
    key = f"{p}/sp ace?#%&=+ключ"
    value = "line1\nline2 & = + % ✓"
    assert etcd.set(key, value).node.key == key
    assert etcd.get(key).node.value == value
    assert etcd.get(f"//{p}/./x/../sp ace?#%&=+ключ/").node.value == value
    assert etcd.set(f"{p}/empty", "").node.value == ""


def test_directories_listing_sorted_and_recursive(etcd: v2.Client, p: str) -> None:
    for name in ("c", "a", "b"):
        etcd.set(f"{p}/d/{name}", name)
    etcd.set(f"{p}/d/sub/leaf", "x")

    flat = etcd.get(f"{p}/d", sort=True).node
    assert flat.dir and flat.value is None
    assert [n.key.rsplit("/", 1)[1] for n in flat.nodes] == ["a", "b", "c", "sub"]
    sub = flat.nodes[3]
    assert sub.dir and sub.nodes == ()  # one level deep

    tree = etcd.get(f"{p}/d", sort=True, recursive=True).node
    assert [n.key for n in tree.nodes[3].nodes] == [f"{p}/d/sub/leaf"]
    assert sum(1 for _ in tree.walk()) == 6

    root = etcd.get("/").node
    assert root.key == "/" and root.dir
    assert any(n.key == "/geetcd-test" for n in root.nodes)


def test_set_dir_and_create_dir(etcd: v2.Client, p: str) -> None:
    made = etcd.set_dir(f"{p}/dir")
    assert made.node.dir and made.action == "set"
    with pytest.raises(v2.NotFile) as info:
        etcd.set_dir(f"{p}/dir")
    assert info.value.error_code == 102 and info.value.cause == f"{p}/dir"

    assert etcd.create_dir(f"{p}/dir2", ttl=60).node.ttl is not None
    with pytest.raises(v2.NodeExist) as exists:
        etcd.create_dir(f"{p}/dir2")
    assert exists.value.error_code == 105 and exists.value.http_status == 412
    with pytest.raises(v2.NotFile):
        etcd.set(f"{p}/dir", "value on a dir")


def test_create_and_update(etcd: v2.Client, p: str) -> None:
    created = etcd.create(f"{p}/k", "one")
    assert created.action == "create"
    with pytest.raises(v2.NodeExist) as info:
        etcd.create(f"{p}/k", "two")
    assert info.value.index >= created.node.modified_index
    assert isinstance(info.value, geetcd.FailedPrecondition)

    with pytest.raises(v2.KeyNotFound) as missing:
        etcd.update(f"{p}/missing", "x")
    assert missing.value.error_code == 100 and isinstance(missing.value, LookupError)

    updated = etcd.update(f"{p}/k", "two", ttl=60)
    assert updated.action == "update" and updated.node.ttl is not None
    assert updated.prev_node is not None and updated.prev_node.value == "one"
    permanent = etcd.update(f"{p}/k", "three")
    assert permanent.node.ttl is None and permanent.node.expiration is None


def test_update_dir_hits_the_etcd_3_5_store_bug(etcd: v2.Client, p: str) -> None:
    etcd.set_dir(f"{p}/dir", ttl=100)
    with pytest.raises(v2.InternalError) as info:
        etcd.update_dir(f"{p}/dir", ttl=200)
    assert info.value.error_code == 300 and "Not a file" in info.value.cause
    assert not info.value.transient
    # Deterministic: no member was benched for it.
    states = {m.state for m in etcd.client.cluster_state.members}
    assert states == {geetcd.MemberState.HEALTHY}
    with pytest.raises(v2.KeyNotFound):
        etcd.update_dir(f"{p}/nodir", ttl=5)


def test_in_order_keys(etcd: v2.Client, p: str) -> None:
    first = etcd.create_in_order(f"{p}/queue", "j1")
    second = etcd.add_child(f"{p}/queue", "j2", ttl=60)
    child_dir = etcd.add_child_dir(f"{p}/queue")
    assert first.action == "create"
    names = [r.node.key.rsplit("/", 1)[1] for r in (first, second, child_dir)]
    assert all(len(n) == 20 and n.isdigit() for n in names)
    assert names == sorted(names) and len(set(names)) == 3
    assert child_dir.node.dir and second.node.ttl is not None

    listed = etcd.get(f"{p}/queue", sort=True).node.nodes
    assert [n.value for n in listed] == ["j1", "j2", None]


def test_compare_and_swap(etcd: v2.Client, p: str) -> None:
    key = f"{p}/cas"
    start = etcd.set(key, "v1")
    with pytest.raises(v2.CompareFailed) as info:
        etcd.compare_and_swap(key, "v2", prev_value="wrong")
    assert info.value.error_code == 101 and info.value.cause == "[wrong != v1]"
    assert isinstance(info.value, v2.TestFailed)

    swapped = etcd.compare_and_swap(key, "v2", prev_value="v1")
    assert swapped.action == "compareAndSwap" and swapped.node.value == "v2"
    with pytest.raises(v2.CompareFailed):
        etcd.compare_and_swap(key, "v3", prev_index=start.node.modified_index)
    by_index = etcd.compare_and_swap(
        key, "v3", ttl=60, prev_value="v2", prev_index=swapped.node.modified_index
    )
    assert by_index.node.value == "v3" and by_index.node.ttl is not None
    with pytest.raises(v2.KeyNotFound):
        etcd.compare_and_swap(f"{p}/nothing", "x", prev_value="y")
    assert etcd.get(key).node.value == "v3"


def test_compare_and_delete(etcd: v2.Client, p: str) -> None:
    key = f"{p}/cad"
    written = etcd.set(key, "v")
    with pytest.raises(v2.CompareFailed):
        etcd.compare_and_delete(key, prev_value="nope")
    with pytest.raises(v2.CompareFailed):
        etcd.compare_and_delete(key, prev_index=written.node.modified_index + 100)
    deleted = etcd.compare_and_delete(key, prev_value="v", prev_index=written.node.modified_index)
    assert deleted.action == "compareAndDelete"
    assert deleted.prev_node is not None and deleted.prev_node.value == "v"
    with pytest.raises(v2.KeyNotFound):
        etcd.get(key)


def test_delete_and_delete_dir(etcd: v2.Client, p: str) -> None:
    etcd.set(f"{p}/tree/a/b", "x")
    with pytest.raises(v2.NotFile):
        etcd.delete(f"{p}/tree")
    with pytest.raises(v2.DirNotEmpty) as info:
        etcd.delete_dir(f"{p}/tree")
    assert info.value.error_code == 108
    etcd.set_dir(f"{p}/empty")
    assert etcd.delete_dir(f"{p}/empty").node.dir

    gone = etcd.delete(f"{p}/tree", recursive=True)
    assert gone.action == "delete" and gone.node.dir
    with pytest.raises(v2.KeyNotFound):
        etcd.delete(f"{p}/tree")
    plain = etcd.set(f"{p}/plain", "x")
    removed = etcd.delete(f"{p}/plain")
    assert removed.node.value is None
    assert removed.node.modified_index > plain.node.modified_index


def test_not_dir_root_read_only_and_server_side_form_errors(etcd: v2.Client, p: str) -> None:
    etcd.set(f"{p}/file", "x")
    with pytest.raises(v2.NotDir) as not_dir:
        etcd.set(f"{p}/file/child", "y")
    assert not_dir.value.error_code == 104
    with pytest.raises(v2.RootReadOnly) as root:
        etcd.set("/", "x")
    assert root.value.error_code == 107 and isinstance(root.value, geetcd.InvalidArgument)

    # The client validates what it sends, so forms etcd refuses are sent by hand here.
    key = proto.key_path(f"{p}/file")
    with pytest.raises(v2.TTLNaN) as nan:
        etcd._send(proto.Request("PUT", key, b"value=x&ttl=abc"), None)
    assert nan.value.error_code == 202 and isinstance(nan.value, ValueError)
    with pytest.raises(v2.RefreshValue) as refresh:
        etcd._send(
            proto.Request("PUT", key + "?refresh=true&prevExist=true", b"value=x&ttl=5"), None
        )
    assert refresh.value.error_code == 211
    with pytest.raises(v2.PrevValueRequired):
        etcd._send(proto.Request("PUT", key + "?prevValue=", b"value=x"), None)
    assert etcd.get(f"{p}/file").node.value == "x"


def test_inputs_are_checked_before_sending(etcd: v2.Client) -> None:
    with pytest.raises(geetcd.InvalidArgument):
        etcd.set("", "x")
    with pytest.raises(geetcd.InvalidArgument):
        etcd.set("/k", "x", ttl=-1)
    with pytest.raises(geetcd.InvalidType):
        etcd.set("/k", 5)  # type: ignore[arg-type]
    with pytest.raises(geetcd.InvalidArgument):
        etcd.compare_and_swap("/k", "x")
    with pytest.raises(geetcd.InvalidType):
        etcd.get("/k", quorum="yes")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- TTL
def test_ttl_expiry_and_expire_event(etcd: v2.Client, p: str) -> None:
    key = f"{p}/tmp"
    written = etcd.set(key, "t", ttl=1)
    assert written.node.ttl == 1 and written.node.expiration is not None
    event = etcd.watch(key, written.node.modified_index + 1, timeout=10)
    assert event.action == "expire" and event.node.key == key
    assert event.prev_node is not None and event.prev_node.value == "t"
    with pytest.raises(v2.KeyNotFound):
        etcd.get(key)


def test_refresh_resets_ttl_without_value_or_event(etcd: v2.Client, p: str) -> None:
    key = f"{p}/lease"
    written = etcd.set(key, "keep", ttl=2)
    refreshed = etcd.refresh(key, 30)
    assert refreshed.action == "update" and refreshed.node.value == "keep"
    assert refreshed.node.ttl is not None and refreshed.node.ttl > 20
    # Refresh does not wake watchers: a watch from just after the write sees nothing.
    with pytest.raises(geetcd.DeadlineExceeded):
        etcd.watch(key, written.node.modified_index + 1, timeout=1.0)
    gevent.sleep(2.5)
    assert etcd.get(key).node.value == "keep"  # would have expired without the refresh
    with pytest.raises(v2.KeyNotFound):
        etcd.refresh(f"{p}/missing", 5)


# ---------------------------------------------------------------------------- watch
def test_watch_next_change(etcd: v2.Client, p: str) -> None:
    key = f"{p}/w"
    etcd.set(key, "before")
    writer = gevent.spawn_later(0.3, etcd.set, key, "after")
    event = etcd.watch(key, timeout=10)
    assert event.action == "set" and event.node.value == "after"
    assert event.prev_node is not None and event.prev_node.value == "before"
    assert writer.get(timeout=5).node.modified_index == event.node.modified_index


def test_watch_with_wait_index_returns_history_at_once(etcd: v2.Client, p: str) -> None:
    first = etcd.set(f"{p}/h/a", "1")
    etcd.set(f"{p}/h/b", "2")
    past = etcd.watch(f"{p}/h", first.node.modified_index, recursive=True, timeout=5)
    assert past.node.key == f"{p}/h/a" and past.node.modified_index == first.node.modified_index
    nxt = etcd.watch(f"{p}/h", past.node.modified_index + 1, recursive=True, timeout=5)
    assert nxt.node.key == f"{p}/h/b"


def test_watch_timeout_and_server_watchers_released(etcd: v2.Client, p: str) -> None:
    started = time.monotonic()
    with pytest.raises(geetcd.DeadlineExceeded):
        etcd.watch(f"{p}/quiet", timeout=0.5)
    assert time.monotonic() - started < 5
    waiter = gevent.spawn(etcd.watch, f"{p}/quiet", recursive=True)
    wait_for(lambda: etcd.stats_store()["watchers"] >= 1)
    waiter.kill()
    wait_for(lambda: etcd.stats_store()["watchers"] == 0)
    # The connections were closed, not pooled: unary calls still work.
    assert etcd.set(f"{p}/quiet", "x").action == "set"


def test_watch_of_cleared_index_raises(etcd: v2.Client, p: str) -> None:
    old = etcd.set(f"{p}/old", "x")
    pool = gevent.pool.Pool(16)
    pool.map(lambda i: etcd.set(f"{p}/flood/{i % 50}", str(i)), range(1100))
    with pytest.raises(v2.EventIndexCleared) as info:
        etcd.watch(f"{p}/old", old.node.modified_index, timeout=5)
    error = info.value
    assert error.error_code == 401 and isinstance(error, geetcd.WatchCompacted)
    assert error.compact_revision is not None and error.compact_revision > old.etcd_index
    assert error.index >= old.etcd_index + 1100


def test_watcher_delivers_in_order_and_cancels(etcd: v2.Client, p: str) -> None:
    with etcd.watcher(f"{p}/dir", recursive=True) as watch:
        written = [etcd.set(f"{p}/dir/k{i}", str(i)) for i in range(5)]
        etcd.delete(f"{p}/dir/k0")
        got = [watch.get(timeout=5) for _ in range(6)]
        assert all(isinstance(item, v2.Response) for item in got)
        indexes = [item.node.modified_index for item in got if isinstance(item, v2.Response)]
        assert indexes[:5] == [w.node.modified_index for w in written]
        assert indexes == sorted(indexes)
        assert [item.action for item in got if isinstance(item, v2.Response)][-1] == "delete"
        assert watch.next_index == indexes[-1] + 1
        assert watch.get(timeout=0.2) is None
        assert "active" in repr(watch) and watch.serving in etcd.endpoints
    assert watch.canceled and watch.get(timeout=0.1) is None
    assert list(watch) == []
    wait_for(lambda: etcd.stats_store()["watchers"] == 0)


def test_watcher_iteration_ends_on_cancel_from_another_greenlet(etcd: v2.Client, p: str) -> None:
    watch = etcd.watcher(f"{p}/w")
    gevent.spawn_later(0.2, etcd.set, f"{p}/w", "1")
    gevent.spawn_later(0.6, watch.cancel)
    items = list(watch)  # blocks until canceled
    assert [item.node.value for item in items if isinstance(item, v2.Response)] == ["1"]


def test_watcher_from_wait_index_and_close_cancels(etcd_endpoints: list[str], p: str) -> None:
    etcd = v2.Client(etcd_endpoints)
    first = etcd.set(f"{p}/x", "1")
    etcd.set(f"{p}/x", "2")
    watch = etcd.watcher(f"{p}/x", wait_index=first.node.modified_index)
    values = [watch.get(timeout=5) for _ in range(2)]
    assert [v.node.value for v in values if isinstance(v, v2.Response)] == ["1", "2"]
    etcd.close()
    assert watch.canceled and watch.get(timeout=0.1) is None


def test_watcher_resyncs_after_history_cleared(etcd: v2.Client, p: str) -> None:
    with etcd.watcher(f"{p}/r", recursive=True, buffer=2) as watch:
        early = etcd.set(f"{p}/r/first", "0")
        # The consumer does not read: the watch greenlet stops polling once 2 items wait,
        # and etcd keeps only the last 1000 events.
        pool = gevent.pool.Pool(16)
        pool.map(lambda i: etcd.set(f"{p}/r/k{i % 20}", str(i)), range(1100))
        last = etcd.set(f"{p}/r/last", "end")

        items: list[v2.Response | v2.Resync] = []
        while not items or not isinstance(items[-1], v2.Resync):
            item = watch.get(timeout=5)
            assert item is not None, f"watch stalled after {items!r:.300}"
            items.append(item)
            assert len(items) < 10
        after = etcd.set(f"{p}/r/after", "x")
        following = watch.get(timeout=5)

    first = items[0]
    assert isinstance(first, v2.Response)
    assert first.node.modified_index == early.node.modified_index
    assert all(isinstance(item, v2.Response) for item in items[:-1])
    resync = items[-1]
    assert isinstance(resync, v2.Resync) and resync.response is not None
    snapshot = resync.response
    assert snapshot.action == "get" and snapshot.etcd_index == resync.etcd_index
    keys = {n.key for n in snapshot.node.nodes}
    assert {f"{p}/r/first", f"{p}/r/k0", f"{p}/r/k19", f"{p}/r/last"} <= keys
    assert resync.etcd_index >= last.node.modified_index
    assert isinstance(following, v2.Response)
    assert following.node.modified_index == after.node.modified_index > resync.etcd_index


def test_watcher_resync_of_a_missing_key(etcd: v2.Client, p: str) -> None:
    gone = etcd.set(f"{p}/gone", "x")
    etcd.delete(f"{p}/gone")
    pool = gevent.pool.Pool(16)
    pool.map(lambda i: etcd.set(f"{p}/other/{i % 20}", str(i)), range(1050))
    with etcd.watcher(f"{p}/gone", wait_index=gone.node.modified_index + 1) as watch:
        item = watch.get(timeout=5)
    assert isinstance(item, v2.Resync)
    assert item.response is None and item.etcd_index >= gone.etcd_index + 1050


# ---------------------------------------------------------------------------- cluster / misc
def test_members_leader_version_stats_sync(etcd: v2.Client, etcd_endpoints: list[str]) -> None:
    (member,) = etcd.members()
    assert list(member.client_urls) == etcd_endpoints and member.name
    assert etcd.leader() == member
    version = etcd.version()
    assert version.server.startswith("3.5") and version.cluster.startswith("3.5")
    assert etcd.stats_self()["state"] == "StateLeader"
    assert etcd.stats_leader()["followers"] == {}
    assert isinstance(etcd.stats_store()["setsSuccess"], int)
    assert etcd.sync_cluster() == etcd_endpoints


def test_from_client_shares_the_v3_client(etcd_client: geetcd.Client, p: str) -> None:
    legacy = v2.Client.from_client(etcd_client, consistency="weak")
    assert legacy.client is etcd_client and legacy.consistency == "weak"
    legacy.set(f"{p}/shared", "v2-value")
    etcd_client.put("shared", "v3-value")
    assert legacy.get(f"{p}/shared").node.value == "v2-value"
    kv = etcd_client.get("shared")
    assert kv is not None and kv.value == b"v3-value"
    watch = legacy.watcher(f"{p}/shared")
    legacy.close()
    assert watch.canceled and not etcd_client.closed
    assert etcd_client.get("shared") is not None


def test_member_without_v2_is_reported() -> None:
    with (
        EtcdCluster(size=1, enable_v2=False) as cluster,
        v2.Client(cluster.endpoints) as etcd,
    ):
        with pytest.raises(geetcd.UnsupportedServer, match="--enable-v2"):
            etcd.get("/anything")
        assert {m.state for m in etcd.client.cluster_state.members} == {geetcd.MemberState.HEALTHY}
