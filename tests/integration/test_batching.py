"""Opportunistic read batching (``Client(batch_reads=True)``, the default) on a real etcd:
every caller gets exactly its own answer or its own error, batches survive a member
SIGKILL, a lowered server txn limit is learned, and ``batch_reads=False`` sends one
HTTP request per call."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from typing import Any

import gevent
import pytest

import geetcd
from geetcd.protocol import kv as kv_proto
from geetcd.testing import EtcdCluster
from geetcd.transport import Transport

pytestmark = pytest.mark.timeout(120)


class CountingTransport(Transport):
    """The real transport, counting unary requests by path."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.paths: list[str] = []

    def request(self, url: str, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        self.paths.append(path)
        return super().request(url, method, path, *args, **kwargs)


def _ranges(paths: list[str]) -> int:
    return sum(p.endswith(kv_proto.RANGE) for p in paths)


def _txns(paths: list[str]) -> int:
    return sum(p.endswith(kv_proto.TXN) for p in paths)


def test_every_caller_gets_its_own_value(etcd_client: geetcd.Client) -> None:
    keys = [f"k{i:03d}" for i in range(200)]
    etcd_client.txn([], [geetcd.Op.put(k, f"value of {k}") for k in keys[:100]])
    etcd_client.txn([], [geetcd.Op.put(k, f"value of {k}") for k in keys[100:]])
    reads = etcd_client.read_batcher
    assert reads is not None
    before = reads.batched_ops
    outcomes: dict[str, object] = {}
    wrong: list[tuple[str, object]] = []

    def reader(key: str) -> None:
        for _ in range(5):
            tight = random.random() < 0.1
            try:
                kv = etcd_client.get(key, timeout=0.001 if tight else 10)
            except geetcd.DeadlineExceeded:
                outcomes[key] = "timeout"
                continue
            if kv is None or kv.key != key.encode() or kv.value != f"value of {key}".encode():
                wrong.append((key, kv))
            outcomes[key] = "ok"

    greenlets = [gevent.spawn(reader, k) for k in keys]
    gevent.sleep(0.01)
    victims = set(random.sample(range(len(keys)), 20))
    for index in victims:  # killed callers lose only their own read
        greenlets[index].kill(block=False)
    gevent.joinall(greenlets, timeout=60)
    assert all(g.dead for g in greenlets)
    assert wrong == []
    survivors = [k for i, k in enumerate(keys) if i not in victims]
    assert all(greenlets[i].exception is None for i in range(len(keys)))
    assert all(outcomes.get(k) in ("ok", "timeout") for k in survivors)
    assert reads.batched_ops > before  # reads really went out together
    assert etcd_client.get("k000").value == b"value of k000"  # type: ignore[union-attr]


def test_a_compacted_read_fails_only_its_caller() -> None:
    with (
        EtcdCluster(size=1) as private,
        geetcd.Client(private.endpoints, namespace="/compact/") as client,
    ):
        old = client.put("k", "old").header.revision
        latest = client.put("k", "new").header.revision
        client.compact(latest)
        results: dict[int, object] = {}

        def read(i: int) -> None:
            revision = old if i % 10 == 0 else None
            try:
                kv = client.get("k", revision=revision)
                results[i] = kv.value if kv else None
            except geetcd.EtcdError as exc:
                results[i] = type(exc)

        gevent.joinall([gevent.spawn(read, i) for i in range(100)], timeout=30)
        assert len(results) == 100
        for i, result in results.items():
            assert result == (geetcd.CompactedRevision if i % 10 == 0 else b"new"), (i, result)


@pytest.mark.fault
def test_batches_survive_a_member_sigkill(healed_cluster: EtcdCluster) -> None:
    with (
        geetcd.Client(healed_cluster.endpoints, namespace="/batch-kill/", timeout=10) as client,
    ):
        client.txn([], [geetcd.Op.put(f"k{i}", str(i)) for i in range(64)])
        reads = client.read_batcher
        assert reads is not None
        errors: list[BaseException] = []
        done = gevent.event.Event()
        served = [0]

        def reader(i: int) -> None:
            while not done.is_set():
                try:
                    kv = client.get(f"k{i}")
                except geetcd.EtcdError as exc:
                    errors.append(exc)
                    return
                assert kv is not None and kv.value == str(i).encode()
                served[0] += 1

        greenlets = [gevent.spawn(reader, i) for i in range(64)]
        gevent.sleep(1.0)
        (member,) = [m for m in client.cluster_state.members if m.inflight] or [
            client.cluster_state.members[0]
        ]
        victim = next(m for m in healed_cluster.members if m.client_url == member.url)
        before_kill = served[0]
        victim.kill()
        gevent.sleep(3.0)
        done.set()
        gevent.joinall(greenlets, timeout=20)
        assert errors == []
        assert served[0] > before_kill + 64  # reads went on after the kill
        assert reads.batches > 0


def test_a_lowered_server_txn_limit_is_learned() -> None:
    with EtcdCluster(size=1, extra_args=["--max-txn-ops=8"]) as private:
        transport = CountingTransport(maxsize=4)
        with geetcd.Client(private.endpoints, maxsize=4, transport=transport) as client:
            client.put("k", "v")
            reads = client.read_batcher
            assert reads is not None
            values = gevent.joinall(
                [gevent.spawn(client.get, "k") for _ in range(300)], timeout=30, raise_error=True
            )
            assert all(g.value is not None and g.value.value == b"v" for g in values)
            assert reads.max_ops <= 8
            assert reads.batches > 0


@pytest.fixture
def unbatched(etcd_endpoints: list[str]) -> Iterator[tuple[geetcd.Client, CountingTransport]]:
    transport = CountingTransport(maxsize=8)
    client = geetcd.Client(etcd_endpoints, maxsize=8, batch_reads=False, transport=transport)
    yield client, transport
    client.close()


def test_batch_reads_off_sends_one_request_per_call(
    unbatched: tuple[geetcd.Client, CountingTransport],
) -> None:
    client, transport = unbatched
    client.put("/geetcd-test/unbatched", "v")
    transport.paths.clear()
    gevent.joinall([gevent.spawn(client.get, "/geetcd-test/unbatched") for _ in range(64)])
    assert _ranges(transport.paths) == 64
    assert _txns(transport.paths) == 0
    assert client.read_batcher is None


@pytest.fixture
def batched_writes(etcd_endpoints: list[str], etcd_prefix: str) -> Iterator[geetcd.Client]:
    client = geetcd.Client(etcd_endpoints, namespace=etcd_prefix, batch_writes=True)
    yield client
    client.close()


def test_batched_writes_each_get_their_own_answer(batched_writes: geetcd.Client) -> None:
    client = batched_writes
    writes = client.write_batcher
    assert writes is not None
    keys = [f"w{i:03d}" for i in range(150)]
    greenlets = [gevent.spawn(client.put, k, f"v-{k}", prev_kv=True) for k in keys]
    twice = [gevent.spawn(client.put, "same", str(n)) for n in range(10)]  # one key, 10 puts
    bad = gevent.spawn(client.put, "bad", "x", lease=0x7FFF_FFFF_FFFF)  # no such lease
    gevent.joinall([*greenlets, *twice, bad], timeout=30)
    assert all(g.successful() and g.value.header.revision > 0 for g in greenlets)
    assert isinstance(bad.exception, geetcd.LeaseNotFound)  # only that caller failed
    assert client.get("bad") is None
    assert writes.batches > 0 and writes.batched_ops > 1
    revisions = {g.value.header.revision for g in greenlets}
    assert len(revisions) < len(keys)  # batches share one revision each
    for key in keys:
        kv = client.get(key)
        assert kv is not None and kv.value == f"v-{key}".encode()
    # Ten puts to one key never share a txn: ten distinct revisions, the last one wins.
    assert len({g.value.header.revision for g in twice}) == 10
    last = max(twice, key=lambda g: g.value.header.revision)
    same = client.get("same")
    assert same is not None and same.mod_revision == last.value.header.revision
    deleted = gevent.joinall([gevent.spawn(client.delete, k) for k in keys[:50]], timeout=30)
    assert all(g.value.deleted == 1 for g in deleted)
    assert client.range("w", prefix=True, count_only=True).count == 100


@pytest.mark.parametrize("round_", range(3))
def test_close_during_batched_reads_raises_client_closed_everywhere(
    healed_cluster: EtcdCluster, caplog: pytest.LogCaptureFixture, round_: int
) -> None:
    """close() while 200 greenlets read: each caller gets ClientClosed (never the sender's
    GreenletExit), closing neither benches nor logs a member down, and no member crashes (a
    read-only txn whose connection is cut while etcd 3.5.0-3.5.4 applies it panics the
    member, etcd issue #14110: such answers are drained, not cut)."""
    etcd_cluster = healed_cluster
    client = geetcd.Client(etcd_cluster.endpoints, namespace=f"/close-{round_}/")
    client.put("k", "v")
    outcomes: list[BaseException | None] = []

    def reader() -> None:
        try:
            while True:
                client.get("k")
        except BaseException as exc:  # GreenletExit included: that is the defect
            outcomes.append(exc)

    caplog.set_level(logging.INFO, logger="geetcd")
    readers = [gevent.spawn(reader) for _ in range(200)]
    gevent.sleep(0.3)
    reads = client.read_batcher
    assert reads is not None and reads.batches > 0  # batches were in flight
    client.close()
    gevent.joinall(readers, timeout=10)
    assert all(r.dead for r in readers)
    assert len(outcomes) == 200
    kinds = {type(exc).__name__ for exc in outcomes}
    assert kinds == {"ClientClosed"}, kinds
    assert all(m.state is geetcd.MemberState.HEALTHY for m in client.cluster_state.members)
    downs = [r.getMessage() for r in caplog.records if "-> down" in r.getMessage()]
    assert downs == []
    gevent.sleep(1.0)
    assert all(m.is_running for m in etcd_cluster.members), etcd_cluster
