"""The pure watch protocol: request bodies, event parsing and the stream decoder (bytes in)."""

from __future__ import annotations

import base64
import json

import pytest

from geetcd.errors import (
    InvalidArgument,
    InvalidAuthToken,
    InvalidType,
    MalformedResponse,
    NoLeader,
    PermissionDenied,
    UnavailableError,
    WatchCanceled,
    WatchCompacted,
)
from geetcd.models import EventType, WatchResponse
from geetcd.protocol.codec import Keyspace
from geetcd.protocol.watch import (
    WatchBatch,
    WatchDecoder,
    WatchFilter,
    cancel_error,
    create_body,
    group_by_revision,
    normalize_filters,
    parse_event,
    parse_watch_response,
)

HEADER = {
    "cluster_id": "7403171635832160314",
    "member_id": "11975791918105126159",
    "raft_term": "2",
}


def b(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def line(result: dict[str, object], revision: int | None = None) -> bytes:
    """One stream line as the gateway writes it (compact JSON, newline)."""
    header = dict(HEADER) if revision is None else {**HEADER, "revision": str(revision)}
    obj = {"result": {"header": header, **result}}
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


CREATED = line({"created": True}, 16)
PUT_EVENT = line(
    {
        "events": [
            {
                "kv": {
                    "key": b("w1"),
                    "create_revision": "17",
                    "mod_revision": "17",
                    "version": "1",
                    "value": b("one"),
                }
            }
        ]
    },
    17,
)
DELETE_EVENT = line(
    {
        "events": [
            {
                "type": "DELETE",
                "kv": {"key": b("w1"), "mod_revision": "19"},
                "prev_kv": {
                    "key": b("w1"),
                    "create_revision": "17",
                    "mod_revision": "18",
                    "version": "2",
                    "value": b("two"),
                },
            }
        ]
    },
    19,
)
PROGRESS = line({}, 25)
COMPACTED = line({"canceled": True, "compact_revision": "6"})  # header without revision
NO_LEADER = (
    b'{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader",'
    b'"http_status":"Service Unavailable"}}'
)


# ---------------------------------------------------------------------------- request bodies
def test_create_body_minimal_sends_only_the_key() -> None:
    assert create_body(b"foo") == {"create_request": {"key": "Zm9v"}}


def test_create_body_all_options() -> None:
    body = create_body(
        b"/dir/",
        b"/dir0",
        start_revision=7,
        prev_kv=True,
        filters=("NODELETE", "NOPUT"),
        progress_notify=True,
    )
    assert body == {
        "create_request": {
            "key": "L2Rpci8=",
            "range_end": "L2RpcjA=",
            "start_revision": 7,
            "prev_kv": True,
            "filters": ["NODELETE", "NOPUT"],
            "progress_notify": True,
        }
    }
    json.dumps(body)  # serialisable as is


@pytest.mark.parametrize(
    ("given", "wire"),
    [
        ((), ()),
        (None, ()),
        ("noput", ("NOPUT",)),
        (["NoDelete"], ("NODELETE",)),
        ([WatchFilter.NOPUT, "nodelete", "noput"], ("NODELETE", "NOPUT")),
        (WatchFilter.NODELETE, ("NODELETE",)),
    ],
)
def test_filters_are_normalized_to_wire_names(given: object, wire: tuple[str, ...]) -> None:
    assert normalize_filters(given) == wire  # type: ignore[arg-type]


def test_unknown_filters_are_refused_before_sending() -> None:
    with pytest.raises(InvalidArgument, match="unknown watch filter"):
        normalize_filters(["noget"])
    with pytest.raises(InvalidType):
        normalize_filters([1])  # type: ignore[list-item]
    with pytest.raises(InvalidType):
        normalize_filters(3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- parsing
def test_put_event_without_type_is_put() -> None:
    obj = json.loads(PUT_EVENT)["result"]
    response = parse_watch_response(obj)
    assert response.watch_id == 0  # omitted on the wire
    assert response.header.revision == 17
    (event,) = response.events
    assert event.type is EventType.PUT
    assert event.kv.key == b"w1" and event.kv.value == b"one"
    assert event.kv.create_revision == 17 and event.kv.version == 1
    assert event.prev_kv is None
    assert event.revision == 17


def test_delete_event_has_only_key_and_mod_revision() -> None:
    (event,) = parse_watch_response(json.loads(DELETE_EVENT)["result"]).events
    assert event.type is EventType.DELETE
    assert event.kv.key == b"w1"
    assert event.kv.mod_revision == 19
    assert event.kv.value == b"" and event.kv.version == 0 and event.kv.create_revision == 0
    assert event.prev_kv is not None and event.prev_kv.value == b"two"


def test_event_keys_are_stripped_of_the_namespace() -> None:
    obj = {"kv": {"key": b("/ns/a"), "mod_revision": "3"}, "prev_kv": {"key": b("/ns/a")}}
    event = parse_event(obj, Keyspace(b"/ns/"))
    assert event.kv.key == b"a"
    assert event.prev_kv is not None and event.prev_kv.key == b"a"


def test_unknown_event_type_is_malformed() -> None:
    with pytest.raises(MalformedResponse):
        parse_event({"type": "EXPIRE", "kv": {"key": b("a")}})
    with pytest.raises(MalformedResponse):
        parse_event({"type": "PUT"})


def test_progress_notification_is_header_only() -> None:
    response = parse_watch_response(json.loads(PROGRESS)["result"])
    assert response.is_progress_notify
    assert response.header.revision == 25
    stream_wide = parse_watch_response({"header": {"revision": "9"}, "watch_id": "-1"})
    assert stream_wide.watch_id == -1 and stream_wide.is_progress_notify


def test_compaction_cancel_header_has_no_revision() -> None:
    response = parse_watch_response(json.loads(COMPACTED)["result"])
    assert response.canceled and response.compact_revision == 6
    assert response.header.revision == 0
    error = cancel_error(response, "http://m1")
    assert isinstance(error, WatchCompacted)
    assert error.compact_revision == 6 and error.member == "http://m1"


@pytest.mark.parametrize(
    ("reason", "cls"),
    [
        (
            "rpc error: code = PermissionDenied desc = etcdserver: permission denied",
            PermissionDenied,
        ),
        ("etcdserver: invalid auth token", InvalidAuthToken),
        ("something else", WatchCanceled),
        ("", WatchCanceled),
    ],
)
def test_cancel_reasons_map_to_clear_errors(reason: str, cls: type[Exception]) -> None:
    response = WatchResponse(
        header=parse_watch_response({}).header, created=True, canceled=True, cancel_reason=reason
    )
    error = cancel_error(response)
    assert type(error) is cls
    if isinstance(error, WatchCanceled):
        assert error.reason == reason


def test_group_by_revision_keeps_a_txn_together() -> None:
    def ev(key: str, rev: int) -> dict[str, object]:
        return {"kv": {"key": b(key), "mod_revision": str(rev)}}

    events = parse_watch_response(
        {"events": [ev("a", 5), ev("b", 5), ev("c", 6), ev("a", 8), ev("b", 8), ev("c", 8)]}
    ).events
    batches = group_by_revision(events)
    assert [(batch.revision, [e.kv.key for e in batch.events]) for batch in batches] == [
        (5, [b"a", b"b"]),
        (6, [b"c"]),
        (8, [b"a", b"b", b"c"]),
    ]
    assert group_by_revision(()) == []
    single = group_by_revision(events[:2])
    assert single == [WatchBatch(5, events[:2])]
    revision, batch_events = single[0]  # unpacks as (revision, events)
    assert revision == 5 and len(batch_events) == 2


# ---------------------------------------------------------------------------- the decoder
def test_decoder_splits_lines_across_chunks() -> None:
    decoder = WatchDecoder()
    data = CREATED + PUT_EVENT + DELETE_EVENT
    items: list[object] = []
    for i in range(0, len(data), 7):  # 7-byte chunks cut lines anywhere
        items.extend(decoder.feed(data[i : i + 7]))
    items.extend(decoder.end())
    assert len(items) == 3
    created, put, delete = items
    assert isinstance(created, WatchResponse) and created.created
    assert isinstance(put, WatchResponse) and put.events[0].type is EventType.PUT
    assert isinstance(delete, WatchResponse) and delete.events[0].type is EventType.DELETE
    assert decoder.buffered == 0


def test_decoder_many_lines_in_one_chunk() -> None:
    decoder = WatchDecoder()
    items = decoder.feed(CREATED + PROGRESS + PROGRESS + PUT_EVENT[:20])
    assert [type(i) for i in items] == [WatchResponse] * 3
    assert decoder.buffered == 20
    (rest,) = decoder.feed(PUT_EVENT[20:])
    assert isinstance(rest, WatchResponse) and rest.events


def test_stream_error_without_trailing_newline_at_eof() -> None:
    decoder = WatchDecoder(member="http://m1")
    items = decoder.feed(CREATED + NO_LEADER[:30])
    assert len(items) == 1
    items = decoder.feed(NO_LEADER[30:-1])
    assert items == []
    # the error object is emitted as soon as it is complete, even before EOF...
    (error,) = decoder.feed(NO_LEADER[-1:])
    assert isinstance(error, NoLeader)
    assert error.http_status == 503 and error.code == 14 and error.member == "http://m1"
    assert error.transient
    assert decoder.end() == []


def test_shutdown_error_in_one_chunk_then_eof() -> None:
    decoder = WatchDecoder()
    shutdown = (
        b'{"error":{"grpc_code":14,"http_code":503,"message":"error reading from server: EOF",'
        b'"http_status":"Service Unavailable"}}'
    )
    (put, error) = decoder.feed(PUT_EVENT + shutdown)
    assert isinstance(put, WatchResponse)
    assert isinstance(error, UnavailableError)
    assert "EOF" in error.message
    assert decoder.end() == []


def test_last_line_without_newline_is_decoded_at_eof() -> None:
    decoder = WatchDecoder()
    assert decoder.feed(PROGRESS[:-1]) == []
    (last,) = decoder.end()
    assert isinstance(last, WatchResponse) and last.header.revision == 25
    truncated = WatchDecoder()
    truncated.feed(PUT_EVENT[:40])
    (broken,) = truncated.end()
    assert isinstance(broken, MalformedResponse)


def test_garbage_lines_become_malformed_errors() -> None:
    decoder = WatchDecoder()
    items = decoder.feed(b"not json\n[1,2]\n{}\n")
    assert [type(i) for i in items] == [MalformedResponse] * 3
    assert all(i.transient for i in items if isinstance(i, MalformedResponse))
    (leftover,) = decoder.feed(b'{"result":{"events":[{"type":"BOGUS","kv":{}}]}}') or decoder.end()
    assert isinstance(leftover, MalformedResponse)


def test_end_without_leftover_is_empty() -> None:
    decoder = WatchDecoder()
    assert decoder.feed(b"") == []
    assert decoder.end() == []
    decoder.feed(b"\n\n  \n")
    assert decoder.end() == []


def test_large_line_in_many_chunks_is_joined_once() -> None:
    events = [
        {"kv": {"key": b(f"k{i}"), "mod_revision": "5", "value": b("x" * 1000)}} for i in range(300)
    ]
    data = json.dumps({"result": {"header": {"revision": "5"}, "events": events}}).encode() + b"\n"
    decoder = WatchDecoder()
    items: list[object] = []
    for i in range(0, len(data), 4096):
        items.extend(decoder.feed(data[i : i + 4096]))
    (response,) = items
    assert isinstance(response, WatchResponse)
    assert len(response.events) == 300
    assert response.events[-1].kv.value == b"x" * 1000
