"""Watches and keepalives multiplexed on WebSockets (geetcd.watch_mux, geetcd.keepalive_ws),
against real etcd members: private ones where the server's counters must be exact."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.event
import gevent.pool
import gevent.server
import gevent.socket
import pytest
from polling import wait_for

import geetcd
from geetcd.testing import EtcdCluster
from geetcd.txn import Op
from geetcd.watch import Watch

STREAMS = "etcd_debugging_mvcc_watch_stream_total"
WATCHERS = "etcd_debugging_mvcc_watcher_total"


@pytest.fixture(scope="module")
def private_member() -> Iterator[EtcdCluster]:
    """A member of its own (its stream and watcher counts are this module's alone), with a
    small request limit so that big watch responses are fragmented."""
    with EtcdCluster(1, extra_args=["--max-request-bytes=8192"]) as cluster:
        yield cluster


def counts(cluster: EtcdCluster) -> tuple[float, float]:
    metrics = cluster.members[0].metrics()
    return metrics.get(STREAMS, 0.0), metrics.get(WATCHERS, 0.0)


def settled(cluster: EtcdCluster, streams: float, watchers: float) -> None:
    wait_for(lambda: counts(cluster) == (streams, watchers), 15, f"{streams}/{watchers} on server")


def test_5000_distinct_watches_use_one_server_stream(private_member: EtcdCluster) -> None:
    settled(private_member, 0, 0)
    n = 5000
    with geetcd.Client(private_member.endpoints, namespace="/ws-many/") as client:
        pool = gevent.pool.Pool(200)
        watches: list[Watch] = list(pool.imap(lambda i: client.watch(f"k{i}"), range(n)))
        assert counts(private_member) == (1, n)
        # Every key written once, 100 puts per txn: each watch sees exactly its own event.
        revisions: dict[str, int] = {}
        for start in range(0, n, 100):
            keys = [f"k{i}" for i in range(start, start + 100)]
            answer = client.txn(success=[Op.put(key, f"v{key}") for key in keys])
            for key in keys:
                revisions[key] = answer.header.revision
        for i, watch in enumerate(watches):
            event = watch.next_event(timeout=10)
            assert (event.kv.key, event.kv.value, event.revision) == (
                f"k{i}".encode(),
                f"vk{i}".encode(),
                revisions[f"k{i}"],
            )
            assert watch.buffered == 0
        client.put("k7", "again")
        assert watches[7].next_event(timeout=5).kv.value == b"again"
        assert all(w.buffered == 0 for i, w in enumerate(watches) if i != 7)
        # Cancel is one message: the server's watcher count drops by exactly one.
        watches[0].cancel()
        assert counts(private_member) == (1, n - 1)
        channel = client.core.watch_hub.mux.channel
        assert channel is not None and channel.reconnects == 0
    settled(private_member, 0, 0)


def test_identical_watches_still_share_one_server_watch(private_member: EtcdCluster) -> None:
    settled(private_member, 0, 0)
    with geetcd.Client(private_member.endpoints, namespace="/ws-same/") as client:
        watches = [client.watch("same") for _ in range(5)] + [client.watch("other")]
        assert counts(private_member) == (1, 2)
        revision = client.put("same", "x").header.revision
        assert [w.next_event(timeout=5).revision for w in watches[:5]] == [revision] * 5
        for watch in watches[:4]:
            watch.cancel()
        assert counts(private_member) == (1, 2)
        watches[4].cancel()
        assert counts(private_member) == (1, 1)


def test_an_idle_channel_closes_and_the_next_watch_opens_another(
    private_member: EtcdCluster,
) -> None:
    from geetcd.watch_mux import IDLE_LINGER

    settled(private_member, 0, 0)
    with geetcd.Client(private_member.endpoints, namespace="/ws-idle/") as client:
        client.watch("a").cancel()
        first = client.core.watch_hub.mux.channel
        assert counts(private_member) == (1, 0)  # kept open a moment for the next watch
        settled(private_member, 0, 0)  # then closed (after IDLE_LINGER)
        assert first is not None and first.closed and IDLE_LINGER < 15
        watch = client.watch("a")
        assert client.core.watch_hub.mux.channel is not first
        assert counts(private_member) == (1, 1)
        revision = client.put("a", "1").header.revision
        assert watch.next_event(timeout=5).revision == revision
        state = {m.url: m.state for m in client.cluster_state.members}
        assert state[private_member.endpoints[0]] is not geetcd.MemberState.DOWN


def test_a_fragmented_response_is_delivered_whole(private_member: EtcdCluster) -> None:
    # etcd fragments a watch response bigger than --max-request-bytes + 512 KiB (here about
    # 520 KiB): a replay of 800 revisions of 1 KiB values is sent as one response of ~900 KiB.
    with geetcd.Client(private_member.endpoints, namespace="/ws-frag/") as client:
        pool = gevent.pool.Pool(32)
        written = sorted(
            pool.imap(lambda i: client.put(f"key-{i:03d}", "v" * 1024).header.revision, range(800))
        )
        watch = client.watch("key-", prefix=True, start_revision=written[0])
        delivered: list[int] = []
        while len(delivered) < len(written):
            batch = watch.next_batch(timeout=10)
            assert all(len(e.kv.value) == 1024 for e in batch.events)
            delivered.append(batch.revision)
        assert delivered == written
        channel = client.core.watch_hub.mux.channel
        assert channel is not None and channel.fragmented >= 1, "the server did not fragment"


def test_request_progress_is_a_barrier(private_member: EtcdCluster) -> None:
    with geetcd.Client(private_member.endpoints, namespace="/ws-progress/") as client:
        watch = client.watch("watched")
        unrelated = client.put("unrelated", "1").header.revision
        assert watch.request_progress(timeout=5) >= unrelated
        assert watch.revision >= unrelated
        written = client.put("watched", "1").header.revision
        barrier = watch.request_progress(timeout=5)
        assert barrier >= written
        assert watch.buffered == 1  # delivered before the barrier returned
        assert watch.next_event(timeout=0.1).revision == written
        with geetcd.Client(private_member.endpoints, streams="http") as http_client:
            http_watch = http_client.watch("watched")
            with pytest.raises(geetcd.WatchError, match="WebSocket"):
                http_watch.request_progress(timeout=1)


# ---------------------------------------------------------------- failures of members
def _keys_history(client: geetcd.Client, start: int, end: int) -> dict[bytes, list[int]]:
    """Every change under the namespace in [start, end], per key, replayed from history."""
    history: dict[bytes, list[int]] = {}
    with client.watch("", prefix=True, start_revision=start) as replay:
        for batch in replay.responses():
            for event in batch.events:
                history.setdefault(event.kv.key, []).append(event.revision)
            if batch.revision >= end:
                history.pop(b"marker", None)  # the writer's start and end marks, not watched
                return history
    raise AssertionError("replay ended early")


@pytest.mark.parametrize("fault", ["kill", "pause"])
def test_every_watch_resumes_exactly_once(healed_cluster: EtcdCluster, fault: str) -> None:
    n = 200
    with (
        geetcd.Client(healed_cluster.endpoints, namespace="/ws-fault/", timeout=15) as watcher,
        geetcd.Client(healed_cluster.endpoints, namespace="/ws-fault/", timeout=15) as writer,
    ):
        writer.delete_prefix("")
        watches = [watcher.watch(f"k{i}", liveness=2.0) for i in range(n)]
        start = writer.put("marker", "x").header.revision + 1
        seen: dict[bytes, list[int]] = {}

        def consume(watch: Watch) -> None:
            for batch in watch.responses():
                for event in batch.events:
                    seen.setdefault(event.kv.key, []).append(event.revision)

        consumers = [gevent.spawn(consume, w) for w in watches]
        stop = gevent.event.Event()
        last = [0]

        def write() -> None:
            i = 0
            while not stop.is_set() and i < 5000:
                try:
                    last[0] = writer.put(f"k{i % n}", str(i)).header.revision
                except geetcd.EtcdError:
                    gevent.sleep(0.05)
                i += 1

        writing = gevent.spawn(write)
        gevent.sleep(0.5)
        wait_for(lambda: watches[0].member is not None, what="channel connected")
        victim = next(m for m in healed_cluster.members if m.client_url == watches[0].member)
        if fault == "kill":
            victim.kill()
        else:
            victim.pause()
        try:
            wait_for(lambda: watches[0].member not in (None, victim.client_url), 20, "moved")
            assert all(w.member == watches[0].member for w in watches)  # one channel
            gevent.sleep(1.0)
            stop.set()
            writing.join(15)
            # The end of history is read from the server after the writer stopped, not its last
            # acknowledged write: a last put whose outcome was unknown may have been applied.
            end = writer.put("marker", "end", timeout=15).header.revision
            assert end > last[0]
            wait_for(
                lambda: (
                    sum(len(v) for v in seen.values())
                    >= sum(len(v) for v in _keys_history(writer, start, end).values())
                ),
                20,
                "every event delivered",
            )
            history = _keys_history(writer, start, end)
            assert seen == history, "lost, repeated or reordered events"
            assert watcher.core.watch_hub.mux.channel is not None
            assert watcher.core.watch_hub.mux.channel.reconnects >= 1
        finally:
            if fault == "pause":
                victim.resume()
            for consumer in consumers:
                consumer.kill(block=False)


# ---------------------------------------------------------------- keepalive
def test_5000_leases_kept_alive_for_60_s(healed_cluster: EtcdCluster) -> None:
    n, ttl = 5000, 6
    with geetcd.Client(healed_cluster.endpoints, timeout=15) as client:
        pool = gevent.pool.Pool(64)
        # Kept alive from its grant on (granting 5,000 can take longer than one TTL).
        leases = list(pool.imap(lambda _: client.lease(ttl, keepalive=True), range(n)))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            gevent.sleep(1.0)
            lost = [lease for lease in leases if lease.lost.is_set()]
            assert not lost, f"{len(lost)} leases lost, e.g. {lost[0].lost_reason}"
        alive = set(client.leases())
        assert {lease.id for lease in leases} <= alive
        keepalive = client.core.keepalive
        assert keepalive.channels.enabled and keepalive.stats.lost == 0
        assert keepalive.stats.refreshed >= n * 60 / (ttl / 3) * 0.8
        for lease in leases[:100]:
            lease.revoke()


# ---------------------------------------------------------------- fallback
class UpgradeRefusingProxy:
    """A TCP proxy in front of one member that answers every WebSocket upgrade with
    ``400 Bad Request`` (as a proxy that strips ``Upgrade`` would fail it) and forwards
    everything else byte for byte."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("http://").rsplit(":", 1)
        self.target = (host, int(port))
        self.refused = 0
        self.server = gevent.server.StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def _handle(self, client: socket.socket, _address: object) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = client.recv(65536)
            if not data:
                return
            head += data
        if b"upgrade: websocket" in head.lower():
            self.refused += 1
            client.sendall(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\nConnection: close\r\n\r\n"
                b"no upgrades"
            )
            client.close()
            return
        upstream = gevent.socket.create_connection(self.target)
        upstream.sendall(head)

        def pipe(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for sock in (src, dst):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

        back = gevent.spawn(pipe, upstream, client)
        pipe(client, upstream)
        back.join(5)

    def stop(self) -> None:
        self.server.stop()


def test_refused_upgrade_falls_back_to_http(
    private_member: EtcdCluster, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = UpgradeRefusingProxy(private_member.endpoints[0])
    caplog.set_level(logging.WARNING, logger="geetcd")
    try:
        with geetcd.Client([proxy.url], namespace="/ws-proxy/") as client:
            watches = [client.watch(f"k{i}") for i in range(3)]
            revision = client.put("k1", "v").header.revision
            assert watches[1].next_event(timeout=5).revision == revision
            assert client.core.watch_hub.mux.refused is not None
            lease = client.lease(3).keep_alive()
            gevent.sleep(4)
            assert not lease.lost.is_set()
            assert client.core.keepalive.channels.refused is not None
            # One record of the refusal (Core.websocket_refused): the keepalive never asks again.
            assert proxy.refused == 1
        refusals = [r for r in caplog.records if "refused" in r.getMessage()]
        assert len(refusals) == 1, [r.getMessage() for r in refusals]  # one line per client
    finally:
        proxy.stop()


def test_a_client_with_credentials_watches_over_http(private_member: EtcdCluster) -> None:
    # etcd's WebSocket proxy sends the token as "Bearer <token>", which etcd rejects
    # (etcd issue #19752): a client with credentials must not put its watches there.
    client = geetcd.Client(private_member.endpoints, user="nobody", password="x")
    try:
        assert not client.core.watch_hub.mux.enabled
    finally:
        client.close()
    with geetcd.Client(private_member.endpoints) as plain:
        assert plain.core.watch_hub.mux.enabled


# ---------------------------------------------------------------- TLS
@pytest.fixture(scope="module")
def mtls_member(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    from tls_etcd import mtls_member_session

    yield from mtls_member_session(tmp_path_factory.mktemp)


def test_websocket_streams_over_tls_with_a_client_certificate(
    mtls_member: tuple[Any, Any],
) -> None:
    from tls_etcd import DNS_NAME

    member, pki = mtls_member
    tls = geetcd.TLS(
        ca_file=pki.ca_file,
        cert_file=pki.client_cert,
        key_file=pki.client_key,
        server_hostname=DNS_NAME,
    )
    with geetcd.Client(member.url, tls=tls, timeout=10) as client:
        watch = client.watch("tls/k")
        channel = client.core.watch_hub.mux.channel
        assert channel is not None and channel.ws is not None  # on a WebSocket, not HTTP
        assert client.put("tls/k", "v").header.revision == watch.next_event(timeout=5).revision
        lease = client.lease(3).keep_alive()
        gevent.sleep(3.5)
        assert not lease.lost.is_set()
        assert client.core.keepalive.channels.refused is None
        assert client.core.keepalive.stats.refreshed >= 1
