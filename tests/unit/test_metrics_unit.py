"""geetcd.metrics and geetcd.tracing without a server: the outcome names, the gauges of
streams, watches and members fed through the observer methods, series removal, the error
when the extra is missing, and the gevent context fact the tracing design rests on."""

from __future__ import annotations

import contextvars
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import geetcd
import geetcd.metrics
from geetcd.cluster import MemberState
from geetcd.metrics import outcome_of

REPO = Path(__file__).resolve().parents[2]
URL = "http://127.0.0.1:1"  # never contacted: nothing here does I/O


def _samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _get(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return _samples(registry).get((name, frozenset(labels.items())))


@pytest.fixture
def client() -> Iterator[geetcd.Client]:
    with geetcd.Client(URL) as c:
        yield c


def test_outcome_names_are_bounded() -> None:
    assert outcome_of(None) == "ok"
    assert outcome_of(geetcd.OutcomeUnknown("lost")) == "OutcomeUnknown"
    assert outcome_of(geetcd.DeadlineExceeded("late")) == "DeadlineExceeded"
    assert outcome_of(gevent.GreenletExit()) == "GreenletExit"
    assert outcome_of(gevent.Timeout(1)) == "Timeout"
    assert outcome_of(ValueError("user bug")) == "other"
    assert outcome_of(KeyboardInterrupt()) == "other"

    class Timeout(Exception):  # a name like gevent's, from elsewhere
        pass

    assert outcome_of(Timeout()) == "other"


def test_stream_watch_and_member_gauges(client: geetcd.Client) -> None:
    registry = CollectorRegistry()
    metrics = geetcd.metrics.instrument(client, registry, name="u")
    m = "http://127.0.0.1:2379"
    assert _get(registry, "geetcd_member_up", client="u", member=URL) == 1
    metrics.stream_opened("watch", m)
    metrics.stream_opened("watch", m)
    metrics.stream_opened("keepalive", m)
    metrics.stream_closed("watch", m, None)
    assert _get(registry, "geetcd_open_streams", client="u", member=m, kind="watch") == 1
    assert _get(registry, "geetcd_open_streams", client="u", member=m, kind="keepalive") == 1
    for _ in range(3):  # closes of streams opened before instrument(): never below 0
        metrics.stream_closed("watch", m, None)
    assert _get(registry, "geetcd_open_streams", client="u", member=m, kind="watch") == 0
    metrics.watch_created()
    metrics.watch_ended("overflow")
    metrics.watch_ended("compacted")
    assert _get(registry, "geetcd_watches", client="u") == 0
    assert _get(registry, "geetcd_watches_ended_total", client="u", reason="overflow") == 1
    metrics.watch_resumed(m, 42)
    assert _get(registry, "geetcd_watch_resumes_total", client="u", member=m) == 1
    metrics.member_ejected(m, "silent")
    assert (
        _get(registry, "geetcd_member_ejections_total", client="u", member=m, reason="silent") == 1
    )
    # Members up: read from the cluster state at scrape time.
    (member,) = client.core.cluster.members
    member.state = MemberState.DOWN
    assert _get(registry, "geetcd_member_up", client="u", member=URL) == 0
    member.state = MemberState.SUSPECT
    assert _get(registry, "geetcd_member_up", client="u", member=URL) == 0
    member.state = MemberState.HEALTHY
    member.is_learner = True
    assert _get(registry, "geetcd_member_up", client="u", member=URL) == 0
    member.is_learner = False
    assert _get(registry, "geetcd_member_up", client="u", member=URL) == 1
    metrics.lease_lost("expired")
    assert _get(registry, "geetcd_leases_kept_alive", client="u") == 0  # the keepalive's count
    assert _get(registry, "geetcd_leases_lost_total", client="u", reason="expired") == 1
    metrics.batch_sent("write", 5)
    assert _get(registry, "geetcd_batch_size_sum", client="u", kind="write") == 5
    assert _get(registry, "geetcd_batch_size_bucket", client="u", kind="write", le="8.0") == 1
    assert _get(registry, "geetcd_pool_connections_max", client="u", member=URL) == 64
    metrics.uninstrument()
    left = [key for key in _samples(registry) if ("client", "u") in key[1]]
    assert left == []
    assert metrics not in client.core.observers.all


def test_bad_arguments(client: geetcd.Client) -> None:
    with pytest.raises(geetcd.InvalidArgument):
        geetcd.metrics.instrument(client, CollectorRegistry(), prefix="bad prefix")
    with pytest.raises(geetcd.InvalidArgument):
        geetcd.metrics.instrument(client, CollectorRegistry(), name="")
    with pytest.raises(geetcd.InvalidType):
        geetcd.metrics.instrument(object(), CollectorRegistry())  # type: ignore[arg-type]
    registry = CollectorRegistry()
    own = geetcd.metrics.instrument(client, registry, prefix="myapp_etcd")
    assert b"\nmyapp_etcd_requests_total{" not in generate_latest(registry)  # no series yet
    assert b"# TYPE myapp_etcd_requests_total counter" in generate_latest(registry)
    own.uninstrument()


@pytest.mark.parametrize(
    ("blocked", "module", "extra"),
    [
        ("prometheus_client", "geetcd.metrics", "geetcd[prometheus]"),
        ("opentelemetry", "geetcd.tracing", "geetcd[otel]"),
    ],
)
def test_instrument_names_the_missing_extra(blocked: str, module: str, extra: str) -> None:
    script = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        "import geetcd, importlib\n"
        f"mod = importlib.import_module({module!r})\n"
        f"client = geetcd.Client({URL!r})\n"
        "try:\n"
        "    mod.instrument(client)\n"
        "except ImportError as exc:\n"
        "    print('ImportError:', exc)\n"
        "else:\n"
        "    print('no error')\n"
        "client.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"pip install '{extra}'" in done.stdout, done.stdout


def test_a_spawned_greenlet_starts_with_an_empty_context() -> None:
    # The fact geetcd.tracing rests on: a greenlet does not inherit the context of the
    # greenlet that spawned it, so a span must be taken from the caller's greenlet.
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="empty")
    var.set("caller")
    seen = gevent.spawn(var.get)
    seen.join()
    assert seen.value == "empty"
    assert var.get() == "caller"


