"""client.stm against a real 3-member etcd cluster: the bank-transfer invariant under 50
concurrent transfers at each isolation that compares reads, the lost update that
read_committed (as in Go) allows, snapshot reads, retries, and a commit whose answer is
lost when the leader is SIGSTOPped (resolved by reading back, not raised)."""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator

import gevent
import gevent.event
import pytest

import geetcd
from geetcd.recipes.stm import STMTx
from geetcd.testing import EtcdCluster

pytestmark = pytest.mark.timeout(120)

ACCOUNTS = 10
BALANCE = 100
TRANSFERS = 50


@pytest.fixture
def ns() -> str:
    return f"/recipes-stm-{secrets.token_hex(4)}/"


@pytest.fixture
def client(etcd_cluster: EtcdCluster, ns: str) -> Iterator[geetcd.Client]:
    with geetcd.Client(etcd_cluster.endpoints, namespace=ns) as c:
        yield c


def account(i: int) -> str:
    return f"accounts/{i:02d}"


@pytest.mark.parametrize("isolation", ["serializable_snapshot", "serializable", "repeatable_reads"])
def test_bank_transfers_keep_the_total(etcd_cluster: EtcdCluster, ns: str, isolation: str) -> None:
    clients = [geetcd.Client(etcd_cluster.endpoints, namespace=ns) for _ in range(5)]
    try:
        for i in range(ACCOUNTS):
            clients[0].put(account(i), str(BALANCE))
        runs = [0]
        audits: list[int] = []
        done = gevent.event.Event()
        rng = random.Random(14)

        def transfer(index: int) -> None:
            c = clients[index % len(clients)]
            src, dst = rng.sample(range(ACCOUNTS), 2)
            amount = rng.randint(1, 60)

            def move(tx: STMTx) -> bool:
                runs[0] += 1
                have = int(tx.get(account(src)) or 0)
                gevent.sleep(rng.random() * 0.01)  # widen the window for conflicts
                if have < amount:
                    return False
                tx.put(account(src), str(have - amount))
                tx.put(account(dst), str(int(tx.get(account(dst)) or 0) + amount))
                return True

            c.stm(move, isolation=isolation)

        def audit() -> None:
            def total(tx: STMTx) -> int:
                return sum(int(tx.get(account(i)) or 0) for i in range(ACCOUNTS))

            while not done.is_set():
                audits.append(clients[-1].stm(total, isolation=isolation))

        auditor = gevent.spawn(audit)
        gevent.joinall(
            [gevent.spawn(transfer, i) for i in range(TRANSFERS)], raise_error=True, timeout=60
        )
        done.set()
        auditor.join(timeout=10)
        balances = [int(clients[0].get(account(i)).value) for i in range(ACCOUNTS)]  # type: ignore[union-attr]
        assert sum(balances) == ACCOUNTS * BALANCE, balances
        assert min(balances) >= 0, balances
        assert audits and set(audits) == {ACCOUNTS * BALANCE}, set(audits)
        assert runs[0] > TRANSFERS  # there were conflicts, and they were rerun
        print(f"{isolation}: {runs[0]} runs for {TRANSFERS} transfers, {len(audits)} audits")
    finally:
        for c in clients:
            c.close()


@pytest.mark.parametrize(
    ("isolation", "final", "first_fn_runs"),
    [
        ("serializable_snapshot", 2, 2),
        ("serializable", 2, 2),
        ("repeatable_reads", 2, 2),
        ("read_committed", 1, 1),  # compares nothing: the concurrent increment is lost
    ],
)
def test_concurrent_increment(
    client: geetcd.Client, isolation: str, final: int, first_fn_runs: int
) -> None:
    client.put("n", "0")
    other_done = gevent.event.Event()
    runs = [0]

    def slow_increment(tx: STMTx) -> None:
        runs[0] += 1
        value = int(tx.get("n") or 0)
        if runs[0] == 1:
            gevent.spawn(client.stm, fast_increment, isolation=isolation).link(
                lambda _g: other_done.set()
            )
            assert other_done.wait(10)
        tx.put("n", str(value + 1))

    def fast_increment(tx: STMTx) -> None:
        tx.put("n", str(int(tx.get("n") or 0) + 1))

    client.stm(slow_increment, isolation=isolation)
    kv = client.get("n")
    assert kv is not None and int(kv.value) == final
    assert runs[0] == first_fn_runs


