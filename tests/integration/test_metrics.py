"""geetcd.metrics against a real etcd: each metric holds exactly the expected values after a
known sequence of calls, with and without batching; several clients share a registry; a
SIGKILLed member shows as down with its failed attempts counted, and up again after its
restart; the exposition passes ``promtool check metrics``."""

from __future__ import annotations

from typing import Any

import gevent
import pytest
from metrics_scrape import promtool_check, scrape, total, value
from polling import wait_for
from prometheus_client import CollectorRegistry, generate_latest

import geetcd
import geetcd.metrics
from geetcd.testing import EtcdCluster

pytestmark = pytest.mark.timeout(120)


def test_fifty_gets_exactly(etcd_server: Any, etcd_prefix: str) -> None:
    url = etcd_server.members[0].client_url
    registry = CollectorRegistry()
    with geetcd.Client(url, namespace=etcd_prefix, batch_reads=False, maxsize=8) as client:
        metrics = geetcd.metrics.instrument(client, registry, name="test")
        client.put("k", "v")
        for _ in range(50):
            assert client.get("k") is not None
        s = scrape(registry)
        c = {"client": "test"}
        assert value(s, "geetcd_requests_total", **c, method="get", outcome="ok") == 50
        assert value(s, "geetcd_requests_total", **c, method="put", outcome="ok") == 1
        assert value(s, "geetcd_request_duration_seconds_count", **c, method="get") == 50
        assert (
            value(s, "geetcd_request_duration_seconds_bucket", **c, method="get", le="+Inf") == 50
        )
        assert 0 < (value(s, "geetcd_request_duration_seconds_sum", **c, method="get") or 0) < 50
        assert value(s, "geetcd_attempts_total", **c, member=url, result="ok") == 51
        assert total(s, "geetcd_attempts_total") == 51
        assert value(s, "geetcd_member_up", **c, member=url) == 1
        assert value(s, "geetcd_pool_connections_max", **c, member=url) == 8
        assert value(s, "geetcd_pool_connections_in_use", **c, member=url) == 0
        assert value(s, "geetcd_watches", **c) == 0
        assert value(s, "geetcd_leases_kept_alive", **c) == 0
        assert total(s, "geetcd_batch_size_count") == 0
        assert total(s, "geetcd_hedges_total") == 0

        # A compacted read: counted under its error class, its attempt too.
        head = client.put("k", "w").header.revision
        client.compact(head)
        with pytest.raises(geetcd.CompactedRevision):
            client.range("k", revision=1)
        s = scrape(registry)
        assert (
            value(s, "geetcd_requests_total", **c, method="range", outcome="CompactedRevision") == 1
        )
        assert value(s, "geetcd_attempts_total", **c, member=url, result="CompactedRevision") == 1
        assert value(s, "geetcd_requests_total", **c, method="compact", outcome="ok") == 1
        assert value(s, "geetcd_requests_total", **c, method="put", outcome="ok") == 2
        assert total(s, "geetcd_requests_total", **c) == 54
        metrics.uninstrument()
        client.get("k")
        assert total(scrape(registry), "geetcd_requests_total") == 0  # series removed


def test_batched_gets_exactly(etcd_server: Any, etcd_prefix: str) -> None:
    url = etcd_server.members[0].client_url
    registry = CollectorRegistry()
    with geetcd.Client(url, namespace=etcd_prefix) as client:  # batch_reads=True, the default
        client.put("k", "v")
        geetcd.metrics.instrument(client, registry, name="batched")
        reads = client.read_batcher
        assert reads is not None
        calls = 0
        for _ in range(10):  # whether a batch forms depends on timing: rounds until one did
            readers = [gevent.spawn(client.get, "k") for _ in range(50)]
            gevent.joinall(readers, raise_error=True)
            calls += 50
            if reads.batches:
                break
        s = scrape(registry)
        c = {"client": "batched"}
        assert value(s, "geetcd_requests_total", **c, method="get", outcome="ok") == calls
        assert value(s, "geetcd_request_duration_seconds_count", **c, method="get") == calls
        # Every caller saw its attempt (a batch's attempt is reported to each call in it).
        assert value(s, "geetcd_attempts_total", **c, member=url, result="ok") == calls
        # One observation per txn of several reads, of its size.
        assert value(s, "geetcd_batch_size_count", **c, kind="read") == reads.batches >= 1
        assert value(s, "geetcd_batch_size_sum", **c, kind="read") == reads.batched_ops


