"""Membership changes on a private real 3-member cluster while a write load runs: add a
learner (its etcd process started here), promote it, update its peer URLs, remove a member.
No acknowledged write is lost and the client's cluster state follows every change."""

from __future__ import annotations

import time

import gevent
import pytest
from polling import wait_for

import geetcd
from geetcd.errors import EtcdError, FailedPrecondition, NotFound, OutcomeUnknown
from geetcd.membership import UnhealthyCluster
from geetcd.testing import EtcdCluster
from geetcd.testing.binary import find_etcd_binary
from geetcd.testing.process import _free_ports

pytestmark = [pytest.mark.timeout(150), pytest.mark.fault]


def retry_refusals(call: object, timeout: float = 25.0) -> object:
    """Send a membership change again while etcd refuses it for a passing reason (the strict
    reconfig check, a learner not yet in sync). Returns the answer and the refusals seen."""
    assert callable(call)
    deadline = time.monotonic() + timeout
    refusals: list[EtcdError] = []
    while True:
        try:
            return call(), refusals
        except (UnhealthyCluster, FailedPrecondition) as exc:
            refusals.append(exc)
            if time.monotonic() > deadline:
                raise
            gevent.sleep(0.25)


class Load:
    """Sequential puts of key i = i; remembers every acknowledged one."""

    def __init__(self, client: geetcd.Client) -> None:
        self.client = client
        self.acked: dict[str, str] = {}
        self.unknown = 0
        self.errors: list[EtcdError] = []
        self.greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        for i in range(100_000):
            key = f"load/{i}"
            try:
                self.client.put(key, str(i), timeout=10)
            except OutcomeUnknown:
                self.unknown += 1
                continue
            except EtcdError as exc:
                self.errors.append(exc)
                continue
            self.acked[key] = str(i)
            gevent.sleep(0.005)

    def stop(self) -> None:
        self.greenlet.kill()


def test_learner_add_promote_update_remove_under_load() -> None:
    with EtcdCluster(size=3) as cluster:
        client = geetcd.Client(cluster.endpoints, timeout=15)
        observer = geetcd.Client(cluster.endpoints, sync_interval=0.3)
        try:
            observer.sync_members()
            load = Load(client)
            wait_for(lambda: len(load.acked) > 20, timeout=10, what="the load to start")

            # -- add a learner; start its etcd process
            client_port, peer_port, spare_peer_port = _free_ports("127.0.0.1", 3)
            new = cluster._new_member((client_port, peer_port))
            (added, refusals) = retry_refusals(
                lambda: client.member_add([new.peer_url], learner=True)
            )  # type: ignore[misc]
            assert all(isinstance(r, UnhealthyCluster) for r in refusals)
            assert added.member.is_learner and added.member.peer_urls == (new.peer_url,)
            assert added.member.id in {m.id for m in added.members}
            assert len(added.members) == 4
            new.member_id = added.member.id
            initial = ",".join(
                f"{m.name or new.name}={url}" for m in added.members for url in m.peer_urls
            )
            command = cluster._command(find_etcd_binary(), new, initial, "existing")
            spare_url = f"http://127.0.0.1:{spare_peer_port}"
            command = [
                f"--listen-peer-urls={new.peer_url},{spare_url}"
                if arg.startswith("--listen-peer-urls=")
                else arg
                for arg in command
            ]
            new._command = command
            cluster._spawned.append(new)
            new._start()
            cluster._wait_members([new], 20)
            cluster.members.append(new)

            # The client learns it is a learner at the next sync, and never picks it.
            client.sync_members()
            learner = next(m for m in client.core.cluster.members if m.url == new.client_url)
            assert learner.is_learner and learner.id == added.member.id
            status = client.status(new.client_url)
            assert status.is_learner and status.header.member_id == added.member.id
            before = len(load.acked)
            wait_for(lambda: len(load.acked) > before + 30, timeout=15, what="load with a learner")
            assert learner.ok_count == 1  # only the pinned status call above

            # -- promote it (refused while it is not yet in sync with the leader)
            (promoted, _) = retry_refusals(lambda: client.member_promote(added.member.id))  # type: ignore[misc]
            assert not next(m for m in promoted.members if m.id == added.member.id).is_learner
            assert not learner.is_learner  # applied from the answer at once
            wait_for(
                lambda: any(
                    m.id == added.member.id and not m.is_learner
                    for m in observer.core.cluster.members
                ),
                timeout=10,
                what="the observer to see the promoted member",
            )

            # -- update its peer URLs (it listens on both)
            (updated, _) = retry_refusals(
                lambda: client.member_update(added.member.id, [spare_url])
            )  # type: ignore[misc]
            assert next(m for m in updated.members if m.id == added.member.id).peer_urls == (
                spare_url,
            )
            listed = client.member_list()
            assert next(m for m in listed.members if m.id == added.member.id).peer_urls == (
                spare_url,
            )

            # -- remove an original member (a follower: the leader's removal adds an election)
            leader_id = client.status().leader
            victim = next(m for m in cluster.members[:3] if m.member_id != leader_id)
            assert victim.member_id is not None
            (remaining, _) = retry_refusals(lambda: client.member_remove(victim.member_id))  # type: ignore[misc]
            assert victim.member_id not in {m.id for m in remaining.members}
            assert victim.client_url not in client.endpoints  # applied at once
            wait_for(
                lambda: victim.client_url not in observer.endpoints,
                timeout=10,
                what="the observer (removed by someone else) to drop the member",
            )
            victim.stop()
            cluster.members.remove(victim)

            before = len(load.acked)
            wait_for(lambda: len(load.acked) > before + 30, timeout=20, what="load after remove")
            with pytest.raises(NotFound):
                client.member_remove(victim.member_id)
            load.stop()
            # Only the removed member may have refused writes as it stopped ("raft: stopped").
            assert [e for e in load.errors if e.member != victim.client_url] == []
            got = {kv.key.decode(): kv.value.decode() for kv in client.get_prefix("load/")}
            lost = {k: v for k, v in load.acked.items() if got.get(k) != v}
            assert lost == {}, f"{len(lost)} acknowledged writes lost"
            assert set(client.endpoints) == set(cluster.endpoints)
        except BaseException:
            for m in cluster.members:
                print("=====", m, m.log_tail(15))
            print("=====", new, new.log_tail(15))
            raise
        finally:
            client.close()
            observer.close()
