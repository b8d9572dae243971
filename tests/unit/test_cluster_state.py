"""ClusterState policy with fake probes (no network): pick, bench, probe back, sync, waits."""

from __future__ import annotations

import time
from collections import Counter

import gevent
import gevent.pool
import pytest

from geetcd import ClusterMismatch, ClusterUnavailable, ConnectionFailed, PickPolicy
from geetcd.cluster import ClusterState, Member, MemberState, StateChange, normalize_endpoints
from geetcd.config import ConstantBackoff
from geetcd.errors import InvalidArgument
from geetcd.models import Header, MemberInfo, MemberList

URLS = ["http://127.0.0.1:1001", "http://127.0.0.1:1002", "http://127.0.0.1:1003"]


class FakeProbe:
    """Probe results per URL: True = answers, False = raises ConnectionFailed."""

    def __init__(self, cluster_id: int = 7) -> None:
        self.up: dict[str, bool] = {}
        self.calls: Counter[str] = Counter()
        self.cluster_id = cluster_id

    def __call__(self, member: Member) -> Header:
        self.calls[member.url] += 1
        if self.up.get(member.url, True):
            return Header(cluster_id=self.cluster_id)
        raise ConnectionFailed("refused", member=member.url)


def make_state(probe: FakeProbe, **kw: object) -> tuple[ClusterState, gevent.pool.Group]:
    group = gevent.pool.Group()
    state = ClusterState(
        URLS,
        probe=probe,
        group=group,
        bench_backoff=ConstantBackoff(0.02),
        **kw,  # type: ignore[arg-type]
    )
    return state, group


def deadline(seconds: float = 2.0) -> float:
    return time.monotonic() + seconds


def test_normalize_endpoints_accepts_comma_string_and_dedups() -> None:
    assert normalize_endpoints(" http://a:1, http://a:1 ,https://[::1]:2") == [
        "http://a:1",
        "https://[::1]:2",
    ]
    with pytest.raises(InvalidArgument):
        normalize_endpoints("")
    with pytest.raises(InvalidArgument):
        normalize_endpoints("ftp://x:1")
    with pytest.raises(InvalidArgument):
        normalize_endpoints("http://x:1/v3")


def test_sticky_random_keeps_one_member_until_it_fails() -> None:
    state, group = make_state(FakeProbe())
    first = state.pick(deadline())
    assert all(state.pick(deadline()) is first for _ in range(50))
    state.mark_failed(first, ConnectionFailed("x"))
    assert first.state is MemberState.DOWN
    second = state.pick(deadline())
    assert second is not first
    assert all(state.pick(deadline()) is second for _ in range(20))
    group.kill()


def test_round_robin_spreads_and_least_loaded_prefers_idle() -> None:
    state, group = make_state(FakeProbe(), policy=PickPolicy.ROUND_ROBIN)
    picks = Counter(state.pick(deadline()).url for _ in range(30))
    assert picks == Counter({u: 10 for u in URLS})
    state2, group2 = make_state(FakeProbe(), policy=PickPolicy.LEAST_LOADED)
    state2.members[0].inflight = 5
    state2.members[1].inflight = 1
    state2.members[2].inflight = 3
    assert state2.pick(deadline()) is state2.members[1]
    group.kill()
    group2.kill()


def test_failed_member_is_probed_back_in_the_background() -> None:
    probe = FakeProbe()
    changes: list[StateChange] = []
    state, group = make_state(probe, on_state_change=changes.append)
    member = state.members[0]
    probe.up[member.url] = False
    state.mark_failed(member, ConnectionFailed("refused"))
    state.mark_failed(member, ConnectionFailed("refused again"))  # second report: no new change
    gevent.sleep(0.15)
    assert member.state is MemberState.DOWN
    assert probe.calls[member.url] >= 2  # probed repeatedly while down
    probe.up[member.url] = True
    with gevent.Timeout(2):
        while member.state is not MemberState.HEALTHY:
            gevent.sleep(0.01)
    assert [(c.old, c.new) for c in changes] == [
        (MemberState.HEALTHY, MemberState.DOWN),
        (MemberState.DOWN, MemberState.HEALTHY),
    ]
    assert member.failures == 0
    assert "refused" in str(member.history[0][1])
    group.kill()


