"""geetcd.v2 when members die, hang or lose quorum (3-member cluster with v2 enabled).

Every test requests ``healed_cluster``, which restarts / resumes members afterwards. Every
v2 client is closed inside its test: an open v2 wait would delay etcd's exit by ~8 s.
"""

from __future__ import annotations

import time

import gevent
import pytest

import geetcd
from geetcd import v2
from geetcd.testing import EtcdCluster

pytestmark = [pytest.mark.fault, pytest.mark.timeout(90)]


def _member_by_url(cluster: EtcdCluster, url: str | None) -> int:
    urls = cluster.endpoints
    assert url in urls, f"{url} not in {urls}"
    return urls.index(url)


def _next(watch: v2.V2Watch, timeout: float = 15.0) -> v2.Response:
    item = watch.get(timeout=timeout)
    assert isinstance(item, v2.Response), f"expected an event, got {item!r}"
    return item


def test_watcher_survives_sigkill_of_its_member(
    healed_cluster: EtcdCluster, etcd_prefix: str
) -> None:
    key = etcd_prefix + "k"
    with (
        v2.Client(healed_cluster.endpoints, timeout=15.0) as etcd,
        etcd.watcher(etcd_prefix, recursive=True) as watch,
    ):
        first = etcd.set(key, "1")
        assert _next(watch).node.modified_index == first.node.modified_index
        victim = _member_by_url(healed_cluster, watch.serving)

        healed_cluster.members[victim].kill()
        # Written while the watch is being moved: it must not be missed.
        second = etcd.set(key, "2")
        third = etcd.set(key, "3")
        got = [_next(watch), _next(watch)]

        assert [r.node.value for r in got] == ["2", "3"]
        assert [r.node.modified_index for r in got] == [
            second.node.modified_index,
            third.node.modified_index,
        ]
        assert watch.serving != healed_cluster.endpoints[victim]
        assert watch.get(timeout=0.5) is None  # no duplicate


def test_watcher_leaves_a_hung_member(healed_cluster: EtcdCluster, etcd_prefix: str) -> None:
    key = etcd_prefix + "h"
    with (
        v2.Client(healed_cluster.endpoints, timeout=15.0, liveness_interval=1.0) as etcd,
        etcd.watcher(key) as watch,
    ):
        etcd.set(key, "1")
        assert _next(watch).node.value == "1"
        victim = _member_by_url(healed_cluster, watch.serving)
        # Let the next wait get its headers first: from then on only the liveness probes
        # (every second here) can tell that the member stopped.
        gevent.sleep(0.5)
        assert watch.serving == healed_cluster.endpoints[victim]
        healed_cluster.members[victim].pause()
        others = [u for i, u in enumerate(healed_cluster.endpoints) if i != victim]
        with v2.Client(others, timeout=15.0) as writer:
            written = writer.set(key, "2")
        started = time.monotonic()
        event = _next(watch, timeout=20.0)
        assert event.node.modified_index == written.node.modified_index
        assert watch.serving in others
        assert time.monotonic() - started < 20.0
        member = next(m for m in etcd.client.cluster_state.members if m.url not in others)
        assert member.state is geetcd.MemberState.DOWN


def test_no_quorum_write_is_outcome_unknown(healed_cluster: EtcdCluster, etcd_prefix: str) -> None:
    survivor = healed_cluster.members[0]
    with v2.Client([survivor.client_url], timeout=12.0, attempt_timeout=10.0) as etcd:
        etcd.set(etcd_prefix + "before", "x")
        for member in healed_cluster.members[1:]:
            member.kill()
        with pytest.raises(geetcd.OutcomeUnknown) as info:
            etcd.create(etcd_prefix + "during", "x")
        cause = info.value.__cause__
        assert isinstance(cause, v2.RaftInternal), repr(cause)
        assert cause.error_code == 300 and cause.cause.startswith("etcdserver:")
        (seen,) = etcd.client.cluster_state.members
        assert seen.state is geetcd.MemberState.DOWN  # transient: the member was benched
