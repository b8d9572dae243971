"""The one retry rule, against the unit-test transport: a write is moved to another member
only when the request surely never reached etcd and ``Retry.retry_writes_when_safe`` allows
it; otherwise the caller sees the error itself (surely not applied) or OutcomeUnknown."""

from __future__ import annotations

import gevent
import pytest
from fake_transport import Call, FakeTransport

import geetcd
from geetcd import errors as E
from geetcd.transport import RawResponse

URLS = ["http://127.0.0.1:1", "http://127.0.0.1:2"]
PUT_OK = b'{"header":{"revision":"7"}}'


def first_member_fails(error: type[E.EtcdError]) -> FakeTransport:
    def handler(call: Call, n: int) -> RawResponse:
        if call.what == "health probe" or call.url == URLS[1]:
            return RawResponse(200, PUT_OK)
        raise error("member down", member=call.url)

    return FakeTransport(handler)


def client_on(transport: FakeTransport, retry: geetcd.Retry) -> geetcd.Client:
    # ROUND_ROBIN from the first member: the first attempt goes to URLS[0].
    return geetcd.Client(
        URLS,
        timeout=2.0,
        retry=retry,
        policy=geetcd.PickPolicy.ROUND_ROBIN,
        transport=transport,  # type: ignore[arg-type]
    )


def puts(transport: FakeTransport) -> list[str]:
    return [c.url for c in transport.calls if c.path.endswith("/kv/put")]


@pytest.mark.parametrize("allowed", [True, False])
def test_refused_connection_write_retry_follows_the_flag(allowed: bool) -> None:
    checked = 0
    for _ in range(20):  # fresh clients until one starts on the failing member
        transport = first_member_fails(E.ConnectionFailed)  # refused: surely not sent
        client = client_on(transport, geetcd.Retry(retry_writes_when_safe=allowed))
        try:
            with gevent.Timeout(10):
                try:
                    result: object = client.put("k", "v")
                except E.ConnectionFailed as exc:
                    result = exc
            sent = puts(transport)
            if sent[0] != URLS[0]:
                continue
            checked += 1
            if allowed:  # moved to the other member, where it succeeded
                assert sent == [URLS[0], URLS[1]]
                assert isinstance(result, geetcd.PutResponse) and result.header.revision == 7
            else:  # raised as is: surely not applied, never resent
                assert sent == [URLS[0]]
                assert isinstance(result, E.ConnectionFailed)
        finally:
            client.close()
    assert checked > 0


def test_lost_answer_of_a_write_is_outcome_unknown_not_retried() -> None:
    transport = first_member_fails(E.ConnectionLost)  # sent, then the answer was lost
    client = client_on(transport, geetcd.Retry())
    try:
        with gevent.Timeout(10):
            outcomes = []
            for _ in range(2):
                try:
                    client.put("k", "v")
                    outcomes.append("ok")
                except E.OutcomeUnknown as exc:
                    assert isinstance(exc.__cause__, E.ConnectionLost)
                    outcomes.append("unknown")
        assert "unknown" in outcomes
        sent = puts(transport)
        assert len(sent) == 2  # one attempt per call: a possibly-applied write is never resent
    finally:
        client.close()


@pytest.mark.parametrize("message", ["raft: stopped", "etcdserver: server stopped"])
def test_a_stopping_member_is_a_member_failure(message: str) -> None:
    """Seen from a member being removed: another member may answer, so it is transient."""
    error = E.error_from_status(500, 2, message, member=URLS[0])
    assert isinstance(error, E.UnavailableError) and error.transient
