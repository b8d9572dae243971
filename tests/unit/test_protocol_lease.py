"""geetcd.protocol.lease: request builders and parsers, bytes in, models out (no network)."""

from __future__ import annotations

import json

import pytest

from geetcd.errors import (
    InvalidArgument,
    InvalidType,
    MalformedResponse,
    NoLeader,
    ServerError,
    UnavailableError,
)
from geetcd.models import Header, LeaseInfo
from geetcd.protocol import lease as proto
from geetcd.protocol.codec import Keyspace, b64, encode_json

H = {
    "cluster_id": "7403171635832160314",
    "member_id": "11975791918105126159",
    "revision": "7",
    "raft_term": "2",
}


def result_line(lease_id: int, ttl: int | None) -> bytes:
    result: dict[str, object] = {"header": H, "ID": str(lease_id)}
    if ttl is not None:
        result["TTL"] = str(ttl)
    return json.dumps({"result": result}).encode() + b"\n"


# ------------------------------------------------------------------ builders
def test_grant_body_uses_upper_case_ttl_and_id() -> None:
    # The gateway silently ignores a lower-case "ttl" and grants a 2 s lease instead.
    body = proto.grant_body(30)
    assert body == {"TTL": 30}
    assert "ttl" not in body and "id" not in body
    assert json.loads(encode_json(proto.grant_body(30, 1234))) == {"TTL": 30, "ID": 1234}


def test_lease_bodies() -> None:
    assert proto.lease_body(42) == {"ID": 42}
    assert proto.time_to_live_body(42) == {"ID": 42}
    assert proto.time_to_live_body(42, keys=True) == {"ID": 42, "keys": True}


def test_keepalive_body_one_object_per_line() -> None:
    big = 7282217346994157852  # above 2**53: must be sent exactly
    body = proto.keepalive_body([1, big])
    lines = body.decode().splitlines()
    assert [json.loads(line) for line in lines] == [{"ID": 1}, {"ID": big}]
    assert body.endswith(b"\n")
    assert proto.keepalive_body([]) == b""


@pytest.mark.parametrize("ttl", [1, 2, 3600, 9_000_000_000, 2**63 - 1])
def test_check_ttl_accepts(ttl: int) -> None:
    assert proto.check_ttl(ttl) == ttl


