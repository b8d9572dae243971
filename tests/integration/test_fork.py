"""A client built before a fork (``gunicorn --preload``, locust ``--processes``) works in
the child, never shares a socket with the parent, and leaves the parent's client intact.

The child is made with ``gevent.fork()`` (what a monkey-patched ``os.fork`` is): a plain
``os.fork`` leaves any gevent hub in the child sharing its parent's event loop, whatever
the library. The child reports through a pipe; the parent asserts.
"""

from __future__ import annotations

import json
import os
from typing import Any

import gevent
import gevent.os
import pytest

import geetcd

pytestmark = pytest.mark.timeout(60)

ROUNDS = 300


def _child(client: geetcd.Client, watch: geetcd.Watch, lease: geetcd.Lease) -> dict[str, Any]:
    report: dict[str, Any] = {}
    values = {client.get("c").value for _ in range(ROUNDS)}  # type: ignore[union-attr]
    report["values"] = sorted(v.decode() for v in values)
    client.put("from-child", "c1")
    report["own_write"] = client.get("from-child").value.decode()  # type: ignore[union-attr]
    report["lease"] = [lease.lost.is_set(), str(lease.lost_reason)]
    fresh = client.watch("fresh")
    client.put("fresh", "x")
    report["fresh_watch"] = fresh.next_event(timeout=5).kv.value.decode()
    try:
        watch.next_event(timeout=5)
        report["inherited_watch"] = "an event"
    except geetcd.WatchCanceled as exc:
        report["inherited_watch"] = exc.reason
    kept = client.lease(10, keepalive=True)
    gevent.sleep(4)  # past one refresh (TTL/3)
    report["child_lease_ttl"] = client.lease_time_to_live(kept).ttl
    client.close()
    return report


def test_forked_child_gets_its_own_connections(etcd_endpoints: list[str], etcd_prefix: str) -> None:
    client = geetcd.Client(etcd_endpoints, namespace=etcd_prefix, maxsize=2)
    try:
        client.put("p", "parent-value")
        client.put("c", "child-value")
        watch = client.watch("w")
        lease = client.lease(10, keepalive=True)
        # Warm the pool: the child inherits live keep-alive connections.
        gevent.joinall([gevent.spawn(client.get, "p") for _ in range(4)])
        reader, writer = os.pipe()
        pid = gevent.fork()
        if pid == 0:  # the child: report, never return into pytest
            os.close(reader)
            code = 0
            try:
                payload = json.dumps(_child(client, watch, lease))
            except BaseException as exc:  # reported to the parent, which fails the test
                payload = json.dumps({"error": repr(exc)})
                code = 1
            os.write(writer, payload.encode())
            os._exit(code)
        os.close(writer)
        # The parent reads concurrently, on the same pooled connections it had before.
        values = {client.get("p").value for _ in range(ROUNDS)}  # type: ignore[union-attr]
        chunks = []
        while chunk := gevent.os.tp_read(reader, 65536):
            chunks.append(chunk)
        os.close(reader)
        _, status = gevent.os.waitpid(pid, 0)  # gevent.fork reaps the child itself
        report = json.loads(b"".join(chunks) or b"{}")
        assert "error" not in report, report
        assert os.WEXITSTATUS(status) == 0
        assert values == {b"parent-value"}  # never the child's answer
        assert report["values"] == ["child-value"]  # never the parent's answer
        assert report["own_write"] == "c1"
        assert report["lease"] == [True, "inherited"]
        assert report["fresh_watch"] == "x"
        assert report["inherited_watch"] == "forked"
        assert report["child_lease_ttl"] > 5  # the child's own keepalive refreshes
        # The parent's watch, lease and connections are untouched.
        client.put("w", "after")
        assert watch.next_event(timeout=5).kv.value == b"after"
        assert not lease.lost.is_set()
        assert client.lease_time_to_live(lease).ttl > 0
        assert client.get("from-child").value == b"c1"  # type: ignore[union-attr]
    finally:
        client.close()


def _idle_child(client: geetcd.Client, watches: list[geetcd.Watch]) -> dict[str, Any]:
    """Count the watch channels and greenlets a child starts before it first uses the client."""
    from geetcd import watch_mux

    made = []
    original = watch_mux.WatchChannel.__init__

    def counting(self: Any, mux: Any) -> None:
        made.append(1)
        original(self, mux)

    watch_mux.WatchChannel.__init__ = counting  # type: ignore[method-assign]
    before = len(client.core.group)
    gevent.sleep(1.0)  # the inherited channel's greenlet wakes on its severed socket
    report: dict[str, Any] = {
        "channels_before_first_call": len(made),
        "greenlets_before": before,
        "greenlets_after_idle": len(client.core.group),
    }
    client.put("from-idle-child", "1")  # the first call adopts the client
    reasons = []
    for watch in watches:
        try:
            watch.next_event(timeout=5)
            reasons.append("an event")
        except geetcd.WatchCanceled as exc:
            reasons.append(exc.reason)
    report["inherited"] = reasons
    fresh = client.watch("idle-fresh")
    client.put("idle-fresh", "x")
    report["fresh"] = fresh.next_event(timeout=5).kv.value.decode()
    report["channels_after_fresh_watch"] = len(made)
    client.close()
    return report


def test_forked_child_spawns_no_watch_channel_before_its_first_call(
    etcd_endpoints: list[str], etcd_prefix: str
) -> None:
    client = geetcd.Client(etcd_endpoints, namespace=etcd_prefix, streams="websocket")
    try:
        watches = [client.watch(f"ws{i}") for i in range(5)]
        mux = client.core.watch_hub.mux
        assert mux.channel is not None and mux.channel.ws is not None  # on a WebSocket
        reader, writer = os.pipe()
        pid = gevent.fork()
        if pid == 0:
            os.close(reader)
            code = 0
            try:
                payload = json.dumps(_idle_child(client, watches))
            except BaseException as exc:  # reported to the parent, which fails the test
                payload = json.dumps({"error": repr(exc)})
                code = 1
            os.write(writer, payload.encode())
            os._exit(code)
        os.close(writer)
        chunks = []
        while chunk := gevent.os.tp_read(reader, 65536):
            chunks.append(chunk)
        os.close(reader)
        _, status = gevent.os.waitpid(pid, 0)
        report = json.loads(b"".join(chunks) or b"{}")
        assert "error" not in report, report
        assert os.WEXITSTATUS(status) == 0
        assert report["channels_before_first_call"] == 0, report
        assert report["greenlets_after_idle"] <= report["greenlets_before"], report
        assert report["inherited"] == ["forked"] * 5, report
        assert report["fresh"] == "x"
        assert report["channels_after_fresh_watch"] == 1, report
        # The parent's watches are untouched.
        client.put("ws0", "parent")
        assert watches[0].next_event(timeout=5).kv.value == b"parent"
    finally:
        client.close()