def test_watch_and_lease_metrics(etcd_server: Any, etcd_prefix: str) -> None:
    url = etcd_server.members[0].client_url
    registry = CollectorRegistry()
    with geetcd.Client(url, namespace=etcd_prefix) as client:
        geetcd.metrics.instrument(client, registry, name="w")
        c = {"client": "w"}
        seen: list[object] = []
        watch = client.watch("w/", prefix=True, callback=seen.append)
        twin = client.watch("w/", prefix=True)  # shares the server stream
        assert value(scrape(registry), "geetcd_watches", **c) == 2
        for i in range(3):
            client.put(f"w/{i}", "x")
        wait_for(lambda: len(seen) == 3, what="3 watch events")
        s = scrape(registry)
        assert value(s, "geetcd_watch_events_total", **c) == 3  # once per stream, not per watch
        watch.cancel()
        twin.cancel()
        s = scrape(registry)
        assert value(s, "geetcd_watches", **c) == 0
        assert value(s, "geetcd_watches_ended_total", **c, reason="canceled") == 2

        lease = client.lease(2, keepalive=True)
        assert value(scrape(registry), "geetcd_leases_kept_alive", **c) == 1
        wait_for(
            lambda: total(scrape(registry), "geetcd_keepalive_requests_total", result="ok") >= 1,
            timeout=5,
            what="a keepalive",
        )
        assert value(
            scrape(registry), "geetcd_keepalive_requests_total", **c, member=url, result="ok"
        )
        lease.revoke()
        s = scrape(registry)
        assert value(s, "geetcd_leases_kept_alive", **c) == 0
        assert value(s, "geetcd_leases_lost_total", **c, reason="revoked") == 1
        assert value(s, "geetcd_requests_total", **c, method="lease_grant", outcome="ok") == 1
        assert value(s, "geetcd_requests_total", **c, method="lease_revoke", outcome="ok") == 1


def test_several_clients_share_one_registry(etcd_server: Any, etcd_prefix: str) -> None:
    url = etcd_server.members[0].client_url
    registry = CollectorRegistry()
    with (
        geetcd.Client(url, namespace=etcd_prefix, batch_reads=False) as one,
        geetcd.Client(url, namespace=etcd_prefix, batch_reads=False) as two,
    ):
        first = geetcd.metrics.instrument(one, registry)
        second = geetcd.metrics.instrument(two, registry)  # no "Duplicated timeseries"
        assert first.name != second.name and first.name.startswith("client")
        with pytest.raises(geetcd.InvalidArgument):
            geetcd.metrics.instrument(one, registry)
        with pytest.raises(geetcd.InvalidArgument):
            geetcd.metrics.instrument(geetcd.Client(url), registry, name=first.name)
        one.put("a", "1")
        for _ in range(3):
            two.get("a")
        s = scrape(registry)
        assert value(s, "geetcd_requests_total", client=first.name, method="put", outcome="ok") == 1
        assert total(s, "geetcd_requests_total", client=first.name) == 1
        assert (
            value(s, "geetcd_requests_total", client=second.name, method="get", outcome="ok") == 3
        )
        second.uninstrument()
        second.uninstrument()  # idempotent
        s = scrape(registry)
        assert total(s, "geetcd_requests_total", client=second.name) == 0
        assert value(s, "geetcd_member_up", client=second.name, member=url) is None
        assert value(s, "geetcd_member_up", client=first.name, member=url) == 1
        third = geetcd.metrics.instrument(two, registry, name="again")
        two.get("a")
        assert (
            value(
                scrape(registry),
                "geetcd_requests_total",
                client="again",
                method="get",
                outcome="ok",
            )
            == 1
        )
        third.uninstrument()
        first.uninstrument()


def test_exposition_passes_promtool(etcd_server: Any, etcd_prefix: str) -> None:
    registry = CollectorRegistry()
    with geetcd.Client(etcd_server.members[0].client_url, namespace=etcd_prefix) as client:
        geetcd.metrics.instrument(client, registry)
        client.put("p", "1")
        reads = client.read_batcher
        assert reads is not None
        for _ in range(20):  # bursts until one batch formed (a busy machine may send all alone)
            gevent.joinall([gevent.spawn(client.get, "p") for _ in range(20)], raise_error=True)
            if reads.batches:
                break
        watch = client.watch("p")
        client.put("p", "2")
        watch.next_event(timeout=5)
        watch.cancel()
        lease = client.lease(5, keepalive=True)
        lease.revoke()
        with pytest.raises(geetcd.EtcdError):
            client.range("p", revision=10**9)  # a future revision: an error outcome
        exposition = generate_latest(registry)
        for family in ("requests_total", "attempts_total", "batch_size_bucket", "watches_ended"):
            assert f"geetcd_{family}".encode() in exposition
        promtool_check(exposition)