@pytest.mark.parametrize(
    ("ttl", "exc"),
    [
        (0, InvalidArgument),
        (-5, InvalidArgument),
        (2**63, InvalidArgument),
        (True, InvalidType),
        (2.5, InvalidType),
        ("10", InvalidType),
        (None, InvalidType),
    ],
)
def test_check_ttl_refuses(ttl: object, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        proto.check_ttl(ttl)


def test_check_ttl_errors_are_value_and_type_errors() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        proto.check_ttl(0)
    with pytest.raises(TypeError, match="int"):
        proto.check_ttl(1.0)


@pytest.mark.parametrize(
    ("value", "exc"),
    [
        (0, InvalidArgument),
        (-1, InvalidArgument),
        (2**63, InvalidArgument),
        (False, InvalidType),
        ("1", InvalidType),
    ],
)
def test_check_lease_id_refuses(value: object, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        proto.check_lease_id(value)
    assert proto.check_lease_id(2**63 - 1) == 2**63 - 1


# ------------------------------------------------------------------ unary parsers
def test_parse_grant() -> None:
    header, lease_id, ttl = proto.parse_grant(
        {"header": H, "ID": "7282217346993512239", "TTL": "30"}
    )
    assert (lease_id, ttl) == (7282217346993512239, 30)
    assert header == Header(7403171635832160314, 11975791918105126159, 7, 2)


@pytest.mark.parametrize(
    "obj", [{"header": H, "TTL": "30"}, {"header": H, "ID": "5"}, {"ID": "x", "TTL": "3"}]
)
def test_parse_grant_malformed(obj: dict[str, object]) -> None:
    with pytest.raises(MalformedResponse):
        proto.parse_grant(obj)


def test_parse_grant_error_string() -> None:
    with pytest.raises(ServerError, match="boom"):
        proto.parse_grant({"header": H, "ID": "5", "TTL": "3", "error": "boom"})


def test_parse_time_to_live() -> None:
    obj = {
        "header": H,
        "ID": "1234",
        "TTL": "19",
        "grantedTTL": "20",
        "keys": [b64(b"leased1"), b64(b"leased2")],
    }
    assert proto.parse_time_to_live(obj) == LeaseInfo(1234, 19, 20, (b"leased1", b"leased2"))


def test_parse_time_to_live_unknown_lease_is_minus_one() -> None:
    info = proto.parse_time_to_live({"header": H, "ID": "999", "TTL": "-1"})
    assert info == LeaseInfo(id=999, ttl=-1, granted_ttl=0, keys=())


def test_parse_time_to_live_strips_and_filters_namespace() -> None:
    obj = {
        "ID": "1",
        "TTL": "5",
        "grantedTTL": "5",
        "keys": [b64(b"/ns/a"), b64(b"/other/b"), b64(b"/ns/c/d")],
    }
    assert proto.parse_time_to_live(obj, Keyspace(b"/ns/")).keys == (b"a", b"c/d")
    assert proto.parse_time_to_live(obj, Keyspace()).keys == (b"/ns/a", b"/other/b", b"/ns/c/d")


@pytest.mark.parametrize("keys", ["abc", [1], ["not base64!"]])
def test_parse_time_to_live_malformed_keys(keys: object) -> None:
    with pytest.raises(MalformedResponse):
        proto.parse_time_to_live({"ID": "1", "TTL": "5", "keys": keys})


def test_parse_leases() -> None:
    obj = {"header": H, "leases": [{"ID": "7282217346993512241"}, {"ID": "1234"}]}
    assert proto.parse_leases(obj) == [7282217346993512241, 1234]
    assert proto.parse_leases({"header": H}) == []
    with pytest.raises(MalformedResponse):
        proto.parse_leases({"leases": ["1234"]})


# ------------------------------------------------------------------ keepalive answers
def test_parse_keepalive_one_line_per_lease() -> None:
    data = result_line(1234, 20) + result_line(7282217346993512239, 30)
    answer = proto.parse_keepalive(data)
    assert answer.ttls == {1234: 20, 7282217346993512239: 30}
    assert answer.error is None
    assert answer.header == Header(7403171635832160314, 11975791918105126159, 7, 2)


def test_parse_keepalive_missing_ttl_means_gone() -> None:
    answer = proto.parse_keepalive(result_line(999, None) + result_line(5, 0) + result_line(6, -3))
    assert answer.ttls == {999: 0, 5: 0, 6: 0}
    assert answer.error is None


def test_parse_keepalive_fewer_answers_than_ids() -> None:
    # The caller compares the answered IDs with those it sent; the parser reports no error.
    answer = proto.parse_keepalive(result_line(1, 10))
    assert set(answer.ttls) == {1}
    assert answer.error is None


def test_parse_keepalive_stream_error_without_trailing_newline() -> None:
    error = (
        b'{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader",'
        b'"http_status":"Service Unavailable"}}'
    )
    answer = proto.parse_keepalive(result_line(1, 10) + error, "http://127.0.0.1:1")
    assert answer.ttls == {1: 10}
    assert isinstance(answer.error, NoLeader)
    assert answer.error.member == "http://127.0.0.1:1"
    assert answer.error.http_status == 503


def test_parse_keepalive_concatenated_objects() -> None:
    data = result_line(1, 10).rstrip(b"\n") + result_line(2, 11).rstrip(b"\n")
    assert proto.parse_keepalive(data).ttls == {1: 10, 2: 11}


def test_parse_keepalive_shutdown_error_is_transient() -> None:
    data = (
        b'{"error":{"grpc_code":14,"http_code":503,"message":"error reading from server: EOF",'
        b'"http_status":"Service Unavailable"}}'
    )
    answer = proto.parse_keepalive(data)
    assert answer.ttls == {}
    assert isinstance(answer.error, UnavailableError)
    assert answer.error.transient


def test_parse_keepalive_garbage_keeps_what_parsed() -> None:
    answer = proto.parse_keepalive(result_line(1, 10) + b'{"result":{"ID":"2","TT')
    assert answer.ttls == {1: 10}
    assert isinstance(answer.error, MalformedResponse)


@pytest.mark.parametrize("data", [b"[1,2]\n", b'{"foo":1}\n', b'{"result":{"ID":"x","TTL":"1"}}'])
def test_parse_keepalive_unexpected_shapes(data: bytes) -> None:
    answer = proto.parse_keepalive(data)
    assert answer.ttls == {}
    assert isinstance(answer.error, MalformedResponse)


def test_parse_keepalive_empty_body() -> None:
    answer = proto.parse_keepalive(b"")
    assert answer.ttls == {} and answer.error is None and answer.header is None
    assert proto.parse_keepalive(b"\n\n").ttls == {}
