"""The transport= seam covers streams too: a watch runs, and resumes after a broken
stream from the next revision on another member, against a fake transport (no sockets)."""

from __future__ import annotations

import base64
import json

import gevent
from fake_transport import Call, FakeStream, FakeTransport

import geetcd
from geetcd.transport import RawResponse

URLS = ["http://127.0.0.1:1", "http://127.0.0.1:2"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _message(result: dict[str, object]) -> bytes:
    return json.dumps({"result": result}).encode() + b"\n"


def _event(revision: int, key: bytes, value: bytes) -> bytes:
    kv = {
        "key": _b64(key),
        "value": _b64(value),
        "create_revision": str(revision),
        "mod_revision": str(revision),
        "version": "1",
    }
    return _message({"header": {"revision": str(revision)}, "events": [{"kv": kv}]})


def test_watch_runs_and_resumes_through_the_transport_seam() -> None:
    streams: list[FakeStream] = []

    def unary(call: Call, n: int) -> RawResponse:
        return RawResponse(200, b'{"header":{"revision":"5"}}')

    def stream(call: Call, n: int) -> FakeStream:
        opened = FakeStream(call.url)
        opened.feed(_message({"header": {"revision": "5"}, "created": True}))
        streams.append(opened)
        return opened

    transport = FakeTransport(unary, stream_handler=stream)
    client = geetcd.Client(URLS, namespace="/ns/", transport=transport)  # type: ignore[arg-type]
    try:
        with gevent.Timeout(10):
            watch = client.watch("k")
            assert json.loads(transport.streams[0].body or b"")["create_request"]["key"] == _b64(
                b"/ns/k"
            )
            streams[0].feed(_event(6, b"/ns/k", b"one"))
            first = watch.next_event(timeout=5)
            assert (first.kv.key, first.kv.value, first.kv.mod_revision) == (b"k", b"one", 6)
            failed_url = transport.streams[0].url
            streams[0].abort()  # the connection breaks: resume elsewhere from revision 7
            while len(streams) < 2:
                gevent.sleep(0.01)
            resumed = json.loads(transport.streams[1].body or b"")["create_request"]
            assert int(resumed["start_revision"]) == 7
            assert transport.streams[1].url != failed_url  # the failed member is avoided
            streams[1].feed(_event(7, b"/ns/k", b"two"))
            second = watch.next_event(timeout=5)
            assert (second.kv.value, second.kv.mod_revision) == (b"two", 7)
            watch.cancel()
    finally:
        client.close()
    assert all(s.closed for s in streams)
