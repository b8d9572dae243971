"""Maintenance and membership without etcd: the snapshot stream decoder (trailer check,
errors, partial lines), membership refusals vs lost answers, learners never picked,
alarm parsing and bad input."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os

import gevent
import pytest
from fake_transport import Call, FakeStream, FakeTransport

import geetcd
from geetcd import errors as E
from geetcd import maintenance
from geetcd.cluster import ClusterState, Member
from geetcd.membership import UnhealthyCluster
from geetcd.models import Header, MemberInfo, MemberList
from geetcd.protocol import maintenance as proto
from geetcd.transport import RawResponse

URLS = ["http://127.0.0.1:1", "http://127.0.0.1:2"]


def snapshot_lines(db: bytes, chunk: int = 1000, trailer: bytes | None = None) -> bytes:
    out = []
    sent = 0
    while sent < len(db):
        blob = db[sent : sent + chunk]
        sent += len(blob)
        result = {"remaining_bytes": str(len(db) - sent), "blob": base64.b64encode(blob).decode()}
        out.append(json.dumps({"result": result}))
    sha = hashlib.sha256(db).digest() if trailer is None else trailer
    out.append(json.dumps({"result": {"blob": base64.b64encode(sha).decode()}}))
    return ("\n".join(out) + "\n").encode()


def test_snapshot_decoder_checks_the_trailer_across_any_split() -> None:
    db = os.urandom(5000)
    wire = snapshot_lines(db)
    for step in (1, 7, 100, len(wire)):
        decoder = proto.SnapshotDecoder()
        got = b"".join(
            b"".join(decoder.feed(wire[i : i + step])) for i in range(0, len(wire), step)
        )
        assert got == db + hashlib.sha256(db).digest()
        assert decoder.verified() and decoder.size == 5000 and decoder.total == 5000


def test_snapshot_decoder_refuses_a_bad_trailer_and_a_short_stream() -> None:
    db = os.urandom(3000)
    decoder = proto.SnapshotDecoder()
    list(decoder.feed(snapshot_lines(db, trailer=b"\0" * 32)))
    assert not decoder.verified()
    decoder = proto.SnapshotDecoder()
    list(decoder.feed(snapshot_lines(db).split(b"\n", 1)[0] + b"\n"))
    assert not decoder.verified()


def test_snapshot_decoder_raises_stream_errors() -> None:
    decoder = proto.SnapshotDecoder("http://m")
    error = b'{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader"}}'
    with pytest.raises(E.NoLeader):
        list(decoder.feed(error))
    with pytest.raises(E.MalformedResponse):
        list(proto.SnapshotDecoder().feed(b"not json\n"))


def test_snapshot_retries_from_scratch_and_writes_part_then_renames(tmp_path: object) -> None:
    db = os.urandom(4000)

    def streams(call: Call, n: int) -> FakeStream:
        stream = FakeStream(call.url)
        wire = snapshot_lines(db)
        if n == 1:
            stream.feed(wire[:2000])
            stream.abort()  # the connection breaks half-way
        else:
            stream.feed(wire)
            stream.end()
        return stream

    transport = FakeTransport(lambda c, n: RawResponse(200, b'{"header":{}}'))
    transport.stream_handler = streams
    path = os.path.join(os.fspath(tmp_path), "s.db")  # type: ignore[call-overload]
    with geetcd.Client(URLS, transport=transport) as client, gevent.Timeout(10):  # type: ignore[arg-type]
        info = maintenance.snapshot(client.core, path, endpoint=URLS[1], via="gateway")
    assert [s.url for s in transport.streams] == [URLS[1], URLS[1]]  # pinned: no failover
    with open(path, "rb") as f:
        assert f.read() == db + hashlib.sha256(db).digest()
    assert info.size == 4000 and not os.path.exists(path + ".part")


def test_snapshot_with_a_bad_trailer_leaves_no_file(tmp_path: object) -> None:
    db = os.urandom(100)

    def streams(call: Call, n: int) -> FakeStream:
        stream = FakeStream(call.url)
        stream.feed(snapshot_lines(db, trailer=b"x" * 32))
        stream.end()
        return stream

    transport = FakeTransport(lambda c, n: RawResponse(200, b'{"header":{}}'))
    transport.stream_handler = streams
    path = os.path.join(os.fspath(tmp_path), "s.db")  # type: ignore[call-overload]
    client = geetcd.Client(URLS[:1], transport=transport)  # type: ignore[arg-type]
    with client, gevent.Timeout(10), pytest.raises(E.MalformedResponse, match="sha256"):
        maintenance.snapshot(client.core, path, timeout=2, via="gateway")
    assert os.listdir(os.path.dirname(path)) == []


def _answer(status: int, body: dict[str, object]) -> RawResponse:
    return RawResponse(status, json.dumps(body).encode())


def test_unhealthy_cluster_is_a_refusal_not_outcome_unknown() -> None:
    refusal = {
        "error": "etcdserver: unhealthy cluster",
        "code": 14,
        "message": "etcdserver: unhealthy cluster",
    }
    transport = FakeTransport(lambda c, n: _answer(503, refusal))
    with geetcd.Client(URLS, transport=transport) as client, gevent.Timeout(10):  # type: ignore[arg-type]
        with pytest.raises(UnhealthyCluster) as info:
            client.member_add(["http://127.0.0.1:9"])
        assert not isinstance(info.value, E.OutcomeUnknown)
        assert info.value.retry_safe
        assert len(transport.calls) == 1  # sent once
        assert not any(m.benched() for m in client.core.cluster.members)


def test_a_lost_membership_answer_is_outcome_unknown_never_retried() -> None:
    def lost(call: Call, n: int) -> RawResponse:
        raise E.ConnectionLost("broke after sending", member=call.url)

    transport = FakeTransport(lost)
    with geetcd.Client(URLS, transport=transport) as client, gevent.Timeout(10):  # type: ignore[arg-type]
        with pytest.raises(E.OutcomeUnknown):
            client.member_remove(5)
        assert [c.what for c in transport.calls].count("/cluster/member/remove") == 1


def test_membership_bad_input() -> None:
    transport = FakeTransport(lambda c, n: _answer(200, {}))
    with geetcd.Client(URLS, transport=transport) as client:  # type: ignore[arg-type]
        for bad in ([], ["ftp://x:1"], [1], 5):
            with pytest.raises(E.InvalidArgument):
                client.member_add(bad)  # type: ignore[arg-type]
        for bad_id in (0, -1, 2**64, True, "1"):
            with pytest.raises(E.InvalidArgument):
                client.member_remove(bad_id)  # type: ignore[arg-type]
        with pytest.raises(E.InvalidType):
            client.member_add(["http://127.0.0.1:9"], learner=1)  # type: ignore[arg-type]
    assert transport.calls == []


def test_member_add_parses_like_go_and_applies_the_list() -> None:
    answer = {
        "header": {"cluster_id": "7", "member_id": "1"},
        "member": {"ID": "99", "peerURLs": ["http://127.0.0.1:9"], "isLearner": True},
        "members": [
            {"ID": "1", "name": "a", "clientURLs": [URLS[0]], "peerURLs": ["http://127.0.0.1:11"]},
            {"ID": "2", "name": "b", "clientURLs": [URLS[1]], "peerURLs": ["http://127.0.0.1:12"]},
            {"ID": "99", "peerURLs": ["http://127.0.0.1:9"], "isLearner": True},
        ],
    }
    transport = FakeTransport(lambda c, n: _answer(200, answer))
    with geetcd.Client(URLS, transport=transport) as client:  # type: ignore[arg-type]
        added = client.member_add("http://127.0.0.1:9", learner=True)
        assert added.member == MemberInfo(id=99, peer_urls=("http://127.0.0.1:9",), is_learner=True)
        assert [m.id for m in added.members] == [1, 2, 99]
        assert [m.id for m in client.core.cluster.members] == [1, 2]
        assert json.loads(transport.calls[0].body or b"") == {
            "peerURLs": ["http://127.0.0.1:9"],
            "isLearner": True,
        }


def test_learners_are_known_but_never_picked() -> None:
    state = ClusterState(URLS, probe=lambda m: Header(), group=gevent.pool.Group())
    listing = MemberList(
        header=Header(cluster_id=1),
        members=(
            MemberInfo(id=1, name="a", client_urls=(URLS[0],)),
            MemberInfo(id=2, name="b", client_urls=(URLS[1],), is_learner=True),
        ),
    )
    state.apply_member_list(listing)
    learner = next(m for m in state.members if m.url == URLS[1])
    assert learner.is_learner and "learner" in repr(learner)
    for _ in range(50):
        assert state.pick(deadline=1e18).url == URLS[0]
    voter = next(m for m in state.members if m.url == URLS[0])
    state.mark_failed(voter, E.ConnectionFailed("down"))
    with pytest.raises(E.ClusterUnavailable):
        state.pick(deadline=0)  # only the learner is up: never picked
    promoted = MemberList(
        header=Header(cluster_id=1),
        members=(
            MemberInfo(id=1, name="a", client_urls=(URLS[0],)),
            MemberInfo(id=2, name="b", client_urls=(URLS[1],)),
        ),
    )
    state.apply_member_list(promoted)
    assert not learner.is_learner
    assert state.pick(deadline=1e18) is learner
    state.close()
    assert isinstance(learner, Member)


def test_alarms_parse_and_disarm_lists_then_deactivates_each() -> None:
    alarms = {"alarms": [{"memberID": "5", "alarm": "NOSPACE"}, {"memberID": "6", "alarm": 2}]}

    def handler(call: Call, n: int) -> RawResponse:
        return _answer(200, alarms)

    transport = FakeTransport(handler)
    with geetcd.Client(URLS, transport=transport) as client:  # type: ignore[arg-type]
        assert client.alarm_list() == (proto.Alarm(5, "NOSPACE"), proto.Alarm(6, "CORRUPT"))
        transport.calls.clear()
        assert client.alarm_disarm(member_id=6) == (proto.Alarm(6, "CORRUPT"),)
        bodies = [json.loads(c.body or b"") for c in transport.calls]
        assert bodies == [
            {"action": "GET"},
            {"action": "DEACTIVATE", "memberID": "6", "alarm": "CORRUPT"},
        ]


def test_quota_exceeded_names_the_alarm() -> None:
    error = E.error_from_status(429, 8, "etcdserver: mvcc: database space exceeded")
    assert isinstance(error, E.QuotaExceeded)
    assert error.alarm == "NOSPACE" and "NOSPACE" in str(error)
    assert "database space exceeded" in str(error)


def _field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, bytes):
        return proto._varint(number << 3 | 2) + proto._varint(len(value)) + value
    return proto._varint(number << 3) + proto._varint(value)


def test_hash_kv_grpc_frames_round_trip() -> None:
    assert proto.hash_kv_request(0) == b"\0\0\0\0\0"
    assert proto.hash_kv_request(300) == b"\0\0\0\0\x03\x08\xac\x02"
    header = _field(1, 2**64 - 5) + _field(2, 7) + _field(3, 52) + _field(4, 2)
    message = _field(1, header) + _field(2, 583598253) + _field(3, -1) + _field(4, 40)
    frame = b"\0" + len(message).to_bytes(4, "big") + message
    result = proto.parse_hash_kv(frame)
    assert result.header == Header(cluster_id=2**64 - 5, member_id=7, revision=52, raft_term=2)
    assert (result.hash, result.compact_revision, result.hash_revision) == (583598253, -1, 40)
    for bad in (b"", b"\1\0\0\0\0", frame[:-1], b"\0\0\0\0\2\x08\xff"):
        with pytest.raises(E.MalformedResponse):
            proto.parse_hash_kv(bad)


def test_snapshot_via_must_be_known() -> None:
    transport = FakeTransport(lambda c, n: RawResponse(200, b"{}"))
    client = geetcd.Client(URLS, transport=transport)  # type: ignore[arg-type]
    with client, pytest.raises(E.InvalidArgument):
        maintenance.snapshot(client.core, io.BytesIO(), via="carrier-pigeon")


def test_bad_retry_and_timeout_are_refused_before_sending() -> None:
    transport = FakeTransport(lambda c, n: _answer(200, {}))
    with geetcd.Client(URLS, transport=transport) as client:  # type: ignore[arg-type]
        with pytest.raises(E.InvalidType):
            client.alarm_list(retry=3)  # type: ignore[arg-type]
        with pytest.raises(E.InvalidType):
            client.hash_kv(URLS[0], retry="x")  # type: ignore[arg-type]
        with pytest.raises(E.InvalidArgument):
            client.status(timeout=-1)
        with pytest.raises(E.InvalidType):
            client.hash_kv(URLS[0], revision="1")  # type: ignore[arg-type]
        with pytest.raises(E.InvalidArgument):
            client.hash_kv(URLS[0], revision=-1)
        with pytest.raises(E.InvalidType):
            client.move_leader("abc")  # type: ignore[arg-type]
    assert [c for c in transport.calls if c.what != "health probe"] == []