MULTIPROCESS_SCRIPT = """
import json, os, sys
import geetcd, geetcd.metrics
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families

client = geetcd.Client("http://127.0.0.1:1")
metrics = geetcd.metrics.instrument(client, name="mp")
m = "http://127.0.0.1:2379"
metrics.stream_opened("watch", m)
metrics.stream_opened("watch", m)
metrics.stream_closed("watch", m, None)
for _ in range(3):
    metrics.stream_closed("keepalive", m, None)  # never opened here: never below 0
metrics.member_state_changed(m, "added", "suspect", None)
metrics.member_state_changed(m, "suspect", "healthy", None)
metrics.member_state_changed(client.endpoints[0], "healthy", "down", None)
metrics.lease_kept(1)
metrics.lease_kept(1)
metrics.lease_kept(-1)
metrics.watch_created()
metrics.watch_created()
metrics.watch_ended("canceled")
metrics.watch_events(4)
metrics.batch_sent("read", 3)
registry = CollectorRegistry()
multiprocess.MultiProcessCollector(registry)
samples = [
    [s.name, s.labels, s.value]
    for f in text_string_to_metric_families(generate_latest(registry).decode())
    for s in f.samples
]
print(type(metrics).__name__)
print(json.dumps(samples))
metrics.member_state_changed(m, "healthy", "removed", None)
metrics.uninstrument()
client.close()
"""


def test_multiprocess_mode(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS_SCRIPT],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    kind, data = done.stdout.splitlines()
    assert kind == "MultiprocessMetrics"
    samples = {(n, frozenset(labels.items())): v for n, labels, v in json.loads(data)}

    def get(name: str, **labels: str) -> float | None:
        return samples.get((name, frozenset({"client": "mp", **labels}.items())))

    m = "http://127.0.0.1:2379"
    assert get("geetcd_open_streams", member=m, kind="watch") == 1
    assert get("geetcd_open_streams", member=m, kind="keepalive") is None
    assert get("geetcd_member_up", member=m) == 1
    assert get("geetcd_member_up", member=URL) == 0
    assert get("geetcd_leases_kept_alive") == 1
    assert get("geetcd_watches") == 1
    assert get("geetcd_watches_ended_total", reason="canceled") == 1
    assert get("geetcd_watch_events_total") == 4
    assert get("geetcd_batch_size_count", kind="read") == 1
    assert get("geetcd_batch_size_sum", kind="read") == 3
