"""Watches against a real etcd (the session's single member, progress notify every 1 s)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.event
import pytest
from polling import wait_for

import geetcd
from geetcd import EventType, Op
from geetcd.testing import EtcdCluster
from geetcd.watch import WatchBatch, WatchFilter, hub_for

WATCHERS = "etcd_debugging_mvcc_watcher_total"


def watchers(server: EtcdCluster) -> float:
    return server.members[0].metrics()[WATCHERS]


@pytest.fixture
def raw_client(etcd_endpoints: list[str]) -> Iterator[geetcd.Client]:
    """A client without namespace, to write around the namespaced ``etcd_client``."""
    with geetcd.Client(etcd_endpoints) as client:
        yield client


# ---------------------------------------------------------------------------- basics
def test_events_for_a_key_in_order(etcd_client: geetcd.Client) -> None:
    with etcd_client.watch("k") as watch:
        r1 = etcd_client.put("k", "one")
        r2 = etcd_client.put("k", "two")
        r3 = etcd_client.delete("k")
        etcd_client.put("other", "x")
        events = [watch.next_event(timeout=5) for _ in range(3)]
        assert [e.type for e in events] == [EventType.PUT, EventType.PUT, EventType.DELETE]
        assert [e.kv.value for e in events] == [b"one", b"two", b""]
        assert [e.revision for e in events] == [
            r1.header.revision,
            r2.header.revision,
            r3.header.revision,
        ]
        assert all(e.kv.key == b"k" and e.prev_kv is None for e in events)
        assert watch.revision == r3.header.revision
        with pytest.raises(geetcd.DeadlineExceeded):
            watch.next_event(timeout=0.3)  # the write to "other" is not for this watch
    assert watch.done


def test_watch_is_acknowledged_before_returning(etcd_client: geetcd.Client) -> None:
    for i in range(10):
        with etcd_client.watch(f"ack{i}") as watch:
            put = etcd_client.put(f"ack{i}", "v")  # written right after watch() returned
            event = watch.next_event(timeout=5)
            assert event.revision == put.header.revision


def test_prefix_and_range_end(etcd_client: geetcd.Client) -> None:
    prefix_watch = etcd_client.watch("dir/", prefix=True)
    range_watch = etcd_client.watch("a", range_end="c")
    for key in ("dir/x", "dir0", "dirx", "dir/y/z", "a1", "b", "c", "0"):
        etcd_client.put(key, "v")
    expected_prefix = [b"dir/x", b"dir/y/z"]
    assert [prefix_watch.next_event(timeout=5).kv.key for _ in expected_prefix] == expected_prefix
    expected_range = [b"a1", b"b"]
    assert [range_watch.next_event(timeout=5).kv.key for _ in expected_range] == expected_range
    with pytest.raises(geetcd.DeadlineExceeded):
        prefix_watch.next_event(timeout=0.2)
    with pytest.raises(geetcd.DeadlineExceeded):
        range_watch.next_event(timeout=0.2)
    assert etcd_client.watch_prefix("dir/").key == b"dir/"


def test_prev_kv(etcd_client: geetcd.Client) -> None:
    etcd_client.put("p", "before")
    with etcd_client.watch("p", prev_kv=True) as watch:
        etcd_client.put("p", "after")
        etcd_client.delete("p")
        put, delete = watch.next_event(timeout=5), watch.next_event(timeout=5)
    assert put.prev_kv is not None and put.prev_kv.value == b"before"
    assert delete.type is EventType.DELETE
    assert delete.prev_kv is not None and delete.prev_kv.value == b"after"


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ("noput", [EventType.DELETE, EventType.DELETE]),
        (["nodelete"], [EventType.PUT, EventType.PUT]),
        ([WatchFilter.NODELETE], [EventType.PUT, EventType.PUT]),
    ],
)
def test_filters(etcd_client: geetcd.Client, filters: Any, expected: list[EventType]) -> None:
    with etcd_client.watch("f", filters=filters) as watch:
        for _ in range(2):
            etcd_client.put("f", "v")
            etcd_client.delete("f")
        assert [watch.next_event(timeout=5).type for _ in expected] == expected
        with pytest.raises(geetcd.DeadlineExceeded):
            watch.next_event(timeout=0.3)


def test_start_revision_replays_history_with_txns_together(etcd_client: geetcd.Client) -> None:
    first = etcd_client.put("h/a", "1").header.revision
    etcd_client.txn([], [Op.put("h/b", "2"), Op.put("h/c", "3"), Op.delete("h/a")])
    etcd_client.put("h/d", "4")
    with etcd_client.watch("h/", prefix=True, start_revision=first) as watch:
        assert watch.revision == first - 1
        batches = [watch.next_batch(timeout=5) for _ in range(3)]
        live = etcd_client.put("h/e", "5").header.revision
        assert watch.next_batch(timeout=5).revision == live
    assert [b.revision for b in batches] == [first, first + 1, first + 2]
    txn = batches[1]
    assert [(e.type, e.kv.key) for e in txn.events] == [
        (EventType.PUT, b"h/b"),
        (EventType.PUT, b"h/c"),
        (EventType.DELETE, b"h/a"),
    ]
    assert watch.revision == live


def test_events_iterator_moves_revision_after_a_whole_txn(etcd_client: geetcd.Client) -> None:
    with etcd_client.watch("t/", prefix=True) as watch:
        rev = etcd_client.txn([], [Op.put("t/1", "a"), Op.put("t/2", "b")]).header.revision
        before = watch.revision
        iterator = iter(watch)
        assert next(iterator).kv.key == b"t/1"
        assert watch.revision == before  # half of revision `rev` handed out
        assert next(iterator).kv.key == b"t/2"
        assert watch.revision == rev


def test_progress_notify_advances_the_revision(
    etcd_client: geetcd.Client, raw_client: geetcd.Client
) -> None:
    with etcd_client.watch("quiet", progress_notify=True) as watch:
        other = raw_client.put("/geetcd-test/elsewhere", "x").header.revision
        deadline = time.monotonic() + 10
        seen: list[WatchBatch] = []
        while time.monotonic() < deadline:
            batch = watch.next_batch(timeout=5)
            seen.append(batch)
            if batch.revision >= other:
                break
        assert seen and all(batch.events == () for batch in seen)
        assert seen[-1].revision >= other
        assert watch.revision >= other
        assert hub_for(etcd_client).shared  # the stream is alive and shared-capable
        stream = next(iter(hub_for(etcd_client).streams))
        assert stream.next_revision >= other + 1  # the resume point moved too


def test_namespace_is_applied_and_stripped(
    etcd_client: geetcd.Client, raw_client: geetcd.Client, etcd_prefix: str
) -> None:
    with etcd_client.watch("", prefix=True) as everything:
        raw_client.put(etcd_prefix + "inside", "1")
        raw_client.put("/geetcd-test/outside-" + etcd_prefix.strip("/").split("/")[-1], "2")
        etcd_client.put("mine", "3")
        keys = [everything.next_event(timeout=5).kv.key for _ in range(2)]
        assert keys == [b"inside", b"mine"]
        with pytest.raises(geetcd.DeadlineExceeded):
            everything.next_event(timeout=0.3)


def test_invalid_arguments_fail_before_any_io(etcd_client: geetcd.Client) -> None:
    with pytest.raises(geetcd.InvalidArgument):
        etcd_client.watch("")
    with pytest.raises(geetcd.InvalidArgument):
        etcd_client.watch("k", filters=["noget"])
    with pytest.raises(geetcd.InvalidArgument):
        etcd_client.watch("k", start_revision=-1)
    with pytest.raises(geetcd.InvalidArgument):
        etcd_client.watch("k", buffer=0)
    with pytest.raises(geetcd.InvalidArgument):
        etcd_client.watch("k", liveness=0)
    with pytest.raises(geetcd.InvalidArgument):
        etcd_client.watch("k", prefix=True, range_end="z")
    with pytest.raises(geetcd.InvalidType):
        etcd_client.watch("k", prev_kv="yes")  # type: ignore[arg-type]
    assert not hub_for(etcd_client).streams


def test_future_start_revision_waits_for_it(etcd_client: geetcd.Client) -> None:
    now = etcd_client.put("fut", "0").header.revision
    with etcd_client.watch("fut", start_revision=now + 2) as watch:
        etcd_client.put("fut", "1")  # now + 1: before the start
        second = etcd_client.put("fut", "2").header.revision
        event = watch.next_event(timeout=5)
        assert event.revision == second == now + 2


# ---------------------------------------------------------------------------- cancel / close
def test_cancel_closes_the_server_watcher(
    etcd_client: geetcd.Client, etcd_server: EtcdCluster
) -> None:
    base = watchers(etcd_server)
    watch = etcd_client.watch("c")
    wait_for(lambda: watchers(etcd_server) == base + 1, what="watcher created")
    seen: list[int] = []

    def consume() -> None:
        seen.extend(e.revision for e in watch)

    consumer = gevent.spawn(consume)
    etcd_client.put("c", "1")
    wait_for(lambda: len(seen) == 1, what="event")
    watch.cancel()
    consumer.join(timeout=5)
    assert consumer.successful()  # the iterator ended cleanly
    assert watch.done and watch.error is None
    wait_for(lambda: watchers(etcd_server) == base, what="watcher gone")
    with pytest.raises(geetcd.WatchCanceled):
        watch.next_event(timeout=1)
    watch.cancel()  # idempotent


def test_coalescing_shares_one_server_stream(
    etcd_client: geetcd.Client, etcd_server: EtcdCluster
) -> None:
    base = watchers(etcd_server)
    first = etcd_client.watch("co", prev_kv=True)
    second = etcd_client.watch("co", prev_kv=True)
    wait_for(lambda: watchers(etcd_server) == base + 1, what="one watcher")
    gevent.sleep(0.2)
    assert watchers(etcd_server) == base + 1
    hub = hub_for(etcd_client)
    assert len(hub.streams) == 1
    rev = etcd_client.put("co", "v").header.revision
    assert first.next_event(timeout=5).revision == rev
    assert second.next_event(timeout=5).revision == rev
    # different options or an explicit start revision: a stream of their own
    other = etcd_client.watch("co")
    replay = etcd_client.watch("co", prev_kv=True, start_revision=rev)
    wait_for(lambda: watchers(etcd_server) == base + 3, what="three watchers")
    assert replay.next_event(timeout=5).revision == rev
    first.cancel()
    rev2 = etcd_client.put("co", "w").header.revision
    assert second.next_event(timeout=5).revision == rev2  # still served
    for watch in (second, other, replay):
        watch.cancel()
    wait_for(lambda: watchers(etcd_server) == base, what="all watchers gone")
    assert not hub.streams and not hub.shared


def test_late_subscriber_of_a_shared_stream_gets_later_events(etcd_client: geetcd.Client) -> None:
    early = etcd_client.watch("late")
    rev1 = etcd_client.put("late", "1").header.revision
    assert early.next_event(timeout=5).revision == rev1
    late = etcd_client.watch("late")
    assert late.revision >= rev1
    rev2 = etcd_client.put("late", "2").header.revision
    assert late.next_event(timeout=5).revision == rev2
    assert early.next_event(timeout=5).revision == rev2


def test_close_ends_every_watch(etcd_endpoints: list[str], etcd_server: EtcdCluster) -> None:
    base = watchers(etcd_server)
    client = geetcd.Client(etcd_endpoints, namespace="/geetcd-test/close/")
    iterated = client.watch("a")
    called: list[object] = []
    with_callback = client.watch("b", callback=called.append)
    cache = client.prefix_cache("c/")
    cache.wait_synced(5)
    wait_for(lambda: watchers(etcd_server) == base + 3, what="watchers created")
    ended = gevent.event.Event()

    def consume() -> None:
        for _ in iterated:
            pass
        ended.set()

    gevent.spawn(consume)
    client.put("b", "x")
    wait_for(lambda: len(called) == 1, what="callback")
    gevent.sleep(0)
    client.close()
    assert ended.wait(5), "the iterator did not end on close()"
    assert iterated.done and with_callback.done
    assert len(client.core.group) == 0  # every watch greenlet is gone
    wait_for(lambda: watchers(etcd_server) == base, what="watchers closed")
    with pytest.raises(geetcd.ClientClosed):
        client.watch("a")


def test_watch_once(etcd_client: geetcd.Client) -> None:
    started = time.monotonic()
    with pytest.raises(geetcd.DeadlineExceeded):
        etcd_client.watch_once("once", timeout=0.5)
    assert time.monotonic() - started < 3
    writer = gevent.spawn_later(0.2, etcd_client.put, "once", "v")
    event = etcd_client.watch_once("once", timeout=5)
    assert event.kv.value == b"v"
    assert writer.get(timeout=5).header.revision == event.revision
    assert not hub_for(etcd_client).streams  # canceled after use


# ---------------------------------------------------------------------------- callbacks
def test_callback_form_delivers_in_order(etcd_client: geetcd.Client) -> None:
    got: list[int] = []
    watch = etcd_client.watch("cb", callback=lambda e: got.append(e.revision))
    revs = [etcd_client.put("cb", str(i)).header.revision for i in range(20)]
    wait_for(lambda: len(got) == 20, what="20 callbacks")
    assert got == revs
    wait_for(lambda: watch.revision == revs[-1], what="revision")
    watch.cancel()


def test_callback_exception_is_reported_and_ends_the_watch(etcd_client: geetcd.Client) -> None:
    errors: list[BaseException] = []
    handled: list[int] = []

    def callback(event: geetcd.Event) -> None:
        if event.kv.value == b"bad":
            raise ValueError("callback failed")
        handled.append(event.revision)

    watch = etcd_client.watch("cbe", callback=callback, on_error=errors.append)
    good = etcd_client.put("cbe", "good").header.revision
    etcd_client.put("cbe", "bad")
    etcd_client.put("cbe", "after")
    wait_for(lambda: bool(errors), what="on_error")
    assert isinstance(errors[0], ValueError)
    assert watch.error is errors[0]
    assert watch.done
    assert handled == [good]
    assert watch.revision == good  # what was fully handled


def test_callback_exception_without_on_error_is_logged(
    etcd_client: geetcd.Client, caplog: pytest.LogCaptureFixture
) -> None:
    def callback(event: geetcd.Event) -> None:
        raise RuntimeError("logged, not swallowed")

    with caplog.at_level(logging.ERROR, logger="geetcd.watch"):
        watch = etcd_client.watch("cbl", callback=callback)
        etcd_client.put("cbl", "x")
        wait_for(lambda: watch.error is not None, what="error")
        wait_for(lambda: any(r.exc_info for r in caplog.records), what="log record")
    record = next(r for r in caplog.records if r.exc_info)
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert isinstance(watch.error, RuntimeError)


def test_callback_can_cancel_its_own_watch(etcd_client: geetcd.Client) -> None:
    got: list[geetcd.Event] = []
    holder: dict[str, geetcd.watch.Watch] = {}

    def callback(event: geetcd.Event) -> None:
        got.append(event)
        holder["w"].cancel()

    holder["w"] = etcd_client.watch("cbc", callback=callback)
    etcd_client.txn([], [Op.put("cbc", "1")])
    etcd_client.put("cbc", "2")
    wait_for(lambda: holder["w"].done, what="canceled")
    gevent.sleep(0.2)
    assert len(got) == 1
    assert holder["w"].error is None


# ---------------------------------------------------------------------------- errors
def test_compacted_start_revision_raises_watch_compacted(etcd_client: geetcd.Client) -> None:
    first = etcd_client.put("cmp", "1").header.revision
    etcd_client.put("cmp", "2")
    compact_at = etcd_client.put("cmp", "3").header.revision
    etcd_client.compact(compact_at)
    watch = etcd_client.watch("cmp", start_revision=first)
    with pytest.raises(geetcd.WatchCompacted) as info:
        watch.next_event(timeout=5)
    assert info.value.compact_revision == compact_at
    assert isinstance(info.value, geetcd.CompactedRevision)
    assert watch.done and watch.error is info.value
    assert not hub_for(etcd_client).streams  # the HTTP stream was closed, nothing hangs

    errors: list[BaseException] = []
    etcd_client.watch("cmp", start_revision=first, callback=print, on_error=errors.append)
    wait_for(lambda: bool(errors), what="on_error")
    assert isinstance(errors[0], geetcd.WatchCompacted)
    assert errors[0].compact_revision == compact_at


def test_overflow_of_a_slow_subscriber(etcd_client: geetcd.Client) -> None:
    fast = etcd_client.watch("of")
    slow = etcd_client.watch("of", buffer=5)  # same stream, never read during the writes
    revs = [etcd_client.put("of", str(i)).header.revision for i in range(12)]
    fast_revs = [fast.next_event(timeout=5).revision for _ in revs]
    assert fast_revs == revs  # the fast subscriber is not disturbed
    got = []
    with pytest.raises(geetcd.WatchOverflow) as info:
        for event in slow:
            got.append(event.revision)
    assert got == revs[:5]
    assert info.value.last_revision == revs[4]
    assert slow.error is info.value
    # resume without a gap
    with etcd_client.watch("of", start_revision=info.value.last_revision + 1) as resumed:
        rest = [resumed.next_event(timeout=5).revision for _ in revs[5:]]
    assert rest == revs[5:]
    more = etcd_client.put("of", "x").header.revision
    assert fast.next_event(timeout=5).revision == more


def test_resume_after_a_dropped_connection_is_exact(etcd_client: geetcd.Client) -> None:
    watch = etcd_client.watch("rs")
    hub = hub_for(etcd_client)
    (stream,) = hub.streams
    revs: list[int] = []
    for i in range(30):
        revs.append(etcd_client.put("rs", str(i)).header.revision)
        if i % 7 == 3:
            stream.abort_connection(geetcd.ConnectionLost("test drops the connection"))
    got = [watch.next_event(timeout=5).revision for _ in revs]
    assert got == revs
    assert stream.reconnects >= 1
    with pytest.raises(geetcd.DeadlineExceeded):
        watch.next_event(timeout=0.3)  # nothing repeated


def test_compaction_while_disconnected_ends_shared_subscribers(
    etcd_client: geetcd.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = etcd_client.watch("gap")
    two = etcd_client.watch("gap")
    rev = etcd_client.put("gap", "1").header.revision
    assert one.next_event(timeout=5).revision == rev
    assert two.next_event(timeout=5).revision == rev
    # Hold the reconnection until history is compacted past the resume point.
    gate = gevent.event.Event()
    transport = etcd_client.core.transport
    real_open = transport.open_stream

    def gated_open(*args: Any, **kwargs: Any) -> Any:
        gate.wait(10)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(transport, "open_stream", gated_open)
    (stream,) = hub_for(etcd_client).streams
    stream.abort_connection(geetcd.ConnectionLost("test"))
    etcd_client.put("gap", "2")
    compact_at = etcd_client.put("gap", "3").header.revision
    etcd_client.compact(compact_at)
    gate.set()
    for watch in (one, two):
        with pytest.raises(geetcd.WatchCompacted) as info:
            watch.next_event(timeout=5)
        assert info.value.compact_revision == compact_at


def test_slow_callback_moves_to_its_own_greenlet(etcd_client: geetcd.Client) -> None:
    slow_got: list[int] = []
    fast_got: list[int] = []
    errors: list[BaseException] = []

    def slow(event: geetcd.Event) -> None:
        gevent.sleep(0.3)  # blocks: too slow to run inline on a shared stream
        slow_got.append(event.revision)

    slow_watch = etcd_client.watch("sl", callback=slow, buffer=3, on_error=errors.append)
    fast_watch = etcd_client.watch("sl", callback=lambda e: fast_got.append(e.revision))
    assert len(hub_for(etcd_client).streams) == 1
    first = etcd_client.put("sl", "0").header.revision
    wait_for(lambda: slow_got == [first] and fast_got == [first], what="first event")
    assert not slow_watch._inline and fast_watch._inline  # only the slow one was moved
    revs = [etcd_client.put("sl", str(i)).header.revision for i in range(1, 4)]
    wait_for(lambda: fast_got == [first, *revs], what="fast callbacks")
    assert len(slow_got) < 4  # the fast one did not wait behind the slow one's sleeps
    wait_for(lambda: slow_got == [first, *revs], what="slow callbacks")
    assert slow_watch._runner is not None
    wait_for(lambda: slow_watch._runner is None, timeout=5, what="idle greenlet retired")
    # restarted by the next event; then flooded beyond its buffer of 3: WatchOverflow
    burst = [etcd_client.put("sl", f"b{i}").header.revision for i in range(8)]
    wait_for(lambda: bool(errors), timeout=10, what="overflow reported")
    assert isinstance(errors[0], geetcd.WatchOverflow)
    wait_for(lambda: fast_got[-1] == burst[-1], what="fast one unaffected")
    assert slow_watch.error is errors[0]
    assert slow_got == [first, *revs, *burst[: len(slow_got) - 4]]
    assert errors[0].last_revision == slow_got[-1]


def test_idle_watches_cost_one_probe_per_member_not_reconnects(
    etcd_client: geetcd.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    executor = etcd_client.core.executor
    real_probe = executor.probe
    probes: list[float] = []

    def counting_probe(member: Any, timeout: float = 1.0) -> Any:
        probes.append(time.monotonic())
        return real_probe(member, timeout)

    monkeypatch.setattr(executor, "probe", counting_probe)
    watches = [etcd_client.watch(f"idle{i}", liveness=0.5) for i in range(5)]
    streams = list(hub_for(etcd_client).streams)
    connections = [s.connection for s in streams]
    gevent.sleep(2.2)
    # 5 silent streams on one member: about one probe per 0.5 s for the member, not per stream
    assert 2 <= len(probes) <= 7
    assert all(s.reconnects == 0 for s in streams)
    assert [s.connection for s in streams] == connections  # nothing was reconnected
    rev = etcd_client.put("idle3", "v").header.revision
    assert watches[3].next_event(timeout=5).revision == rev


@pytest.mark.parametrize(
    ("streams", "opener", "raised", "within"),
    [
        ("http", "open_stream", (geetcd.WatchCanceled,), 5.0),
        ("websocket", "open_websocket", (geetcd.WatchCanceled, geetcd.ClientClosed), 3.0),
    ],
)
def test_close_while_a_watch_is_being_created(
    etcd_endpoints: list[str],
    monkeypatch: pytest.MonkeyPatch,
    streams: str,
    opener: str,
    raised: tuple[type[BaseException], ...],
    within: float,
) -> None:
    """close() while the watch's stream (HTTP stream or WebSocket) is still being opened."""
    client = geetcd.Client(etcd_endpoints, namespace="/geetcd-test/close-create/", streams=streams)
    gate = gevent.event.Event()
    real_open = getattr(client.core.transport, opener)

    def held_open(*args: Any, **kwargs: Any) -> Any:
        gate.wait(10)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(client.core.transport, opener, held_open)
    creating = gevent.spawn(client.watch, "k", timeout=30)
    gevent.sleep(0.2)
    started = time.monotonic()
    client.close()
    with pytest.raises(raised):
        creating.get(timeout=5)
    assert time.monotonic() - started < within
    gate.set()
