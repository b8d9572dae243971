"""The list-then-watch prefix cache against a real etcd, through compaction and member failure."""

from __future__ import annotations

import contextlib
from typing import Any

import gevent
import gevent.event
import pytest
from polling import wait_for

import geetcd
from geetcd import EventType, Op
from geetcd.cache import PrefixCache
from geetcd.testing import EtcdCluster
from geetcd.watch import hub_for


def mirror_matches(client: geetcd.Client, cache: PrefixCache) -> None:
    """The cache equals a fresh listing at the cache's revision."""
    listed = {kv.key: kv for kv in client.get_prefix(cache.prefix, revision=cache.revision)}
    assert cache.snapshot() == listed


def test_lists_then_follows(etcd_client: geetcd.Client) -> None:
    for i in range(10):
        etcd_client.put(f"svc/{i:02d}", f"v{i}")
    etcd_client.put("svcx", "outside")
    with etcd_client.prefix_cache("svc/", page_size=3) as cache:
        cache.wait_synced(5)
        assert len(cache) == 10
        assert [k for k, _ in cache.items()] == [f"svc/{i:02d}".encode() for i in range(10)]
        got = cache.get("svc/03")
        assert got is not None and got.value == b"v3"
        assert "svcx" not in cache and cache.get("svcx") is None
        mirror_matches(etcd_client, cache)

        rev = etcd_client.put("svc/new", "n").header.revision
        etcd_client.delete("svc/00")
        rev = etcd_client.txn([], [Op.put("svc/01", "x"), Op.delete("svc/02")]).header.revision
        cache.wait_revision(rev, 5)
        assert cache.revision >= rev
        assert "svc/00" not in cache and "svc/02" not in cache
        updated = cache.get("svc/01")
        assert updated is not None and updated.value == b"x"
        assert cache.get(b"svc/new") is not None
        mirror_matches(etcd_client, cache)
        assert "synced" in repr(cache)


def test_change_notifications(etcd_client: geetcd.Client) -> None:
    etcd_client.put("n/a", "1")
    seen: list[geetcd.Event] = []
    cache = etcd_client.prefix_cache("n/", on_change=seen.append)
    cache.wait_synced(5)
    assert seen == []  # the initial listing is the state, not a change
    feed = cache.changes()
    etcd_client.put("n/a", "2")
    etcd_client.put("n/b", "3")
    rev = etcd_client.delete("n/a").header.revision
    cache.wait_revision(rev, 5)
    from_feed = [feed.next_change(timeout=5) for _ in range(3)]
    for changes in (seen, from_feed):
        assert [(c.type, c.kv.key) for c in changes] == [
            (EventType.PUT, b"n/a"),
            (EventType.PUT, b"n/b"),
            (EventType.DELETE, b"n/a"),
        ]
        # prev_kv comes from the mirror, although the watch did not ask etcd for it
        assert changes[0].prev_kv is not None and changes[0].prev_kv.value == b"1"
        assert changes[1].prev_kv is None
        assert changes[2].prev_kv is not None and changes[2].prev_kv.value == b"2"
    assert feed.revision == rev
    cache.close()
    assert list(feed) == []  # closing the cache ends its feeds
    with pytest.raises(geetcd.WatchCanceled):
        cache.wait_revision(rev + 100, 1)


def test_feed_overflow_and_failing_callback(etcd_client: geetcd.Client) -> None:
    errors: list[BaseException] = []

    def flaky(event: geetcd.Event) -> None:
        if event.kv.value == b"boom":
            raise ValueError("on_change failed")

    with etcd_client.prefix_cache("o/", on_change=flaky, on_error=errors.append) as cache:
        cache.wait_synced(5)
        feed = cache.changes(buffer=3)
        revs = [
            etcd_client.put(f"o/{i}", "boom" if i == 1 else "ok").header.revision for i in range(5)
        ]
        cache.wait_revision(revs[-1], 5)
        assert len(errors) == 1 and isinstance(errors[0], ValueError)
        assert len(cache) == 5  # the cache goes on after a failing on_change
        got = []
        with pytest.raises(geetcd.WatchOverflow) as info:
            for change in feed:
                got.append(change.kv.mod_revision)
        assert got == revs[:3]
        assert info.value.last_revision == revs[2]


