"""client.lock against a real 3-member etcd cluster: mutual exclusion (greenlets of one
client and many clients), FIFO order, try_acquire, lost leases, member SIGKILL / SIGSTOP
with fencing tokens, and interop with ``etcdctl lock``."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator

import gevent
import pytest
from test_recipes_support import CountingTransport, Ctl, Exclusion, wait_until

import geetcd
from geetcd import Compare, Op
from geetcd.testing import EtcdCluster

pytestmark = pytest.mark.timeout(120)

# The 200 greenlets x 20 iterations on one client. On many clients every acquisition
# is a hand-off through etcd plus the counter's get and put (10-20 ms on a loaded 2-core
# machine), so that run does 200 x 4 by default; GEETCD_LOCK_ITERATIONS=20 runs the full one.
GREENLETS = 200
ITERATIONS = 20
MANY_CLIENTS = 10
MANY_ITERATIONS = int(os.environ.get("GEETCD_LOCK_ITERATIONS", "4"))


@pytest.fixture
def ns() -> str:
    return f"/recipes-lock-{secrets.token_hex(4)}/"


@pytest.fixture
def client(etcd_cluster: EtcdCluster, ns: str) -> Iterator[geetcd.Client]:
    with geetcd.Client(etcd_cluster.endpoints, namespace=ns) as c:
        yield c


def waiter_keys(client: geetcd.Client, name: str) -> list[bytes]:
    """The waiter keys of ``name`` in create order."""
    response = client.range(f"{name}/", prefix=True, sort_order="ascend", sort_target="create")
    return [kv.key for kv in response.kvs]


def lease_of(key: bytes) -> int:
    return int(key.rsplit(b"/", 1)[1], 16)


# ------------------------------------------------------------------ mutual exclusion
def test_mutual_exclusion_greenlets_sharing_one_client(client: geetcd.Client) -> None:
    seen = Exclusion()
    counter = [0]

    def worker(index: int) -> None:
        for _ in range(ITERATIONS):
            lock = client.lock("counter")
            with lock:
                seen.enter(index, lock.revision)
                value = counter[0]
                gevent.sleep(0)  # every other runnable greenlet runs here
                counter[0] = value + 1
                seen.leave(index)

    started = time.monotonic()
    gevent.joinall([gevent.spawn(worker, i) for i in range(GREENLETS)], raise_error=True)
    took = time.monotonic() - started
    assert counter[0] == GREENLETS * ITERATIONS
    assert seen.violations == []
    assert len(seen.tokens) == GREENLETS * ITERATIONS  # each with its own, growing token
    assert wait_until(lambda: waiter_keys(client, "counter") == [], 5.0)
    print(f"{GREENLETS * ITERATIONS} acquisitions in {took:.1f} s")


def test_mutual_exclusion_many_clients_counter_in_etcd(etcd_cluster: EtcdCluster, ns: str) -> None:
    clients = [geetcd.Client(etcd_cluster.endpoints, namespace=ns) for _ in range(MANY_CLIENTS)]
    seen = Exclusion()
    try:
        clients[0].put("counter", "0")

        def worker(index: int) -> None:
            c = clients[index % MANY_CLIENTS]
            for _ in range(MANY_ITERATIONS):
                lock = c.lock("counter")
                with lock:
                    seen.enter(index, lock.revision)
                    kv = c.get("counter")
                    assert kv is not None
                    c.put("counter", str(int(kv.value) + 1))  # read-modify-write in etcd
                    seen.leave(index)

        gevent.joinall([gevent.spawn(worker, i) for i in range(GREENLETS)], raise_error=True)
        kv = clients[0].get("counter")
        assert kv is not None and int(kv.value) == GREENLETS * MANY_ITERATIONS
        assert seen.violations == []
        assert wait_until(lambda: waiter_keys(clients[0], "counter") == [], 5.0)
    finally:
        for c in clients:
            c.close()


# ------------------------------------------------------------------ order and try
def test_fifo_order_across_clients_and_greenlets(etcd_cluster: EtcdCluster, ns: str) -> None:
    clients = [geetcd.Client(etcd_cluster.endpoints, namespace=ns) for _ in range(4)]
    try:
        holder = clients[0].lock("fifo")
        assert holder.acquire(timeout=5)
        order: list[str] = []
        waiters: list[gevent.Greenlet[..., None]] = []

        def wait_for(c: geetcd.Client, label: str) -> None:
            lock = c.lock("fifo")
            assert lock.acquire(timeout=20)
            order.append(label)
            gevent.sleep(0.01)
            lock.release()

        # Remote waiters queue in etcd one after another; greenlets of clients[3] queue
        # locally behind its first one.
        for i, (c, label) in enumerate(
            [(clients[1], "c1"), (clients[2], "c2"), (clients[3], "c3a"), (clients[3], "c3b")]
        ):
            waiters.append(gevent.spawn(wait_for, c, label))
            if i < 3:
                keys = i + 2  # the holder's key, those before us and ours
                assert wait_until(lambda n=keys: len(waiter_keys(clients[0], "fifo")) == n, 5)
            else:
                gevent.sleep(0.1)
        # A greenlet of the holder's own client queues locally behind the holder: it
        # queues in etcd when the holder releases, behind c3a.
        waiters.append(gevent.spawn(wait_for, clients[0], "c0"))
        gevent.sleep(0.1)
        assert len(waiter_keys(clients[0], "fifo")) == 4
        assert order == []
        holder.release()
        gevent.joinall(waiters, raise_error=True, timeout=30)
        # c3b queued (locally) before c0, but its key is created only when c3a releases:
        # by then c0's key is older.
        assert order == ["c1", "c2", "c3a", "c0", "c3b"], order
    finally:
        for c in clients:
            c.close()


def test_try_acquire_under_contention(etcd_cluster: EtcdCluster, ns: str) -> None:
    clients = [geetcd.Client(etcd_cluster.endpoints, namespace=ns) for _ in range(4)]
    try:
        holder = clients[0].lock("try")
        assert holder.try_acquire()
        assert holder.try_acquire()  # already held: a no-op
        other_local = clients[0].lock("try")
        assert not other_local.try_acquire()
        remote = clients[1].lock("try")
        started = time.monotonic()
        assert not remote.try_acquire()
        assert time.monotonic() - started < 1.0
        assert waiter_keys(clients[0], "try") == [holder.key]  # the failed try left no key
        holder.release()
        assert remote.try_acquire()
        remote.release()

        seen = Exclusion()
        wins = [0]
        tries = [0]
        stop_at = time.monotonic() + 3.0

        def contender(index: int) -> None:
            lock = clients[index % 4].lock("try")
            while time.monotonic() < stop_at:
                tries[0] += 1
                if lock.try_acquire():
                    wins[0] += 1
                    seen.enter(index, lock.revision)
                    gevent.sleep(0.005)
                    seen.leave(index)
                    lock.release()
                gevent.sleep(0.002)

        gevent.joinall([gevent.spawn(contender, i) for i in range(20)], raise_error=True)
        assert seen.violations == []
        assert 0 < wins[0] < tries[0]
        assert wait_until(lambda: waiter_keys(clients[0], "try") == [], 5.0)
    finally:
        for c in clients:
            c.close()


def test_reacquire_is_a_noop_and_every_acquisition_has_a_new_token(
    client: geetcd.Client,
) -> None:
    lock = client.lock("re")
    assert lock.acquire()
    key, first = lock.key, lock.revision
    assert first is not None and key is not None
    assert key.startswith(b"re/")
    kv = client.get(key)
    assert kv is not None and kv.create_revision == first and kv.lease == lease_of(key)
    assert lock.acquire(timeout=0)  # already held: the same acquisition
    assert lock.revision == first
    # is_owner() guards a write inside a txn
    assert client.txn([lock.is_owner()], [Op.put("guarded", "1")]).succeeded
    lock.release()
    stale = Compare.create_revision(key) == first
    assert not client.txn([stale], [Op.put("guarded", "2")]).succeeded
    with pytest.raises(geetcd.InvalidArgument):
        lock.is_owner()
    assert lock.acquire(timeout=5)
    assert lock.revision is not None and lock.revision > first
    lock.release()
    lock.release()  # not held: a no-op


def test_waiter_that_times_out_or_is_killed_deletes_its_key(
    etcd_cluster: EtcdCluster, ns: str
) -> None:
    with (
        geetcd.Client(etcd_cluster.endpoints, namespace=ns) as a,
        geetcd.Client(etcd_cluster.endpoints, namespace=ns) as b,
    ):
        holder = a.lock("gone")
        assert holder.acquire(timeout=5)
        started = time.monotonic()
        assert not b.lock("gone").acquire(timeout=0.5)
        assert 0.5 <= time.monotonic() - started < 2.0
        assert waiter_keys(a, "gone") == [holder.key]
        # a greenlet killed while waiting in etcd
        waiter = gevent.spawn(b.lock("gone").acquire)
        assert wait_until(lambda: len(waiter_keys(a, "gone")) == 2, 5)
        waiter.kill(timeout=5)
        assert wait_until(lambda: waiter_keys(a, "gone") == [holder.key], 5)
        # a gevent.Timeout around acquire: the key goes too
        with pytest.raises(gevent.Timeout), gevent.Timeout(0.5):
            b.lock("gone").acquire()
        assert wait_until(lambda: waiter_keys(a, "gone") == [holder.key], 5)
        # a greenlet of the holder's own client killed in the local queue: no key at all
        local = gevent.spawn(a.lock("gone").acquire)
        gevent.sleep(0.1)
        local.kill(timeout=5)
        assert waiter_keys(a, "gone") == [holder.key]
        holder.release()
        late = b.lock("gone")
        assert late.acquire(timeout=5)  # nobody stale in front
        late.release()


def test_server_requests_per_acquisition_stay_flat(etcd_cluster: EtcdCluster, ns: str) -> None:
    def per_acquisition(contenders: int, rounds: int) -> float:
        transports = [CountingTransport() for _ in range(contenders)]
        clients = [
            geetcd.Client(etcd_cluster.endpoints, namespace=ns, transport=t) for t in transports
        ]
        try:
            for c in clients:  # sessions and connections first
                warm = c.lock(f"warm-{contenders}")
                assert warm.acquire(timeout=10)
                warm.release()
            before = sum(t.sent for t in transports)

            def loop(c: geetcd.Client) -> None:
                lock = c.lock(f"flat-{contenders}")
                for _ in range(rounds):
                    assert lock.acquire(timeout=30)
                    gevent.sleep(0.002)
                    lock.release()

            gevent.joinall([gevent.spawn(loop, c) for c in clients], raise_error=True)
            return (sum(t.sent for t in transports) - before) / (contenders * rounds)
        finally:
            for c in clients:
                c.close()

    few, many = per_acquisition(3, 8), per_acquisition(24, 2)
    print(f"requests per acquisition: 3 contenders {few:.2f}, 24 contenders {many:.2f}")
    # create, watch the predecessor, 2 reads, delete: no herd, whatever the waiters
    assert few <= 5.1 and many <= 5.1
    assert abs(many - few) < 0.5


def test_hand_off_between_greenlets_is_one_request(etcd_cluster: EtcdCluster, ns: str) -> None:
    transport = CountingTransport()
    with geetcd.Client(etcd_cluster.endpoints, namespace=ns, transport=transport) as client:

        def rounds(greenlets: int, each: int) -> None:
            def loop() -> None:
                for _ in range(each):
                    lock = client.lock("local")
                    assert lock.acquire(timeout=10)
                    gevent.sleep(0)
                    lock.release()

            gevent.joinall([gevent.spawn(loop) for _ in range(greenlets)], raise_error=True)

        rounds(2, 3)  # the first local hand-off grants the client's partner session
        assert wait_until(lambda: client._shared_sessions().current(60, 1) is not None, 5)
        before = transport.sent
        rounds(10, 10)
        # 100 acquisitions: 99 hand-offs of one txn, the first create and the last delete
        assert transport.sent - before <= 101
        assert waiter_keys(client, "local") == []


def test_waiter_killed_during_the_hand_off_leaves_no_key(
    etcd_cluster: EtcdCluster, client: geetcd.Client, ns: str
) -> None:
    warm = [client.lock("handed"), client.lock("handed")]
    assert warm[0].acquire(timeout=5)
    g = gevent.spawn(warm[1].acquire, 5)
    gevent.sleep(0.05)
    warm[0].release()  # grants the partner session in the background
    g.join(timeout=5)
    warm[1].release()
    assert wait_until(lambda: client._shared_sessions().current(60, 1) is not None, 5)
    holder = client.lock("handed")
    assert holder.acquire(timeout=5)
    waiter = gevent.spawn(client.lock("handed").acquire, 10)
    gevent.sleep(0.05)
    # The kill lands while the release's txn (delete ours, create the waiter's) is in
    # flight: the created key has nobody to take it and must go.
    waiter.kill(block=False)
    holder.release()
    waiter.join(timeout=5)
    assert isinstance(waiter.value, gevent.GreenletExit)
    assert wait_until(lambda: waiter_keys(client, "handed") == [], 5)
    with geetcd.Client(etcd_cluster.endpoints, namespace=ns) as other:
        late = other.lock("handed")
        assert late.acquire(timeout=5)
        late.release()


def test_locks_and_elections_of_a_client_share_its_session_per_ttl(client: geetcd.Client) -> None:
    a, b, other = client.lock("share-a"), client.lock("share-b"), client.lock("share-c", ttl=30)
    election = client.election("share-e")
    assert a.acquire(timeout=5) and b.acquire(timeout=5) and other.acquire(timeout=5)
    assert election.campaign("v", timeout=5)
    assert a.key is not None and b.key is not None and other.key is not None
    assert election.key is not None
    assert lease_of(a.key) == lease_of(b.key) == lease_of(election.key)
    assert lease_of(other.key) != lease_of(a.key)
    assert client.lease_time_to_live(lease_of(other.key)).granted_ttl == 30
    for held in (a, b, other):
        held.release()
    election.resign()


# ------------------------------------------------------------------ lost sessions
def test_lease_revoked_elsewhere_sets_lost_and_next_waiter_gets_the_lock(
    etcd_cluster: EtcdCluster, ns: str
) -> None:
    ttl = 6
    with (
        geetcd.Client(etcd_cluster.endpoints, namespace=ns) as a,
        geetcd.Client(etcd_cluster.endpoints, namespace=ns) as b,
        geetcd.Client(etcd_cluster.endpoints, namespace=ns) as admin,
    ):
        lock = a.lock("lost", ttl=ttl)
        assert lock.acquire(timeout=5)
        assert lock.key is not None
        key, token = lock.key, lock.revision
        nxt = b.lock("lost", ttl=ttl)
        waiter = gevent.spawn(nxt.acquire, 20)
        assert wait_until(lambda: len(waiter_keys(admin, "lost")) == 2, 5)
        revoked_at = time.monotonic()
        admin.revoke_lease(lease_of(key))
        waiter.join(timeout=5)
        assert waiter.value is True
        assert nxt.revision is not None and token is not None and nxt.revision > token
        assert lock.lost.wait(ttl / 3 + 2.5)
        assert time.monotonic() - revoked_at < ttl / 3 + 2.5
        assert lock.held and lock.lost.is_set()
        assert not a.txn([lock.is_owner()], [Op.put("fenced", "stale")]).succeeded
        # The old holder queues again with a fresh session and gets it after the new one.
        again = gevent.spawn(lock.acquire, 20)
        assert wait_until(lambda: len(waiter_keys(admin, "lost")) == 2, 5)
        nxt.release()
        again.join(timeout=10)
        assert again.value is True and not lock.lost.is_set()
        assert lock.key is not None and lock.key != key
        lock.release()


def test_closing_the_client_revokes_its_session_and_frees_the_lock(
    etcd_cluster: EtcdCluster, ns: str
) -> None:
    with geetcd.Client(etcd_cluster.endpoints, namespace=ns) as b:
        a = geetcd.Client(etcd_cluster.endpoints, namespace=ns)
        lock = a.lock("closing")
        assert lock.acquire(timeout=5)
        assert lock.key is not None
        waiter = b.lock("closing")
        g = gevent.spawn(waiter.acquire, 10)
        assert wait_until(lambda: len(waiter_keys(b, "closing")) == 2, 5)
        local = gevent.spawn(a.lock("closing").acquire, 10)  # queued in a's local FIFO
        gevent.sleep(0.05)
        a.close()
        local.join(timeout=3)
        assert isinstance(local.exception, geetcd.ClientClosed)
        g.join(timeout=10)
        assert g.value is True
        assert b.lease_time_to_live(lease_of(lock.key)).ttl == -1
        waiter.release()


# ------------------------------------------------------------------ member failures
@pytest.mark.fault
def test_session_lost_while_etcd_was_unreachable_is_revoked_once_it_is_back(
    healed_cluster: EtcdCluster, ns: str
) -> None:
    ttl = 6
    endpoints = healed_cluster.endpoints
    with (
        geetcd.Client(endpoints, namespace=ns, timeout=3.0) as a,
        geetcd.Client(endpoints, namespace=ns, timeout=3.0) as admin,
    ):
        lock = a.lock("unreachable", ttl=ttl)
        assert lock.acquire(timeout=5)
        assert lock.key is not None
        key = lock.key
        followers = healed_cluster.followers()
        for member in followers:
            member.kill()  # no quorum: no refresh can get through
        assert lock.lost.wait(ttl + 4)
        for member in followers:
            member.restart(wait=False)
        healed_cluster.wait_healthy()
        # The new raft leader extends every lease by its TTL: without the pool's revoke the
        # key would stay queued, unrefreshed, for another ~6 s.

        def gone() -> bool:
            try:
                return admin.get(key) is None
            except geetcd.EtcdError:
                return False

        assert wait_until(gone, ttl - 2), "the unreachable session's key is still there"
        assert admin.lease_time_to_live(lease_of(key)).ttl == -1
        lock.release()
        again = admin.lock("unreachable", ttl=ttl)
        assert again.acquire(timeout=5)
        again.release()


def _fault_workload(
    cluster: EtcdCluster, ns: str, fault_name: str
) -> tuple[Exclusion, int, int, dict[str, int]]:
    """6 greenlets on 3 clients take the lock in turn (so locks are held and awaited)
    while the leader gets ``fault_name``; each holder writes its fencing token with a
    txn guarded by is_owner() and by the previous token. Returns the exclusion record,
    acquisitions before / after the fault and the errors seen."""
    clients = [geetcd.Client(cluster.endpoints, namespace=ns, timeout=8.0) for _ in range(3)]
    seen = Exclusion()
    errors: dict[str, int] = {}
    counts = {"before": 0, "after": 0}
    phase = ["before"]
    stop = [False]
    stale_writes: list[int] = []

    def worker(index: int) -> None:
        c = clients[index % 3]
        while not stop[0]:
            lock = c.lock("fenced", ttl=15)
            try:
                if not lock.acquire(timeout=10):
                    continue
            except geetcd.EtcdError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                gevent.sleep(0.1)
                continue
            token = lock.revision
            assert token is not None
            seen.enter(index, token)
            try:
                fence = f"{token:020d}"
                try:
                    guarded = c.txn(
                        [lock.is_owner(), Compare.value("fence") < fence],
                        [Op.put("fence", fence)],
                    )
                    if not guarded.succeeded:
                        stale_writes.append(token)
                except geetcd.EtcdError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                gevent.sleep(0.02)
                counts[phase[0]] += 1
            finally:
                seen.leave(index)
                lock.release()

    try:
        clients[0].put("fence", "0")
        workers = [gevent.spawn(worker, i) for i in range(6)]
        assert wait_until(lambda: counts["before"] >= 20, 10)
        leader = cluster.leader()
        getattr(leader, fault_name)()
        phase[0] = "after"
        gevent.sleep(6.0)  # locks keep being held and awaited through the fault
        if fault_name == "pause":
            leader.resume()
        cluster.heal()
        base = counts["after"]
        assert wait_until(lambda: counts["after"] >= base + 10, 15), (counts, errors)
        stop[0] = True
        gevent.joinall(workers, raise_error=True, timeout=30)
        assert stale_writes == []
        # The lock is usable afterwards, and nobody stale is left queued in front.
        final = clients[1].lock("fenced", ttl=15)
        assert final.acquire(timeout=10)
        assert final.revision is not None and final.revision > seen.tokens[-1]
        final.release()
        assert wait_until(lambda: waiter_keys(clients[0], "fenced") == [], 10)
        return seen, counts["before"], counts["after"], errors
    finally:
        stop[0] = True
        for c in clients:
            c.close()


@pytest.mark.fault
@pytest.mark.parametrize("fault", ["kill", "pause"])
def test_leader_fault_while_locks_are_held_and_awaited(
    healed_cluster: EtcdCluster, ns: str, fault: str
) -> None:
    seen, before, after, errors = _fault_workload(healed_cluster, ns, fault)
    print(f"{fault}: {before} acquisitions before, {after} after; errors {errors}")
    assert seen.violations == []
    assert after >= 10


# ------------------------------------------------------------------ etcdctl interop
def test_etcdctl_lock_excludes_geetcd(etcd_cluster: EtcdCluster, ns: str) -> None:
    with geetcd.Client(etcd_cluster.endpoints) as c:
        name = f"{ns}ctl"
        ctl = Ctl(etcd_cluster.endpoints, "lock", name, "--ttl=10")
        try:
            key = ctl.wait_line(lambda line: line.startswith(f"{name}/"), 10)
            lock = c.lock(name)
            assert not lock.try_acquire()
            assert not lock.acquire(timeout=0.5)
            got = gevent.spawn(lock.acquire, 15)
            gevent.sleep(0.3)
            assert not got.ready()
            ctl.interrupt()  # etcdctl unlocks and exits
            got.join(timeout=10)
            assert got.value is True
            assert ctl.wait(5) == 0
            ctl_kv = c.get(lock.key or b"")
            assert ctl_kv is not None and lock.key != key.encode()
            lock.release()
        finally:
            ctl.close()


def test_geetcd_lock_excludes_etcdctl(etcd_cluster: EtcdCluster, ns: str) -> None:
    with geetcd.Client(etcd_cluster.endpoints) as c:
        name = f"{ns}py"
        lock = c.lock(name)
        assert lock.acquire(timeout=5)
        ctl = Ctl(
            etcd_cluster.endpoints, "lock", name, "--", "sh", "-c", 'echo "got $ETCD_LOCK_REV"'
        )
        try:
            gevent.sleep(1.0)
            assert ctl.proc.poll() is None and ctl.lines == []  # blocked behind us
            assert lock.revision is not None
            token = lock.revision
            lock.release()
            line = ctl.wait_line(lambda line: line.startswith("got "), 10)
            assert int(line.split()[1]) > token  # its fencing token is above ours
            assert ctl.wait(5) == 0
            assert waiter_keys(c, name) == []
        finally:
            ctl.close()