@pytest.mark.fault
def test_killed_member_is_down_then_up_again(healed_cluster: EtcdCluster, etcd_prefix: str) -> None:
    urls = healed_cluster.endpoints
    registry = CollectorRegistry()
    with geetcd.Client(
        urls, namespace=etcd_prefix, batch_reads=False, policy=geetcd.PickPolicy.ROUND_ROBIN
    ) as client:
        geetcd.metrics.instrument(client, registry, name="f")
        client.put("f", "1")
        s = scrape(registry)
        assert [value(s, "geetcd_member_up", client="f", member=u) for u in urls] == [1, 1, 1]
        victim = next(m for m in healed_cluster.members if m is not healed_cluster.leader())
        outcomes: dict[str, int] = {}
        stop = gevent.event.Event()

        def load() -> None:
            for _ in range(100_000):  # bounded; ends with stop
                if stop.is_set():
                    return
                try:
                    client.get("f")
                    outcomes["ok"] = outcomes.get("ok", 0) + 1
                except geetcd.EtcdError as exc:
                    name = type(exc).__name__
                    outcomes[name] = outcomes.get(name, 0) + 1
                gevent.sleep(0.005)

        workers = [gevent.spawn(load) for _ in range(8)]
        try:
            gevent.sleep(0.3)
            victim.kill()
            wait_for(
                lambda: (
                    value(
                        scrape(registry), "geetcd_member_up", client="f", member=victim.client_url
                    )
                    == 0
                ),
                timeout=10,
                what="member_up 0 for the killed member",
            )
            gevent.sleep(0.3)
        finally:
            stop.set()
            gevent.joinall(workers, timeout=30)
        s = scrape(registry)
        failed = total(s, "geetcd_attempts_total", member=victim.client_url) - (
            value(s, "geetcd_attempts_total", client="f", member=victim.client_url, result="ok")
            or 0
        )
        assert failed >= 1  # its failed attempts are counted under their error class
        # Reads fail over: every get ended ok, and the counter says exactly how many.
        assert outcomes.keys() == {"ok"}, outcomes
        assert (
            value(s, "geetcd_requests_total", client="f", method="get", outcome="ok")
            == outcomes["ok"]
        )
        assert total(s, "geetcd_request_duration_seconds_count", method="get") == outcomes["ok"]
        others = [u for u in urls if u != victim.client_url]
        assert all(value(s, "geetcd_member_up", client="f", member=u) == 1 for u in others)

        victim.restart()
        wait_for(
            lambda: (
                value(scrape(registry), "geetcd_member_up", client="f", member=victim.client_url)
                == 1
            ),
            timeout=30,
            what="member_up 1 after the restart",
        )


def test_watch_end_reasons(etcd_server: Any, etcd_prefix: str) -> None:
    registry = CollectorRegistry()
    with geetcd.Client(etcd_server.members[0].client_url, namespace=etcd_prefix) as client:
        geetcd.metrics.instrument(client, registry, name="r")
        head = client.put("r/x", "0").header.revision
        client.put("r/x", "1")
        client.compact(head + 1)
        compacted = client.watch("r/x", start_revision=head)
        with pytest.raises(geetcd.WatchCompacted):
            compacted.next_event(timeout=5)
        slow = client.watch("r/", prefix=True, buffer=1)  # never read: overflows
        for i in range(3):
            client.put(f"r/{i}", "x")
        wait_for(lambda: slow.done, what="the overflow")
        with pytest.raises(geetcd.WatchOverflow):
            list(slow)
        s = scrape(registry)
        assert value(s, "geetcd_watches_ended_total", client="r", reason="compacted") == 1
        assert value(s, "geetcd_watches_ended_total", client="r", reason="overflow") == 1
        assert value(s, "geetcd_watches", client="r") == 0
        slow.cancel()  # ended already: not counted twice
        s = scrape(registry)
        assert total(s, "geetcd_watches_ended_total", client="r") == 2