def test_pick_waits_for_recovery_when_all_members_are_down() -> None:
    probe = FakeProbe()
    state, group = make_state(probe)
    for m in state.members:
        probe.up[m.url] = False
        state.mark_failed(m, ConnectionFailed("down"))

    def recover() -> None:
        gevent.sleep(0.2)
        probe.up[URLS[1]] = True

    gevent.spawn(recover)
    started = time.monotonic()
    member = state.pick(deadline(3.0))
    waited = time.monotonic() - started
    assert member.url == URLS[1]
    assert 0.15 < waited < 2.5
    group.kill()


def test_pick_raises_cluster_unavailable_with_each_members_error_at_deadline() -> None:
    probe = FakeProbe()
    state, group = make_state(probe)
    for m in state.members:
        probe.up[m.url] = False
        state.mark_failed(m, ConnectionFailed(f"refused by {m.url}", member=m.url))
    started = time.monotonic()
    with pytest.raises(ClusterUnavailable) as info:
        state.pick(deadline(0.3))
    assert 0.25 < time.monotonic() - started < 1.5
    assert set(info.value.errors) == set(URLS)
    assert all(isinstance(e, ConnectionFailed) for e in info.value.errors.values())
    assert "ConnectionFailed" in str(info.value) and URLS[0] in str(info.value)
    group.kill()


def test_avoid_skips_members_already_tried_unless_nothing_else() -> None:
    state, group = make_state(FakeProbe(), policy=PickPolicy.ROUND_ROBIN)
    a, b, c = state.members
    for _ in range(10):
        assert state.pick(deadline(), avoid=[a, b]) is c
    assert state.pick(deadline(), avoid=[a, b, c]) in (a, b, c)
    group.kill()


def test_member_list_sync_adds_and_removes_and_refuses_other_cluster() -> None:
    removed: list[Member] = []
    state, group = make_state(FakeProbe(cluster_id=7), on_member_removed=removed.append)
    keep = state.members[0]
    listing = MemberList(
        header=Header(cluster_id=7),
        members=(
            MemberInfo(id=1, name="a", client_urls=(URLS[0],)),
            MemberInfo(id=4, name="d", client_urls=("http://127.0.0.1:1004",)),
            MemberInfo(id=5, name="unstarted"),
        ),
    )
    state.apply_member_list(listing)
    assert [m.url for m in state.members] == [URLS[0], "http://127.0.0.1:1004"]
    assert state.members[0] is keep and keep.name == "a" and keep.id == 1
    assert {m.url for m in removed} == {URLS[1], URLS[2]}
    new = state.members[1]
    assert new.state is MemberState.SUSPECT
    with gevent.Timeout(2):
        while new.state is not MemberState.HEALTHY:
            gevent.sleep(0.01)
    foreign = MemberList(
        header=Header(cluster_id=99),
        members=(MemberInfo(id=9, client_urls=("http://127.0.0.1:1009",)),),
    )
    with pytest.raises(ClusterMismatch):
        state.apply_member_list(foreign)
    assert [m.url for m in state.members] == [URLS[0], "http://127.0.0.1:1004"]
    group.kill()


def test_probe_from_another_cluster_keeps_member_down() -> None:
    probe = FakeProbe(cluster_id=7)
    state, group = make_state(probe)
    state.cluster_id = 8
    member = state.members[2]
    state.mark_failed(member, ConnectionFailed("x"))
    gevent.sleep(0.2)
    assert member.state is MemberState.DOWN
    assert isinstance(member.last_error, ClusterMismatch)
    group.kill()


def test_repr_is_a_readable_table() -> None:
    state, group = make_state(FakeProbe())
    state.mark_success(state.members[0], 0.0015)
    text = repr(state)
    assert "policy=sticky-random" in text
    assert "http://127.0.0.1:1001 healthy latency=1.5ms" in text
    group.kill()


def test_close_wakes_waiters() -> None:
    probe = FakeProbe()
    state, group = make_state(probe)
    for m in state.members:
        probe.up[m.url] = False
        state.mark_failed(m, ConnectionFailed("down"))
    waiter = gevent.spawn(state.pick, deadline(10))
    gevent.sleep(0.05)
    state.close()
    with pytest.raises(ClusterUnavailable):
        waiter.get(timeout=2)
    group.kill()
