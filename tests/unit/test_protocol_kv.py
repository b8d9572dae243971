"""geetcd.protocol.kv and .cluster: request bodies out, gateway JSON in (ETCD-PROTOCOL.md §3).

The response literals below are the ones etcd 3.5.1 sent in the protocol notes, so every
omitted-zero-field and field-name quirk is exercised with real shapes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from geetcd import SortOrder, SortTarget
from geetcd.errors import InvalidArgument, InvalidType, MalformedResponse
from geetcd.models import (
    DeleteResponse,
    Header,
    KeyValue,
    PutResponse,
    RangeResponse,
    TxnResponse,
)
from geetcd.protocol.cluster import PROBE_BODY, parse_member_list, parse_status
from geetcd.protocol.codec import Keyspace, b64, encode_json
from geetcd.protocol.kv import (
    RangeOptions,
    check_bool,
    check_int,
    compact_body,
    delete_body,
    parse_delete,
    parse_header,
    parse_kv,
    parse_put,
    parse_range,
    parse_txn,
    put_body,
    range_body,
    sort_order,
    sort_target,
)

H = {
    "cluster_id": "7403171635832160314",
    "member_id": "11975791918105126159",
    "revision": "12",
    "raft_term": "2",
}


def wire(obj: dict[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON text, as the bytes would arrive."""
    loaded: dict[str, Any] = json.loads(json.dumps(obj))
    return loaded


# ---------------------------------------------------------------------------- header
def test_header_parses_uint64_ids_from_strings() -> None:
    header = parse_header(H)
    assert header == Header(
        cluster_id=7403171635832160314,
        member_id=11975791918105126159,
        revision=12,
        raft_term=2,
    )
    assert header.member_id > 2**63


def test_header_missing_fields_are_zero() -> None:
    # member list: no revision; txn sub-responses: only revision; nested txn: {}
    assert parse_header({"cluster_id": "1", "member_id": "2", "raft_term": "3"}).revision == 0
    assert parse_header({"revision": "12"}) == Header(revision=12)
    assert parse_header({}) == Header()
    assert parse_header(None) == Header()


# ---------------------------------------------------------------------------- key-values
def test_parse_kv_full() -> None:
    kv = parse_kv(
        {
            "key": "Zm9v",
            "create_revision": "2",
            "mod_revision": "3",
            "version": "2",
            "value": "YmFyMg==",
            "lease": "1234",
        }
    )
    assert kv == KeyValue(
        key=b"foo", value=b"bar2", create_revision=2, mod_revision=3, version=2, lease=1234
    )


def test_parse_kv_omitted_fields() -> None:
    # keys_only / empty value: no "value"; no lease: no "lease"; DELETE event: key + mod only
    kv = parse_kv({"key": "Zm9v", "mod_revision": "19"})
    assert kv == KeyValue(key=b"foo", value=b"", mod_revision=19)
    assert kv.version == 0 and kv.lease == 0 and kv.create_revision == 0


def test_parse_kv_strips_the_namespace() -> None:
    ks = Keyspace(b"/ns/")
    kv = parse_kv({"key": b64(b"/ns/a/b"), "value": b64(b"v")}, ks)
    assert kv.key == b"a/b"
    assert kv.value == b"v"


def test_parse_kv_without_key_is_malformed() -> None:
    with pytest.raises(MalformedResponse) as info:
        parse_kv({"value": "YmFy"})
    assert isinstance(info.value.__cause__, KeyError)


def test_parse_kv_with_bad_base64_is_malformed() -> None:
    with pytest.raises(MalformedResponse):
        parse_kv({"key": "Zm9v", "value": "YmFy-_"})
    with pytest.raises(MalformedResponse):
        parse_kv({"key": "YQ"})


# ---------------------------------------------------------------------------- range
def test_parse_range_of_a_missing_key_has_no_kvs_and_no_count() -> None:
    response = parse_range(wire({"header": H}))
    assert response == RangeResponse(header=parse_header(H), kvs=(), count=0, more=False)


