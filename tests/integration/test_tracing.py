"""geetcd.tracing against a real etcd: one CLIENT span per call with the database-client
attributes, an ``attempt`` event per member tried, ``error.type`` on failure, the caller's
span as parent (also for batched reads sent by another greenlet), and short root spans for
a lost lease."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gevent
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from polling import wait_for

import geetcd
import geetcd.tracing
from geetcd.testing import EtcdCluster

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def traced() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _attempts(span: ReadableSpan) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == "attempt"]


def test_call_spans_carry_the_attributes(
    etcd_server: Any, etcd_prefix: str, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = traced
    url = etcd_server.members[0].client_url
    with geetcd.Client(url, namespace=etcd_prefix, batch_reads=False) as client:
        tracing = geetcd.tracing.instrument(client, provider)
        client.put("k", "v")
        assert client.get("k") is not None
        head = client.put("k", "w").header.revision
        client.compact(head)
        with pytest.raises(geetcd.CompactedRevision):
            client.range("k", revision=1)
        spans = exporter.get_finished_spans()
        assert [s.name for s in spans] == ["put", "get", "put", "compact", "range"]
        for span in spans:
            attributes = dict(span.attributes or {})
            assert span.kind is SpanKind.CLIENT
            assert attributes["db.system.name"] == "etcd"
            assert attributes["db.operation.name"] == span.name
            assert attributes["server.address"] == "127.0.0.1"
            assert attributes["server.port"] == _port(url)
            assert "geetcd.batch.size" not in attributes
            assert len(_attempts(span)) == 1
            assert _attempts(span)[0]["server.port"] == _port(url)
        for span in spans[:-1]:
            assert span.status.status_code is StatusCode.UNSET
            assert "error.type" not in (span.attributes or {})
        failed = spans[-1]
        assert (failed.attributes or {})["error.type"] == "CompactedRevision"
        assert failed.status.status_code is StatusCode.ERROR
        assert _attempts(failed)[0]["error.type"] == "CompactedRevision"
        assert all(b"k" not in str(s.attributes).encode() for s in spans)  # no key recorded
        tracing.uninstrument()
        client.get("k")
        assert len(exporter.get_finished_spans()) == 5


def test_the_callers_span_is_the_parent(
    etcd_server: Any, etcd_prefix: str, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = traced
    tracer = provider.get_tracer("test")
    with geetcd.Client(etcd_server.members[0].client_url, namespace=etcd_prefix) as client:
        geetcd.tracing.instrument(client, provider)
        client.put("k", "v")
        with tracer.start_as_current_span("request") as parent:
            client.get("k")
        get = [s for s in exporter.get_finished_spans() if s.name == "get"]
        assert len(get) == 1 and get[0].parent is not None
        assert get[0].parent.span_id == parent.get_span_context().span_id
        assert get[0].context.trace_id == parent.get_span_context().trace_id

        # Batched reads: each caller, in its own greenlet with its own parent span; the
        # batch is sent by another greenlet, yet each span keeps its caller's parent.
        reads = client.read_batcher
        assert reads is not None

        def handler() -> None:
            with tracer.start_as_current_span("handler"):
                client.get("k")

        for _ in range(10):  # whether a batch forms depends on timing: rounds until one did
            exporter.clear()
            gevent.joinall([gevent.spawn(handler) for _ in range(30)], raise_error=True)
            if any(
                (s.attributes or {}).get("geetcd.batch.size", 1) > 1
                for s in exporter.get_finished_spans()
            ):
                break
        spans = exporter.get_finished_spans()
        handlers = {s.context.span_id: s for s in spans if s.name == "handler"}
        gets = [s for s in spans if s.name == "get"]
        assert len(handlers) == len(gets) == 30
        for span in gets:
            assert span.parent is not None and span.parent.span_id in handlers
            assert span.context.trace_id == handlers[span.parent.span_id].context.trace_id
        assert len({s.parent.span_id for s in gets if s.parent}) == 30  # one get per handler
        batched = [s for s in gets if (s.attributes or {}).get("geetcd.batch.size", 1) > 1]
        assert batched, "no batch formed in 10 rounds"
        assert all(len(_attempts(s)) == 1 for s in batched)


def test_a_lost_lease_is_a_short_root_span(
    etcd_server: Any, etcd_prefix: str, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = traced
    url = etcd_server.members[0].client_url
    with geetcd.Client(url, namespace=etcd_prefix) as client, geetcd.Client(url) as other:
        geetcd.tracing.instrument(client, provider)
        lease = client.lease(2, keepalive=True)
        other.revoke_lease(lease.id)  # revoked elsewhere: the keepalive finds it expired
        wait_for(lease.lost.is_set, timeout=5, what="the lease loss")
        lost = [s for s in exporter.get_finished_spans() if s.name == "lease lost"]
        assert len(lost) == 1 and lost[0].parent is None
        assert (lost[0].attributes or {})["geetcd.lease.loss_reason"] == "expired"
        assert lost[0].status.status_code is StatusCode.ERROR


@pytest.mark.fault
def test_a_failed_over_call_shows_each_member_tried(
    healed_cluster: EtcdCluster,
    etcd_prefix: str,
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    urls = healed_cluster.endpoints
    with geetcd.Client(
        urls, namespace=etcd_prefix, batch_reads=False, policy=geetcd.PickPolicy.ROUND_ROBIN
    ) as client:
        for _ in range(3):
            client.status()
        geetcd.tracing.instrument(client, provider)
        victim = next(m for m in healed_cluster.members if m is not healed_cluster.leader())
        victim.kill()
        for _ in range(6):  # round robin: one of them is sent to the victim first
            client.get("failover")
        spans = [s for s in exporter.get_finished_spans() if s.name == "get"]
        moved = [s for s in spans if len(_attempts(s)) > 1]
        assert moved, [(s.name, _attempts(s)) for s in spans]
        for span in moved:
            first, *rest = _attempts(span)
            assert first["server.port"] == _port(victim.client_url)
            assert "error.type" in first
            assert "error.type" not in rest[-1] and rest[-1]["server.port"] != first["server.port"]
            attributes = dict(span.attributes or {})
            assert attributes["server.port"] == rest[-1]["server.port"]  # the one that answered
            assert span.status.status_code is StatusCode.UNSET
        down = [s for s in exporter.get_finished_spans() if s.name == "member down"]
        assert len(down) == 1 and (down[0].attributes or {})["server.port"] == _port(
            victim.client_url
        )
