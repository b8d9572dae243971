"""Client validation that needs no etcd: bad arguments are refused before anything is
sent, an unreachable endpoint fails by its deadline, and every call takes the documented
``timeout=``/``retry=`` (moved here from tests/integration: none of them talks to etcd)."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable

import pytest

import geetcd
from geetcd import ClusterUnavailable, Compare, ConnectionFailed, InvalidArgument, InvalidType
from geetcd.cluster import MemberState
from geetcd.testing import free_port

# Every public Client method that sends a request to etcd.
CALLS = [
    "range", "get", "iter_prefix", "put", "delete", "txn", "put_if_absent", "replace",
    "compact", "status", "member_list", "lease", "session", "leases", "revoke_lease",
    "lease_time_to_live", "watch",
]  # fmt: skip


@pytest.mark.parametrize("name", CALLS)
def test_every_call_takes_timeout_and_retry(name: str) -> None:
    parameters = inspect.signature(getattr(geetcd.Client, name)).parameters
    assert "timeout" in parameters, name
    if name != "watch":  # a watch retries for ever by design: it has no retry budget
        assert "retry" in parameters, name
        assert parameters["retry"].kind is inspect.Parameter.KEYWORD_ONLY


def test_empty_key_raises_before_anything_is_sent() -> None:
    # a client pointed at a closed port: a request would fail with a connection error
    client = geetcd.Client(f"http://127.0.0.1:{free_port()}", timeout=1.0)
    try:
        for call in (
            lambda: client.put("", "v"),
            lambda: client.get(""),
            lambda: client.range(""),
            lambda: client.delete(""),
            lambda: client.range("a", "b", prefix=True),
            lambda: client.txn([Compare.version("") == 0]),
            lambda: client.put_if_absent("", "v"),
        ):
            with pytest.raises(InvalidArgument) as info:
                call()
            assert not isinstance(info.value, (ConnectionFailed, ClusterUnavailable))
            assert info.value.member is None and info.value.http_status is None
        (member,) = client.cluster_state.members
        assert member.state is MemberState.HEALTHY and member.last_error is None
        assert member.ok_count == 0 and member.failures == 0
    finally:
        client.close()


def test_unreachable_endpoint_raises_within_its_timeout() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    calls: list[Callable[[geetcd.Client], object]] = [
        lambda c: c.get("k"),
        lambda c: c.put("k", "v"),
    ]
    for call in calls:
        client = geetcd.Client(url, timeout=1.5)
        try:
            started = time.monotonic()
            with pytest.raises((ClusterUnavailable, ConnectionFailed)) as info:
                call(client)
            assert time.monotonic() - started < 3.0
            error = info.value
            if isinstance(error, ClusterUnavailable):
                assert isinstance(error.__cause__, ConnectionFailed)
                assert isinstance(error.errors[url], ConnectionFailed)
                assert url in str(error)
            else:
                assert isinstance(error.__cause__, Exception)  # the socket error
            # a second call finds the member benched and also gives up by its deadline
            started = time.monotonic()
            with pytest.raises(ClusterUnavailable) as again:
                client.get("k", timeout=1.0)
            assert time.monotonic() - started < 2.5
            assert isinstance(again.value.errors[url], ConnectionFailed)
        finally:
            client.close()


def test_constructor_validation() -> None:
    with pytest.raises(InvalidArgument):
        geetcd.Client([])
    with pytest.raises(InvalidArgument):
        geetcd.Client("ftp://127.0.0.1:2379")
    with pytest.raises(InvalidArgument):
        geetcd.Client("http://127.0.0.1:2379", timeout=0)
    with pytest.raises(InvalidArgument):
        geetcd.Client("http://127.0.0.1:2379", maxsize=0)
    with pytest.raises(InvalidType):
        geetcd.Client("http://127.0.0.1:2379", namespace=5)  # type: ignore[arg-type]