def test_parse_range_count_is_the_total_not_len_kvs() -> None:
    obj = {
        "header": H,
        "kvs": [
            {"key": b64(b"/dir/a"), "create_revision": "4", "mod_revision": "4", "version": "1"},
            {"key": b64(b"/dir/b"), "create_revision": "5", "mod_revision": "5", "version": "1"},
        ],
        "more": True,
        "count": "5",
    }
    response = parse_range(wire(obj))
    assert [kv.key for kv in response.kvs] == [b"/dir/a", b"/dir/b"]
    assert all(kv.value == b"" for kv in response.kvs)  # keys_only: no value field
    assert response.count == 5
    assert response.more is True


def test_parse_range_count_only() -> None:
    response = parse_range(wire({"header": H, "count": "5"}))
    assert response.kvs == ()
    assert response.count == 5
    assert response.more is False  # omitted


def test_parse_range_namespace() -> None:
    ks = Keyspace(b"/t/")
    response = parse_range(wire({"header": H, "kvs": [{"key": b64(b"/t/k")}], "count": "1"}), ks)
    assert response.kvs[0].key == b"k"


# ---------------------------------------------------------------------------- put / delete
def test_parse_put_without_and_with_prev_kv() -> None:
    assert parse_put(wire({"header": H})) == PutResponse(header=parse_header(H), prev_kv=None)
    obj = {
        "header": H,
        "prev_kv": {
            "key": "Zm9v",
            "create_revision": "2",
            "mod_revision": "2",
            "version": "1",
            "value": "YmFy",
        },
    }
    response = parse_put(wire(obj))
    assert response.prev_kv == KeyValue(b"foo", b"bar", 2, 2, 1, 0)


def test_parse_delete() -> None:
    missing = parse_delete(wire({"header": H}))
    assert missing == DeleteResponse(header=parse_header(H), deleted=0, prev_kvs=())
    obj = {
        "header": H,
        "deleted": "1",
        "prev_kvs": [
            {
                "key": "L2Rpci9h",
                "create_revision": "4",
                "mod_revision": "4",
                "version": "1",
                "value": "dmFsLWE=",
            }
        ],
    }
    response = parse_delete(wire(obj), Keyspace(b"/dir/"))
    assert response.deleted == 1
    assert response.prev_kvs == (KeyValue(b"a", b"val-a", 4, 4, 1, 0),)
    assert parse_delete(wire({"header": H, "deleted": "4"})).deleted == 4


# ---------------------------------------------------------------------------- txn
def test_parse_txn_success_with_typed_responses() -> None:
    obj = {
        "header": H,
        "succeeded": True,
        "responses": [
            {
                "response_put": {
                    "header": {"revision": "12"},
                    "prev_kv": {"key": "dHg=", "value": "djE=", "version": "1"},
                }
            },
            {
                "response_range": {
                    "header": {"revision": "12"},
                    "kvs": [{"key": "dHg=", "value": "djI=", "version": "2"}],
                    "count": "1",
                }
            },
            {"response_delete_range": {"header": {"revision": "12"}, "deleted": "1"}},
            {"response_txn": {"header": {}, "succeeded": True, "responses": []}},
        ],
    }
    response = parse_txn(wire(obj))
    assert isinstance(response, TxnResponse)
    assert response.succeeded is True
    put, rng, delete, nested = response.responses
    assert isinstance(put, PutResponse) and put.prev_kv is not None
    assert put.prev_kv.value == b"v1"
    assert put.header == Header(revision=12)
    assert isinstance(rng, RangeResponse) and rng.kvs[0].value == b"v2" and rng.count == 1
    assert isinstance(delete, DeleteResponse) and delete.deleted == 1
    assert isinstance(nested, TxnResponse) and nested.succeeded and nested.header == Header()


def test_parse_txn_failed_compare_has_no_succeeded_field() -> None:
    obj = {
        "header": H,
        "responses": [{"response_range": {"header": {"revision": "12"}, "kvs": [{"key": "dHg="}]}}],
    }
    response = parse_txn(wire(obj))
    assert response.succeeded is False
    assert len(response.responses) == 1
    assert isinstance(response.responses[0], RangeResponse)