@pytest.mark.parametrize("isolation", ["serializable_snapshot", "serializable"])
def test_reads_see_the_snapshot_of_the_first_read(
    etcd_cluster: EtcdCluster, ns: str, isolation: str
) -> None:
    with (
        geetcd.Client(etcd_cluster.endpoints, namespace=ns) as c,
        geetcd.Client(etcd_cluster.endpoints, namespace=ns) as other,
    ):
        c.put("a", "a0")
        c.put("b", "b0")
        seen: list[tuple[bytes | None, bytes | None]] = []

        def fn(tx: STMTx) -> None:
            a = tx.get("a")
            if not seen:
                other.put("b", "b1")  # after our snapshot
            seen.append((a, tx.get("b")))
            tx.put("c", (a or b"") + (tx.get("b") or b""))

        c.stm(fn, isolation=isolation)
        # run 1 read b at the snapshot (b0); its commit failed (b changed); run 2 saw b1
        assert seen == [(b"a0", b"b0"), (b"a0", b"b1")]
        assert c.get("c").value == b"a0b1"  # type: ignore[union-attr]


def test_results_errors_and_retries(client: geetcd.Client) -> None:
    assert client.stm(lambda tx: tx.get("missing")) is None

    def fails(tx: STMTx) -> None:
        tx.put("x", "never")
        raise KeyError("from fn")

    with pytest.raises(KeyError):
        client.stm(fails)
    assert client.get("x") is None  # nothing committed

    kept: list[STMTx] = []

    def always_conflicts(tx: STMTx) -> None:
        kept.append(tx)
        tx.get("hot")
        client.put("hot", secrets.token_hex(2))  # changes what we read, every run
        tx.put("hot-copy", "x")

    with pytest.raises(geetcd.STMConflict) as info:
        client.stm(always_conflicts, retries=2)
    assert info.value.attempts == 3 and len(kept) == 3
    assert client.get("hot-copy") is None
    with pytest.raises(geetcd.InvalidArgument):
        kept[0].get("hot")  # tx is only valid inside fn
    with pytest.raises(geetcd.InvalidArgument):
        client.stm(lambda tx: None, isolation="linearizable")
    with pytest.raises(geetcd.InvalidType):
        client.stm("not callable")  # type: ignore[arg-type]


@pytest.mark.fault
def test_commit_with_a_lost_answer_is_resolved_by_reading_back(
    healed_cluster: EtcdCluster, ns: str
) -> None:
    leader = healed_cluster.leader()
    with geetcd.Client(
        healed_cluster.endpoints, namespace=ns, timeout=10.0, attempt_timeout=1.0
    ) as c:
        c.put("n", "0")
        state = c.cluster_state
        state._current = next(m for m in state.members if m.url == leader.client_url)
        runs = [0]

        def increment(tx: STMTx) -> int:
            runs[0] += 1
            value = int(tx.get("n") or 0)
            if runs[0] == 1:
                leader.pause()  # the commit goes to a member that never answers
            tx.put("n", str(value + 1))
            return value + 1

        try:
            assert c.stm(increment) == 1
        finally:
            leader.resume()
        assert runs[0] == 2  # the lost commit was found not applied, and fn ran again
        healed_cluster.heal()
        gevent.sleep(1.0)  # the resumed member may still deliver the stale request: guarded
        kv = c.get("n")
        assert kv is not None and kv.value == b"1"
