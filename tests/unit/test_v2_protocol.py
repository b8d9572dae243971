"""geetcd.v2 without a server: request building, answer and error parsing, retry rules.

Answers are bytes and headers as etcd 3.5.1 sent them (ETCD-PROTOCOL.md §4 and runs of
``curl`` against a v2-enabled member). The last section drives the v2 client's use of the
shared request loop through a fake transport (no etcd involved).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from fake_transport import FakeTransport

import geetcd
from geetcd import v2
from geetcd.transport import RawResponse
from geetcd.v2 import protocol as proto

HEADERS = {
    "X-Etcd-Cluster-Id": "66bd59610d06003a",
    "X-Etcd-Index": "5",
    "X-Raft-Index": "105",
    "X-Raft-Term": "2",
}


# ---------------------------------------------------------------------------- keys
@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("a", "/v2/keys/a"),
        ("/a", "/v2/keys/a"),
        ("/a/", "/v2/keys/a"),
        ("//a/./b/..", "/v2/keys/a"),
        ("/a/b/c", "/v2/keys/a/b/c"),
        ("/", "/v2/keys/"),
        ("/../..", "/v2/keys/"),
        ("/sp ace?#%", "/v2/keys/sp%20ace%3F%23%25"),
        ("/ключ", "/v2/keys/%D0%BA%D0%BB%D1%8E%D1%87"),
    ],
)
def test_key_path_cleans_and_quotes(key: str, path: str) -> None:
    assert proto.key_path(key) == path


def test_key_path_refuses_empty_and_non_str() -> None:
    with pytest.raises(geetcd.InvalidArgument, match="must not be empty"):
        proto.key_path("")
    with pytest.raises(geetcd.InvalidType):
        proto.key_path(b"/a")
    with pytest.raises(TypeError):
        proto.key_path(None)


# ---------------------------------------------------------------------------- requests
@pytest.mark.parametrize(
    ("request_", "method", "path", "body", "idempotent"),
    [
        (proto.get_request("/a"), "GET", "/v2/keys/a", None, True),
        (
            proto.get_request("/d", sort=True, recursive=True, quorum=True),
            "GET",
            "/v2/keys/d?recursive=true&sorted=true&quorum=true",
            None,
            True,
        ),
        (proto.set_request("/a", "x y&z", 5), "PUT", "/v2/keys/a", b"value=x+y%26z&ttl=5", True),
        (proto.set_request("/a", b""), "PUT", "/v2/keys/a", b"value=", True),
        (proto.set_dir_request("/d"), "PUT", "/v2/keys/d?dir=true", None, False),
        (proto.set_dir_request("/d", 9), "PUT", "/v2/keys/d?dir=true", b"ttl=9", False),
        (proto.create_request("/a", "v"), "PUT", "/v2/keys/a?prevExist=false", b"value=v", False),
        (
            proto.create_dir_request("/d", 3),
            "PUT",
            "/v2/keys/d?dir=true&prevExist=false",
            b"ttl=3",
            False,
        ),
        (proto.create_in_order_request("/q", "job"), "POST", "/v2/keys/q", b"value=job", False),
        (proto.add_child_dir_request("/q"), "POST", "/v2/keys/q?dir=true", None, False),
        (proto.update_request("/a", "v"), "PUT", "/v2/keys/a?prevExist=true", b"value=v", True),
        (
            proto.update_dir_request("/d", 7),
            "PUT",
            "/v2/keys/d?dir=true&prevExist=true",
            b"ttl=7",
            True,
        ),
        (
            proto.refresh_request("/a", 30),
            "PUT",
            "/v2/keys/a?refresh=true&prevExist=true",
            b"ttl=30",
            True,
        ),
        (
            proto.compare_and_swap_request("/a", "new", None, "old", 8),
            "PUT",
            "/v2/keys/a?prevValue=old&prevIndex=8",
            b"value=new",
            False,
        ),
        (
            proto.compare_and_swap_request("/a", "new", 4, prev_index=8),
            "PUT",
            "/v2/keys/a?prevIndex=8",
            b"value=new&ttl=4",
            False,
        ),
        (
            proto.compare_and_delete_request("/a", prev_value="a b"),
            "DELETE",
            "/v2/keys/a?prevValue=a+b",
            None,
            False,
        ),
        (proto.delete_request("/a"), "DELETE", "/v2/keys/a", None, False),
        (
            proto.delete_request("/d", recursive=True),
            "DELETE",
            "/v2/keys/d?recursive=true",
            None,
            False,
        ),
        (proto.delete_dir_request("/d"), "DELETE", "/v2/keys/d?dir=true", None, False),
        (proto.watch_request("/w"), "GET", "/v2/keys/w?wait=true", None, True),
        (
            proto.watch_request("/w", 25, recursive=True),
            "GET",
            "/v2/keys/w?wait=true&waitIndex=25&recursive=true",
            None,
            True,
        ),
    ],
)
def test_requests(
    request_: proto.Request, method: str, path: str, body: bytes | None, idempotent: bool
) -> None:
    assert (request_.method, request_.path, request_.body) == (method, path, body)
    assert request_.idempotent is idempotent
    expected = "application/x-www-form-urlencoded" if body is not None else None
    assert request_.headers.get("Content-Type") == expected


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: proto.refresh_request("/a", 0), geetcd.InvalidArgument, "refresh needs a ttl"),
        (lambda: proto.set_request("/a", "v", -5), geetcd.InvalidArgument, "ttl must be >= 0"),
        (lambda: proto.set_request("/a", "v", 1.5), geetcd.InvalidType, "ttl"),
        (lambda: proto.set_request("/a", "v", True), geetcd.InvalidType, "ttl"),
        (lambda: proto.set_request("/a", 5), geetcd.InvalidType, "value"),
        (lambda: proto.set_request("/a", b"\xff"), geetcd.InvalidArgument, "UTF-8"),
        (lambda: proto.set_request("", "v"), geetcd.InvalidArgument, "empty"),
        (lambda: proto.compare_and_swap_request("/a", "v"), geetcd.InvalidArgument, "needs"),
        (
            lambda: proto.compare_and_swap_request("/a", "v", prev_value=""),
            geetcd.InvalidArgument,
            "prev_value",
        ),
        (
            lambda: proto.compare_and_swap_request("/a", "v", prev_index=0),
            geetcd.InvalidArgument,
            "prev_index",
        ),
        (lambda: proto.compare_and_delete_request("/a"), geetcd.InvalidArgument, "needs"),
        (lambda: proto.refresh_request("/a", None), geetcd.InvalidArgument, "needs a ttl"),
        (lambda: proto.watch_request("/a", 0), geetcd.InvalidArgument, "wait_index"),
        (lambda: proto.watch_request("/a", "5"), geetcd.InvalidType, "wait_index"),
        (lambda: proto.get_request("/a", recursive=1), geetcd.InvalidType, "recursive"),  # type: ignore[arg-type]
        (
            lambda: proto.delete_request("/a", recursive="yes"),  # type: ignore[arg-type]
            geetcd.InvalidType,
            "recursive",
        ),
    ],
)
def test_requests_validate_before_sending(
    build: Callable[[], object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        build()


# ---------------------------------------------------------------------------- answers
def test_parse_set_answer_with_prev_node_and_headers() -> None:
    data = (
        b'{"action":"set","node":{"key":"/message","value":"v2","modifiedIndex":5,'
        b'"createdIndex":5},"prevNode":{"key":"/message","value":"Hello world",'
        b'"modifiedIndex":4,"createdIndex":4}}'
    )
    response = proto.parse_response(200, data, HEADERS)
    assert response == v2.Response(
        action="set",
        node=v2.Node(key="/message", value="v2", created_index=5, modified_index=5),
        prev_node=v2.Node(key="/message", value="Hello world", created_index=4, modified_index=4),
        etcd_index=5,
        raft_index=105,
        raft_term=2,
    )


def test_headers_are_read_case_insensitively() -> None:
    data = b'{"action":"get","node":{"key":"/a","value":"","modifiedIndex":1,"createdIndex":1}}'
    lowered = {k.lower(): v for k, v in HEADERS.items()}
    response = proto.parse_response(200, data, lowered)
    assert (response.etcd_index, response.raft_index, response.raft_term) == (5, 105, 2)
    assert response.node.value == ""
    assert proto.cluster_id_of(lowered) == 0x66BD59610D06003A
    assert proto.index_of({}) == 0


def test_parse_ttl_expiration_and_root_tree() -> None:
    data = (
        b'{"action":"get","node":{"dir":true,"nodes":[{"key":"/d","dir":true,"nodes":['
        b'{"key":"/d/t","value":"x","expiration":"2026-11-26T13:55:45.449028103Z","ttl":3,'
        b'"modifiedIndex":20,"createdIndex":19}],"modifiedIndex":13,"createdIndex":13}]}}'
    )
    root = proto.parse_response(200, data, HEADERS).node
    assert root.key == "/" and root.dir and root.value is None
    (directory,) = root.nodes
    (leaf,) = directory.nodes
    assert [n.key for n in root.walk()] == ["/", "/d", "/d/t"]
    assert leaf.ttl == 3
    assert leaf.expiration == dt.datetime(2026, 11, 26, 13, 55, 45, 449028, tzinfo=dt.UTC)
    assert (leaf.created_index, leaf.modified_index) == (19, 20)


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b'{"node":{"key":"/a"}}',
        b'{"action":"get","node":[]}',
        b'{"action":"get","node":{"key":"/a","modifiedIndex":"7"}}',
        b'{"action":"get","node":{"key":"/a","expiration":"tomorrow"}}',
        b'{"action":"get","node":{"key":5}}',
    ],
)
def test_malformed_answers(data: bytes) -> None:
    with pytest.raises(geetcd.MalformedResponse):
        proto.parse_response(200, data, HEADERS)


# ---------------------------------------------------------------------------- errors
def _error(code: int, message: str, cause: str = "", index: int = 7) -> bytes:
    return (
        f'{{"errorCode":{code},"message":"{message}","cause":"{cause}","index":{index}}}'
    ).encode()


@pytest.mark.parametrize(
    ("status", "code", "cls", "also"),
    [
        (404, 100, v2.KeyNotFound, LookupError),
        (412, 101, v2.CompareFailed, geetcd.FailedPrecondition),
        (403, 102, v2.NotFile, v2.V2Error),
        (400, 104, v2.NotDir, v2.V2Error),
        (412, 105, v2.NodeExist, geetcd.FailedPrecondition),
        (400, 107, v2.RootReadOnly, geetcd.InvalidArgument),
        (403, 108, v2.DirNotEmpty, v2.V2Error),
        (401, 110, v2.V2AuthRequired, geetcd.AuthRequired),
        (400, 201, v2.PrevValueRequired, ValueError),
        (400, 202, v2.TTLNaN, v2.InvalidRequest),
        (400, 203, v2.IndexNaN, v2.InvalidRequest),
        (400, 209, v2.InvalidRequest, geetcd.InvalidArgument),
        (400, 211, v2.RefreshValue, v2.InvalidRequest),
        (400, 212, v2.RefreshTTLRequired, v2.InvalidRequest),
        (500, 301, v2.LeaderElect, geetcd.UnavailableError),
        (400, 400, v2.WatcherCleared, geetcd.UnavailableError),
        (400, 401, v2.EventIndexCleared, geetcd.WatchCompacted),
        (400, 999, v2.V2Error, geetcd.EtcdError),
    ],
)
def test_error_codes_map_to_classes(
    status: int, code: int, cls: type[v2.V2Error], also: type[Exception]
) -> None:
    error = proto.error_from_answer(status, _error(code, "msg", "/k"), HEADERS, "http://m1")
    assert type(error) is cls
    assert isinstance(error, also) and isinstance(error, v2.V2Error)
    assert (error.error_code, error.message, error.cause, error.index) == (code, "msg", "/k", 7)
    assert (error.http_status, error.member) == (status, "http://m1")
    assert str(error) == f"msg: /k (errorCode={code}, index=7, member=http://m1, http={status})"


def test_exports_match_the_public_surface() -> None:
    import inspect

    from geetcd.v2 import client, errors, models, watch

    public = {
        name
        for module in (client, errors, models, watch)
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and obj.__module__ == module.__name__ and not name.startswith("_")
    }
    assert public <= set(v2.__all__)
    assert all(hasattr(v2, name) for name in v2.__all__)
    assert sorted(v2.__all__) == v2.__all__


def test_test_failed_is_go_etcds_name_for_compare_failed() -> None:
    assert v2.TestFailed is v2.CompareFailed


def test_raft_internal_is_transient_only_for_consensus_failures() -> None:
    timed_out = proto.error_from_answer(
        500, _error(300, "Raft Internal Error", "etcdserver: request timed out", 0), {}
    )
    assert type(timed_out) is v2.RaftInternal
    assert isinstance(timed_out, geetcd.RequestTimedOut)
    assert timed_out.transient and not timed_out.retry_safe
    store = proto.error_from_answer(
        500, _error(300, "Raft Internal Error", "nodePath /1/d : Not a file ()", 0), {}
    )
    assert type(store) is v2.InternalError
    assert isinstance(store, geetcd.ServerError)
    assert not store.transient


def test_event_index_cleared_carries_the_oldest_kept_index() -> None:
    body = _error(
        401,
        "The event in requested index is outdated and cleared",
        "the requested history has been cleared [126/5]",
        1125,
    )
    error = proto.error_from_answer(400, body, {"X-Etcd-Index": "1125"})
    assert isinstance(error, v2.EventIndexCleared)
    assert (error.compact_revision, error.index) == (126, 1125)


def test_error_index_falls_back_on_the_header() -> None:
    body = _error(
        202, "The given TTL in POST form is not a number", 'invalid value for \\"ttl\\"', 0
    )
    error = proto.error_from_answer(400, body, {"x-etcd-index": "42"})
    assert isinstance(error, v2.TTLNaN) and error.index == 42
    assert error.cause == 'invalid value for "ttl"'


def test_non_v2_error_answers() -> None:
    disabled = proto.error_from_answer(404, b"404 page not found\n", {}, "http://m1")
    assert isinstance(disabled, geetcd.UnsupportedServer)
    assert "--enable-v2" in disabled.message and not disabled.transient
    proxy = proto.error_from_answer(503, b"<html>busy</html>", {})
    assert isinstance(proxy, geetcd.UnavailableError) and proxy.transient
    plain = proto.error_from_answer(403, b'{"message":"not current leader"}', {})
    assert isinstance(plain, geetcd.EtcdError) and not plain.transient
    with pytest.raises(v2.KeyNotFound):
        proto.parse_response(404, _error(100, "Key not found", "/x"), HEADERS)


# ---------------------------------------------------------------------------- misc answers
def test_members_leader_version_stats() -> None:
    member = (
        b'{"id":"a6328f4c8ea6650f","name":"s1","peerURLs":["http://127.0.0.1:23102"],'
        b'"clientURLs":["http://127.0.0.1:23101"]}'
    )
    (parsed,) = proto.parse_members(b'{"members":[' + member + b"]}")
    assert parsed.id == 11975791918105126159
    assert parsed.client_urls == ("http://127.0.0.1:23101",)
    assert proto.parse_leader(member) == parsed
    assert proto.parse_members(b"{}") == ()
    with pytest.raises(geetcd.MalformedResponse):
        proto.parse_members(b'{"members":[{"id":"xyz"}]}')
    version = proto.parse_version(b'{"etcdserver":"3.5.1","etcdcluster":"3.5.0"}')
    assert version == v2.Version(server="3.5.1", cluster="3.5.0")
    assert proto.parse_stats(b'{"watchers":0}') == {"watchers": 0}


# ---------------------------------------------------------------------------- request loop
Handler = Callable[[str, str, str, bytes | None, Mapping[str, str] | None], RawResponse]


class SentRecorder(FakeTransport):
    """Records v2 requests as (url, method, path, body, headers); health probes of the
    cluster state (to /v3/) are left out."""

    @property
    def sent(self) -> list[tuple[str, str, str, bytes | None, Mapping[str, str] | None]]:
        return [
            (c.url, c.method, c.path, c.body, c.headers)
            for c in self.calls
            if not c.path.startswith("/v3/")
        ]


OK_SET = (
    b'{"action":"set","node":{"key":"/a","value":"v","modifiedIndex":9,"createdIndex":9}}',
    {"X-Etcd-Index": "9"},
)
M1, M2 = "http://127.0.0.1:1", "http://127.0.0.1:2"


def _client(handler: Handler, **options: Any) -> tuple[v2.Client, SentRecorder]:
    fake = SentRecorder(lambda c, _n: handler(c.url, c.method, c.path, c.body, c.headers))
    client = v2.Client(
        [M1, M2],
        policy=geetcd.PickPolicy.ROUND_ROBIN,
        transport=fake,  # type: ignore[arg-type]
        **options,
    )
    return client, fake


def _lost_on_m1(url: str, method: str, path: str, body: bytes | None, headers: Any) -> RawResponse:
    if url == M1:
        raise geetcd.ConnectionLost("connection broke", member=url)
    return RawResponse(201, OK_SET[0], OK_SET[1])


def test_set_is_sent_again_after_a_lost_answer() -> None:
    client, fake = _client(_lost_on_m1)
    with client:
        response = client.set("/a", "v", ttl=5)
    assert response.node.modified_index == 9 and response.etcd_index == 9
    assert [(url, method) for url, method, *_ in fake.sent] == [(M1, "PUT"), (M2, "PUT")]
    assert fake.sent[0][3] == b"value=v&ttl=5"
    assert fake.sent[0][4] is not None
    assert fake.sent[0][4]["Content-Type"] == "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.create("/a", "v"),
        lambda c: c.create_in_order("/q", "v"),
        lambda c: c.add_child("/q", "v"),
        lambda c: c.compare_and_swap("/a", "v", prev_value="u"),
        lambda c: c.compare_and_delete("/a", prev_index=3),
        lambda c: c.delete("/a"),
        lambda c: c.set_dir("/d"),
    ],
)
def test_non_idempotent_writes_raise_outcome_unknown(call: Callable[[v2.Client], object]) -> None:
    client, fake = _client(_lost_on_m1)
    with client, pytest.raises(geetcd.OutcomeUnknown) as info:
        call(client)
    assert isinstance(info.value.__cause__, geetcd.ConnectionLost)
    assert len(fake.sent) == 1


def test_raft_internal_write_is_outcome_unknown_and_read_fails_over() -> None:
    def handler(url: str, method: str, path: str, body: bytes | None, headers: Any) -> RawResponse:
        if url == M1:
            return RawResponse(
                500, _error(300, "Raft Internal Error", "etcdserver: request timed out", 0)
            )
        return RawResponse(200, OK_SET[0].replace(b'"set"', b'"get"'), OK_SET[1])

    client, fake = _client(handler)
    with client, pytest.raises(geetcd.OutcomeUnknown) as info:
        client.create("/a", "v")
    assert isinstance(info.value.__cause__, v2.RaftInternal)
    assert [url for url, *_ in fake.sent] == [M1]
    client, fake = _client(handler)
    with client:
        assert client.get("/a").action == "get"
    assert [url for url, *_ in fake.sent] == [M1, M2]
    assert fake.sent[0][2] == "/v2/keys/a?quorum=true"


def test_weak_consistency_reads_without_quorum_and_errors_are_raised_at_once() -> None:
    def handler(url: str, method: str, path: str, body: bytes | None, headers: Any) -> RawResponse:
        return RawResponse(404, _error(100, "Key not found", "/a", 3), {"X-Etcd-Index": "3"})

    client, fake = _client(handler, consistency="weak")
    with client, pytest.raises(v2.KeyNotFound):
        client.get("/a")
    assert [path for _, _, path, *_ in fake.sent] == ["/v2/keys/a"]


def test_client_options_are_validated() -> None:
    with pytest.raises(geetcd.InvalidArgument):
        v2.Client(M1, consistency="eventual")
    with pytest.raises(geetcd.InvalidArgument):
        v2.Client(M1, liveness_interval=0)
    with pytest.raises(geetcd.InvalidType):
        v2.Client.from_client("http://127.0.0.1:2379")  # type: ignore[arg-type]
    with v2.Client(M1) as client:
        with pytest.raises(geetcd.InvalidArgument):
            client.watcher("/a", buffer=0)
        with pytest.raises(geetcd.InvalidArgument):
            client.watch("/a", 0)
        assert repr(client) == f"<geetcd.v2.Client {M1} consistency=strong open>"


def test_ttl_zero_means_no_ttl_as_in_go_etcd() -> None:
    """go-etcd sends a ttl only when it is above zero; code ported from it passes 0."""
    for build in (
        lambda ttl: proto.set_request("/a", "v", ttl),
        lambda ttl: proto.create_request("/a", "v", ttl),
        lambda ttl: proto.update_request("/a", "v", ttl),
        lambda ttl: proto.set_dir_request("/d", ttl),
        lambda ttl: proto.add_child_dir_request("/d", ttl),
    ):
        assert build(0) == build(None)
        assert b"ttl" not in (build(0).body or b"")
        assert b"ttl=1" in (build(1).body or b"")