def test_parse_empty_txn() -> None:
    response = parse_txn(wire({"header": H, "succeeded": True}))
    assert response.succeeded is True
    assert response.responses == ()


def test_parse_txn_namespace_reaches_nested_responses() -> None:
    ks = Keyspace(b"/ns/")
    inner = {"response_range": {"kvs": [{"key": b64(b"/ns/deep")}], "count": "1"}}
    obj = {
        "header": H,
        "succeeded": True,
        "responses": [{"response_txn": {"header": {}, "responses": [inner]}}],
    }
    nested = parse_txn(wire(obj), ks).responses[0]
    assert isinstance(nested, TxnResponse)
    assert nested.succeeded is False
    inner_range = nested.responses[0]
    assert isinstance(inner_range, RangeResponse)
    assert inner_range.kvs[0].key == b"deep"


def test_parse_txn_unknown_op_is_malformed() -> None:
    with pytest.raises(MalformedResponse):
        parse_txn({"header": H, "succeeded": True, "responses": [{"response_lease": {}}]})


# ---------------------------------------------------------------------------- request bodies
def test_range_body_sends_only_non_zero_fields() -> None:
    assert range_body(b"foo", None) == {"key": "Zm9v"}
    assert range_body(b"foo", None, RangeOptions()) == {"key": "Zm9v"}
    body = range_body(
        b"/dir/",
        b"/dir0",
        RangeOptions(
            limit=2,
            revision=7,
            sort_order=SortOrder.DESCEND,
            sort_target=SortTarget.MOD,
            serializable=True,
            keys_only=True,
            count_only=True,
            min_mod_revision=1,
            max_mod_revision=9,
            min_create_revision=2,
            max_create_revision=8,
        ),
    )
    assert json.loads(encode_json(body)) == {
        "key": "L2Rpci8=",
        "range_end": "L2RpcjA=",
        "limit": 2,
        "revision": 7,
        "sort_order": 2,
        "sort_target": 3,
        "serializable": True,
        "keys_only": True,
        "count_only": True,
        "min_mod_revision": 1,
        "max_mod_revision": 9,
        "min_create_revision": 2,
        "max_create_revision": 8,
    }
    text = encode_json(body).decode()
    assert '"keys_only":true' in text and '"serializable":true' in text


def test_range_body_for_every_key() -> None:
    assert range_body(b"\0", b"\0") == {"key": "AA==", "range_end": "AA=="}


def test_put_body() -> None:
    assert put_body(b"foo", b"bar") == {"key": "Zm9v", "value": "YmFy"}
    assert put_body(b"foo", b"") == {"key": "Zm9v", "value": ""}
    body = put_body(b"foo", b"bar", lease=7282217346993512239, prev_kv=True, ignore_lease=True)
    assert body == {
        "key": "Zm9v",
        "value": "YmFy",
        "lease": 7282217346993512239,
        "prev_kv": True,
        "ignore_lease": True,
    }
    assert encode_json(body).count(b"true") == 2
    # ignore_value: no value at all, the flag as a JSON boolean
    assert put_body(b"foo", b"", ignore_value=True) == {"key": "Zm9v", "ignore_value": True}


def test_delete_and_compact_bodies() -> None:
    assert delete_body(b"foo", None) == {"key": "Zm9v"}
    assert delete_body(b"/dir/", b"/dir0", prev_kv=True) == {
        "key": "L2Rpci8=",
        "range_end": "L2RpcjA=",
        "prev_kv": True,
    }
    assert compact_body(5) == {"revision": 5}
    assert compact_body(6, physical=True) == {"revision": 6, "physical": True}


def test_probe_body_is_a_cheap_local_read() -> None:
    assert PROBE_BODY["serializable"] is True
    assert PROBE_BODY["count_only"] is True
    assert json.loads(encode_json(PROBE_BODY))["key"] == PROBE_BODY["key"]