def test_resync_after_compaction_emits_the_difference(
    etcd_client: geetcd.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("c/keep", "c/change", "c/drop"):
        etcd_client.put(key, "old")
    seen: list[geetcd.Event] = []
    cache = etcd_client.prefix_cache("c/", on_change=seen.append)
    cache.wait_synced(5)
    before = cache.revision
    # Cut the cache's stream and hold its reconnection while history is compacted away.
    gate = gevent.event.Event()
    transport = etcd_client.core.transport
    real_open = transport.open_stream

    def gated_open(*args: Any, **kwargs: Any) -> Any:
        gate.wait(10)
        return real_open(*args, **kwargs)

    real_open_ws = transport.open_websocket

    def gated_open_ws(*args: Any, **kwargs: Any) -> Any:
        gate.wait(10)
        return real_open_ws(*args, **kwargs)

    monkeypatch.setattr(transport, "open_stream", gated_open)
    monkeypatch.setattr(transport, "open_websocket", gated_open_ws)
    wait_for(lambda: len(hub_for(etcd_client).streams) == 1, what="cache stream")
    (stream,) = hub_for(etcd_client).streams
    stream.abort_connection(geetcd.ConnectionLost("test"))
    etcd_client.put("c/change", "new")
    etcd_client.delete("c/drop")
    etcd_client.put("c/add", "new")
    etcd_client.put("c/tmp", "x")
    last = etcd_client.delete("c/tmp").header.revision
    etcd_client.compact(last)
    gate.set()
    cache.wait_revision(last, 10)
    assert cache.resyncs == 1
    assert cache.revision >= last > before
    assert sorted(k for k, _ in cache.items()) == [b"c/add", b"c/change", b"c/keep"]
    changes = {(c.type, c.kv.key) for c in seen}
    assert changes == {
        (EventType.PUT, b"c/change"),
        (EventType.PUT, b"c/add"),
        (EventType.DELETE, b"c/drop"),
    }  # c/keep unchanged, c/tmp came and went: neither is reported
    mirror_matches(etcd_client, cache)
    # and it keeps following after the resync
    rev = etcd_client.put("c/keep", "new").header.revision
    cache.wait_revision(rev, 5)
    kept = cache.get("c/keep")
    assert kept is not None and kept.value == b"new"
    cache.close()


def test_fatal_error_reaches_waiters(etcd_client: geetcd.Client) -> None:
    cache = PrefixCache(etcd_client, "f/", page_size=1)
    cache._page_size = 0  # a bad argument etcd would refuse is not retried for ever
    cache.start()
    with pytest.raises(geetcd.InvalidArgument):
        cache.wait_synced(5)
    assert isinstance(cache.error, geetcd.InvalidArgument)
    with pytest.raises(geetcd.InvalidArgument):
        list(cache.changes())
    cache.close()


@pytest.mark.fault
def test_cache_survives_the_failure_of_its_member(healed_cluster: EtcdCluster) -> None:
    with (
        geetcd.Client(healed_cluster.endpoints, namespace="/cache-fault/") as client,
        geetcd.Client(healed_cluster.endpoints, namespace="/cache-fault/") as writer,
    ):
        for i in range(5):
            writer.put(f"m/{i}", "0")
        cache = client.prefix_cache("m/", liveness=2.0)
        cache.wait_synced(10)
        wait_for(
            lambda: cache._watch is not None and cache._watch.member is not None,
            what="cache watch connected",
        )
        assert cache._watch is not None
        serving = cache._watch.member
        victim = next(m for m in healed_cluster.members if m.client_url == serving)
        victim.kill()
        last = 0
        for i in range(20):
            # The killed member may have been the leader: a put caught in the election has
            # an unknown outcome. The mirror is compared with what etcd holds afterwards.
            with contextlib.suppress(geetcd.OutcomeUnknown):
                last = writer.put(f"m/{i % 7}", str(i)).header.revision
            gevent.sleep(0.02)
        assert last, "no write was acknowledged after the kill"
        cache.wait_revision(last, 15)
        assert cache._watch is not None and cache._watch.member != serving
        mirror_matches(writer, cache)
        assert cache.resyncs == 0  # a member failure is resumed, not re-listed
        cache.close()
