"""Many greenlets on one client, and paged iteration while others write (real etcd)."""

from __future__ import annotations

import random
import time

import gevent
import gevent.event
import pytest

import geetcd
from geetcd import Op

pytestmark = pytest.mark.timeout(120)

N_KEYS = 2500
PAGE = 100


def load(client: geetcd.Client, items: dict[str, str]) -> int:
    """Write ``items`` in transactions of 128 puts; return the last revision."""
    keys = sorted(items)
    revision = 0
    for start in range(0, len(keys), 128):
        chunk = keys[start : start + 128]
        response = client.txn([], [Op.put(k, items[k]) for k in chunk])
        assert response.succeeded
        revision = response.header.revision
    return revision


def test_iter_prefix_is_one_consistent_snapshot(etcd_client: geetcd.Client) -> None:
    items = {f"it/{i:05d}": f"v{i}" for i in range(0, 2 * N_KEYS, 2)}  # even numbers only
    loaded_at = load(etcd_client, items)
    assert etcd_client.range("it/", prefix=True, count_only=True).count == N_KEYS

    first_page_read = gevent.event.Event()
    writes_done = gevent.event.Event()
    written: list[str] = []

    def writer() -> None:
        first_page_read.wait()
        rng = random.Random(3)
        # new keys between existing ones, changed values, deleted keys, all ahead of the reader
        for i in rng.sample(range(1, 2 * N_KEYS, 2), 100):
            etcd_client.put(f"it/{i:05d}", "new")
            written.append(f"it/{i:05d}")
        for i in rng.sample(range(400, 2 * N_KEYS, 2), 50):
            etcd_client.put(f"it/{i:05d}", "changed")
        for i in rng.sample(range(402, 2 * N_KEYS, 4), 50):
            etcd_client.delete(f"it/{i:05d}")
        writes_done.set()

    writer_greenlet = gevent.spawn(writer)
    seen: list[geetcd.KeyValue] = []
    with gevent.Timeout(60):
        for kv in etcd_client.iter_prefix("it/", page_size=PAGE):
            seen.append(kv)
            if len(seen) == 1:
                first_page_read.set()
                writes_done.wait()  # every write lands while the iteration is under way
    writer_greenlet.get(timeout=10)

    assert writes_done.is_set()
    assert len(seen) == N_KEYS
    assert [kv.key.decode() for kv in seen] == sorted(items)  # all keys, in order, no new ones
    assert all(kv.value.decode() == items[kv.key.decode()] for kv in seen)  # old values
    assert all(kv.mod_revision <= loaded_at for kv in seen)
    # and the writes did happen
    now = {kv.key.decode(): kv.value for kv in etcd_client.get_prefix("it/", keys_only=False)}
    assert all(now[k] == b"new" for k in written)
    assert b"changed" in now.values()
    assert len(now) == N_KEYS + 100 - 50


def test_iter_prefix_pages_and_options(etcd_client: geetcd.Client) -> None:
    items = {f"pg/{i:03d}": str(i) for i in range(250)}
    revision = load(etcd_client, items)
    keys = [kv.key for kv in etcd_client.iter_prefix("pg/", page_size=100, keys_only=True)]
    assert keys == [k.encode() for k in sorted(items)]
    etcd_client.delete_prefix("pg/")
    # an explicit revision reads the past, page by page
    old = list(etcd_client.iter_prefix("pg/", page_size=7, revision=revision))
    assert [kv.key for kv in old] == [k.encode() for k in sorted(items)]
    assert all(kv.value.decode() == items[kv.key.decode()] for kv in old)
    assert list(etcd_client.iter_prefix("pg/", page_size=10)) == []
    # exactly one full page, and a page size of one
    load(etcd_client, {f"pg/{i}": "x" for i in range(10)})
    assert len(list(etcd_client.iter_prefix("pg/", page_size=10))) == 10
    assert len(list(etcd_client.iter_prefix("pg/", page_size=1))) == 10


def test_1000_greenlets_mixed_reads_and_writes(etcd_client: geetcd.Client) -> None:
    n = 1000
    errors: list[BaseException] = []
    results: dict[int, tuple[bytes, bytes]] = {}

    def worker(i: int) -> None:
        mine, other = f"g/{i:04d}/a", f"g/{i:04d}/b"
        first = etcd_client.put(mine, f"{i}-1")
        assert first.header.revision > 0
        kv = etcd_client.get(mine)
        assert kv is not None and kv.value == f"{i}-1".encode(), kv
        put = etcd_client.put(mine, f"{i}-2", prev_kv=True)
        assert put.prev_kv is not None and put.prev_kv.value == f"{i}-1".encode()
        etcd_client.put(other, str(i))
        got = etcd_client.get_prefix(f"g/{i:04d}/")
        assert [(kv.key, kv.value) for kv in got] == [
            (mine.encode(), f"{i}-2".encode()),
            (other.encode(), str(i).encode()),
        ]
        results[i] = (got[0].value, got[1].value)

    def guarded(i: int) -> None:
        try:
            worker(i)
        except Exception as exc:  # collected and reported below, never swallowed
            errors.append(exc)

    started = time.monotonic()
    greenlets = [gevent.spawn(guarded, i) for i in range(n)]
    done = gevent.joinall(greenlets, timeout=90)
    elapsed = time.monotonic() - started
    assert len(done) == n, f"{n - len(done)} greenlets still running after {elapsed:.1f} s"
    assert errors == [], f"{len(errors)} failures, first: {errors[0]!r}"
    assert len(results) == n

    # verify afterwards, independently of what the greenlets saw
    final = {kv.key.decode(): kv for kv in etcd_client.iter_prefix("g/", page_size=500)}
    assert len(final) == 2 * n
    for i in range(n):
        a, b = final[f"g/{i:04d}/a"], final[f"g/{i:04d}/b"]
        assert a.value == f"{i}-2".encode() and a.version == 2
        assert b.value == str(i).encode() and b.version == 1
    # the pool never grew beyond its bound
    for member in etcd_client.cluster_state.members:
        in_use, maxsize = etcd_client.core.transport.pool_usage(member.url)
        assert maxsize == 64 and 0 <= in_use <= maxsize
        assert member.inflight == 0


def test_concurrent_put_if_absent_has_one_winner(etcd_client: geetcd.Client) -> None:
    outcomes = [gevent.spawn(etcd_client.put_if_absent, "lock", f"g{i}") for i in range(50)]
    gevent.joinall(outcomes, timeout=30, raise_error=True)
    winners = [i for i, g in enumerate(outcomes) if g.value is True]
    assert len(winners) == 1
    kv = etcd_client.get("lock")
    assert kv is not None and kv.value == f"g{winners[0]}".encode()