# ---------------------------------------------------------------------------- option checks
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("none", 0),
        ("ascend", 1),
        ("descend", 2),
        ("DESCEND", 2),
        ("Ascend", 1),
        (SortOrder.ASCEND, 1),
        (SortOrder.DESCEND, 2),
    ],
)
def test_sort_order_names_and_enums(given: object, expected: int) -> None:
    assert sort_order(given) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("key", 0),
        ("version", 1),
        ("create", 2),
        ("mod", 3),
        ("value", 4),
        ("VALUE", 4),
        (SortTarget.CREATE, 2),
        (SortTarget.VALUE, 4),
    ],
)
def test_sort_target_names_and_enums(given: object, expected: int) -> None:
    assert sort_target(given) == expected


def test_enum_values_match_the_proto() -> None:
    assert [(m.name, int(m)) for m in SortOrder] == [("NONE", 0), ("ASCEND", 1), ("DESCEND", 2)]
    assert [(m.name, int(m)) for m in SortTarget] == [
        ("KEY", 0),
        ("VERSION", 1),
        ("CREATE", 2),
        ("MOD", 3),
        ("VALUE", 4),
    ]


def test_sort_options_refuse_bad_values() -> None:
    with pytest.raises(InvalidArgument) as info:
        sort_order("sideways")
    assert not isinstance(info.value, InvalidType)
    assert "descend" in str(info.value)
    with pytest.raises(InvalidArgument):
        sort_target("size")
    with pytest.raises(InvalidType):
        sort_order(2.0)
    with pytest.raises(InvalidType):
        sort_target(None)
    # another enum's member is not silently reinterpreted
    with pytest.raises(InvalidType):
        sort_order(SortTarget.VALUE)


def test_check_bool_refuses_strings_and_ints() -> None:
    assert check_bool(True, "keys_only") is True
    assert check_bool(False, "keys_only") is False
    for bad in ("true", 1, None):
        with pytest.raises(InvalidType):
            check_bool(bad, "keys_only")


def test_check_int() -> None:
    assert check_int(5, "limit") == 5
    assert check_int(0, "limit") == 0
    with pytest.raises(InvalidType):
        check_int(True, "limit")
    with pytest.raises(InvalidType):
        check_int("5", "limit")
    with pytest.raises(InvalidType):
        check_int(1.0, "limit")
    with pytest.raises(InvalidArgument) as info:
        check_int(-1, "limit")
    assert not isinstance(info.value, InvalidType)
    with pytest.raises(InvalidArgument):
        check_int(0, "revision", minimum=1)


# ---------------------------------------------------------------------------- status / members
def test_parse_status_field_names() -> None:
    obj = {
        "header": H,
        "version": "3.5.1",
        "dbSize": "24576",
        "leader": "11975791918105126159",
        "raftIndex": "52",
        "raftTerm": "2",
        "raftAppliedIndex": "51",
        "dbSizeInUse": "20480",
    }
    status = parse_status(wire(obj))
    assert status.version == "3.5.1"
    assert status.db_size == 24576
    assert status.db_size_in_use == 20480
    assert status.leader == 11975791918105126159
    assert status.raft_index == 52
    assert status.raft_term == 2
    assert status.raft_applied_index == 51
    assert status.errors == ()
    assert status.is_learner is False
    assert status.header.member_id == 11975791918105126159


def test_parse_status_without_leader_and_with_alarm_errors() -> None:
    obj = {
        "header": H,
        "version": "3.5.1",
        "dbSize": "2000000",
        "errors": ["memberID:15779033621855570263 alarm:NOSPACE "],
        "isLearner": True,
    }
    status = parse_status(wire(obj))
    assert status.leader is None  # no "leader": the member knows no leader
    assert status.errors == ("memberID:15779033621855570263 alarm:NOSPACE ",)
    assert status.is_learner is True
    assert status.raft_index == 0


