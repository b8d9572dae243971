"""Hostile input, refused with a clear geetcd error and a client left intact (no sockets:
the unit-test transport answers). Each case here once escaped as a plain TypeError,
ValueError, AttributeError, froze the event loop, or outlived its deadline."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import gevent
import pytest
from fake_transport import Call, FakeTransport

import geetcd
from geetcd import Compare, Op, Retry
from geetcd import errors as E
from geetcd.transport import RawResponse

URLS = ["http://127.0.0.1:1", "http://127.0.0.1:2"]
OK_RANGE = b'{"header":{"revision":"5"},"kvs":[{"key":"L25zL2s=","value":"dg=="}],"count":"1"}'


def answering(body: bytes) -> FakeTransport:
    def handler(call: Call, n: int) -> RawResponse:
        return RawResponse(200, body if call.what != "health probe" else b'{"header":{}}')

    return FakeTransport(handler)


@pytest.fixture
def client() -> Iterator[geetcd.Client]:
    transport = answering(OK_RANGE)
    c = geetcd.Client(URLS, timeout=2.0, namespace="/ns/", transport=transport)  # type: ignore[arg-type]
    with gevent.Timeout(20):
        yield c
    c.close()


BAD_DURATIONS = [math.nan, math.inf, -math.inf, -1, 0]
WRONG_TYPES: list[Any] = ["1", [1], True, None.__class__]


@pytest.mark.parametrize("value", BAD_DURATIONS)
def test_bad_durations_are_refused_everywhere(client: geetcd.Client, value: float) -> None:
    with pytest.raises(E.InvalidArgument):
        client.get("k", timeout=value)
    with pytest.raises(E.InvalidArgument):
        geetcd.Client(URLS, timeout=value)
    with pytest.raises(E.InvalidArgument):
        geetcd.Client(URLS, attempt_timeout=value)
    with pytest.raises(E.InvalidArgument):
        geetcd.Client(URLS, connect_timeout=value)
    assert client.get("k") is not None  # the client still works


@pytest.mark.parametrize("value", WRONG_TYPES)
def test_wrong_typed_durations_are_invalid_type(client: geetcd.Client, value: Any) -> None:
    with pytest.raises(E.InvalidType) as info:
        client.get("k", timeout=value)
    assert isinstance(info.value, TypeError)  # as the README promises
    with pytest.raises(E.InvalidType):
        geetcd.Client(URLS, timeout=value)


def test_nan_timeout_never_freezes_the_event_loop(client: geetcd.Client) -> None:
    """NaN once passed ``<= 0`` and made Event.wait(nan) block the hub for good."""
    ticks = []
    ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.01)) for _ in range(5)])
    with pytest.raises(E.InvalidArgument):
        client.get("k", timeout=math.nan)
    ticker.join(2)
    assert len(ticks) == 5


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.txn(compare=None), E.InvalidType),
        (lambda c: c.txn(compare=Compare.value("k") == "v"), E.InvalidType),
        (lambda c: c.txn([], success=Op.put("k", "v")), E.InvalidType),
        (lambda c: c.txn([], success=[object()]), E.InvalidType),
        (lambda c: c.get("k", revision="3"), E.InvalidType),
        (lambda c: c.get("", revision=3), E.InvalidArgument),
        (lambda c: c.put("k", "v", retry="3"), E.InvalidType),
        (lambda c: c.put("k", object()), E.InvalidType),
    ],
)
def test_wrong_arguments_raise_geetcd_errors(client: geetcd.Client, call: Any, error: type) -> None:
    with pytest.raises(error) as info:
        call(client)
    assert isinstance(info.value, E.EtcdError)


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: Retry(attempts=-1), E.InvalidArgument),
        (lambda: Retry(attempts="3"), E.InvalidType),
        (lambda: Retry(attempts=True), E.InvalidType),
        (lambda: geetcd.TLS(key_file="k"), E.InvalidArgument),
        (lambda: geetcd.Client(URLS, tls="yes"), E.InvalidType),
        (lambda: geetcd.Client(URLS, retry=3), E.InvalidType),
        (lambda: geetcd.Client(5), E.InvalidType),
    ],
)
def test_bad_configs_raise_geetcd_errors(build: Any, error: type) -> None:
    with pytest.raises(error) as info:
        build()
    assert isinstance(info.value, E.EtcdError)


@pytest.mark.parametrize(
    "body",
    [
        b'{"header": "ok"}',
        b'{"kvs": "x"}',
        b'{"kvs": [null]}',
        b'{"kvs": [{"key": 5}]}',
        b"[1, 2]",
        b"<html>not etcd</html>",
    ],
)
def test_wrong_shaped_answers_are_malformed_response(body: bytes) -> None:
    transport = answering(body)
    c = geetcd.Client(URLS, timeout=5.0, transport=transport)  # type: ignore[arg-type]
    try:
        started = time.monotonic()
        with gevent.Timeout(10), pytest.raises(E.MalformedResponse) as info:
            c.get("k")
        # A server that is not etcd is not retried for the whole deadline.
        assert time.monotonic() - started < 2.5
        assert info.value.member in URLS
        assert len([x for x in transport.calls if x.what != "health probe"]) <= len(URLS)
    finally:
        c.close()


def test_watch_next_event_timeout_is_checked(etcd_free_watch: None = None) -> None:
    from geetcd.watch import Watch

    watch = Watch.__new__(Watch)  # the check runs before any state is read
    with pytest.raises(E.InvalidType):
        watch.next_event(timeout="1")  # type: ignore[arg-type]
    with pytest.raises(E.InvalidArgument):
        watch.next_event(timeout=math.nan)


def test_every_call_after_close_is_client_closed(client: geetcd.Client) -> None:
    client.close()
    for call in (
        lambda: client.get("k"),
        lambda: client.put("k", "v"),
        lambda: client.watch("k"),
        lambda: client.lease(5),
    ):
        with pytest.raises(E.ClientClosed):
            call()