def test_parse_member_list_field_names() -> None:
    obj = {
        "header": {"cluster_id": "7403171635832160314", "member_id": "1", "raft_term": "2"},
        "members": [
            {
                "ID": "11975791918105126159",
                "name": "s1",
                "peerURLs": ["http://127.0.0.1:23102"],
                "clientURLs": ["http://127.0.0.1:23101"],
            },
            {"ID": "5727221336375137188", "peerURLs": ["http://127.0.0.1:23122"]},  # not started
            {
                "ID": "42",
                "name": "l1",
                "peerURLs": ["http://127.0.0.1:23132"],
                "clientURLs": ["http://127.0.0.1:23131"],
                "isLearner": True,
            },
        ],
    }
    members = parse_member_list(wire(obj))
    assert members.header.revision == 0  # member list headers have no revision
    assert members.header.cluster_id == 7403171635832160314
    first, unstarted, learner = members.members
    assert first.id == 11975791918105126159
    assert first.name == "s1"
    assert first.peer_urls == ("http://127.0.0.1:23102",)
    assert first.client_urls == ("http://127.0.0.1:23101",)
    assert first.is_learner is False
    assert unstarted.name == "" and unstarted.client_urls == ()
    assert learner.is_learner is True


def test_parse_member_list_without_members() -> None:
    assert parse_member_list({"header": H}).members == ()


# ---------------------------------------------------------------------------- §3.0 quirks seen
# in watch and lease messages (their owners test the rest; these pin the shared wire rules)
def test_watch_message_omitted_fields() -> None:
    from geetcd.models import EventType
    from geetcd.protocol.watch import WatchDecoder, parse_watch_response

    created = parse_watch_response(wire({"header": H, "created": True}))
    assert created.watch_id == 0  # the first watch of a stream: no watch_id at all
    assert created.created and not created.canceled and created.events == ()
    put_then_delete = {
        "header": H,
        "events": [
            {"kv": {"key": "dzE=", "create_revision": "17", "mod_revision": "17", "version": "1"}},
            {"type": "DELETE", "kv": {"key": "dzE=", "mod_revision": "19"}},
        ],
    }
    response = parse_watch_response(wire(put_then_delete))
    put, delete = response.events
    assert put.type is EventType.PUT  # PUT events carry no "type"
    assert put.prev_kv is None
    assert delete.type is EventType.DELETE and delete.kv == KeyValue(b"w1", mod_revision=19)
    assert parse_watch_response(wire({"header": H, "watch_id": "-1"})).watch_id == -1
    # a compaction cancel's header has no revision
    cancel = parse_watch_response(
        wire(
            {
                "header": {"cluster_id": "1", "member_id": "2", "raft_term": "2"},
                "canceled": True,
                "compact_revision": "6",
            }
        )
    )
    assert cancel.header.revision == 0 and cancel.compact_revision == 6
    # the stream error shape arrives last, without a trailing newline
    decoder = WatchDecoder()
    items = decoder.feed(b'{"result":{"header":{"revision":"5"},"created":true}}\n')
    items += decoder.feed(
        b'{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader",'
        b'"http_status":"Service Unavailable"}}'
    )
    items += decoder.end()
    assert [type(item).__name__ for item in items] == ["WatchResponse", "NoLeader"]


def test_lease_field_names_are_upper_case() -> None:
    from geetcd.protocol.lease import grant_body, parse_grant, parse_time_to_live

    body = grant_body(30)
    assert body == {"TTL": 30} and "ttl" not in body  # "ttl" would be silently ignored
    assert grant_body(20, 1234) == {"TTL": 20, "ID": 1234}
    header, lease_id, ttl = parse_grant(
        wire({"header": H, "ID": "7282217346993512239", "TTL": "30"})
    )
    assert lease_id == 7282217346993512239 and ttl == 30 and header.revision == 12
    info = parse_time_to_live(
        wire({"header": H, "ID": "1234", "TTL": "19", "grantedTTL": "20", "keys": ["bGVhc2VkMQ=="]})
    )
    assert (info.id, info.ttl, info.granted_ttl, info.keys) == (1234, 19, 20, (b"leased1",))
    gone = parse_time_to_live(wire({"header": H, "ID": "999", "TTL": "-1"}))
    assert gone.ttl == -1 and gone.granted_ttl == 0 and gone.keys == ()
