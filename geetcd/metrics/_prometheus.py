"""The Prometheus side of :mod:`geetcd.metrics` (imported only when ``prometheus_client`` is
installed).

Two implementations of one set of metrics, chosen once per process:

* :class:`CollectedMetrics`, the usual one: each observer counts in plain integers (a
  dictionary increment per call and per attempt, a ``bisect`` for the histogram; no lock,
  nothing allocated after the first call of a method) and one collector per registry turns
  every instrumented client's counts and state into metric families at scrape time.
  Gauges that mirror state (members up, watches alive, leases kept alive, pool use) are
  read from the client's state then, so they are right even for what existed before
  ``instrument()``.
* :class:`MultiprocessMetrics`, in prometheus_client's multiprocess mode
  (``PROMETHEUS_MULTIPROC_DIR`` set): custom collectors cannot be merged across processes
  there, so it updates ``prometheus_client`` metric objects, whose values live in files
  the scraping process sums. Each update takes a lock and writes a mapped file: a few
  microseconds more per call.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import threading
import weakref
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from geetcd.client import Client
from geetcd.errors import InvalidArgument, InvalidType
from geetcd.metrics._common import BATCH_BUCKETS, DURATION_BUCKETS, outcome_of
from geetcd.observe import CallRecord, Observer

if TYPE_CHECKING:
    from geetcd.core import Core

__all__ = ["ClientMetrics", "CollectedMetrics", "MultiprocessMetrics", "attach"]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_numbers = itertools.count(1)
_lock = threading.Lock()
# (registry -> prefix -> families): one set of metric families per registry and prefix.
_families: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _Families | _Exposition]] = (
    weakref.WeakKeyDictionary()
)

M = TypeVar("M", Counter, Gauge, Histogram)
log = logging.getLogger("geetcd.metrics")
_attached: weakref.WeakSet[MultiprocessMetrics] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # In multiprocess mode a forked child starts every gauge of its own from 0 (a file per
    # process): set them again from what the observers know (gunicorn --preload).
    for metrics in list(_attached):
        try:
            metrics.restate()
        except Exception:
            log.exception("geetcd metrics: restating %r after fork failed", metrics)


os.register_at_fork(after_in_child=_after_fork_in_child)


_HELP = {
    "requests_total": "Client calls ended, by method and outcome (ok or the error class name).",
    "request_duration_seconds": "Duration of client calls (attempts and waits included).",
    "attempts_total": "Attempts of client calls, by member and result (ok or error class).",
    "hedges_total": "Reads also sent to a second member after hedge_delay, by method.",
    "member_up": "1 while the client picks the member (healthy); 0 benched, unverified, learner.",
    "member_ejections_total": "Members no longer picked by outlier detection, by reason.",
    "open_streams": "Long-lived streams open (watch, watch_channel, v2_wait, keepalive).",
    "watches": "Watch handles alive.",
    "watches_ended_total": "Watch handles ended (canceled, overflow, compacted, error, forked).",
    "watch_events_total": "Watch events received (once per server stream, not per watch).",
    "watch_resumes_total": "Watch streams resumed after a failure, by the member resumed on.",
    "leases_kept_alive": "Leases the client's keepalive refreshes.",
    "leases_lost_total": "Leases lost (expired, revoked, unreachable, closed, inherited).",
    "keepalive_requests_total": "Lease keepalive requests, by member and result.",
    "batch_size": "Ops per batched txn (opportunistic batching), by kind (read or write).",
    "pool_connections_in_use": "Unary connections in use (checked out of the pool), by member.",
    "pool_connections_max": "Unary connections the member's pool may open (maxsize).",
}
"""The HELP text of each metric, by name without the prefix."""


class _Families:
    """The metric families of one (registry, prefix), shared by the clients instrumented
    there; each client's series carry its ``client`` label."""

    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        p = prefix
        c = ("client",)
        self.clients: tuple[ClientMetrics, ...] = ()
        self.requests = Counter(
            f"{p}_requests_total",
            _HELP["requests_total"],
            (*c, "method", "outcome"),
            registry=registry,
        )
        self.durations = Histogram(
            f"{p}_request_duration_seconds",
            _HELP["request_duration_seconds"],
            (*c, "method"),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.attempts = Counter(
            f"{p}_attempts_total",
            _HELP["attempts_total"],
            (*c, "member", "result"),
            registry=registry,
        )
        self.hedges = Counter(
            f"{p}_hedges_total",
            _HELP["hedges_total"],
            (*c, "method"),
            registry=registry,
        )
        self.member_up = Gauge(
            f"{p}_member_up",
            _HELP["member_up"],
            (*c, "member"),
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.ejections = Counter(
            f"{p}_member_ejections_total",
            _HELP["member_ejections_total"],
            (*c, "member", "reason"),
            registry=registry,
        )
        self.streams = Gauge(
            f"{p}_open_streams",
            _HELP["open_streams"],
            (*c, "member", "kind"),
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.watches = Gauge(
            f"{p}_watches",
            _HELP["watches"],
            c,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.watches_ended = Counter(
            f"{p}_watches_ended_total",
            _HELP["watches_ended_total"],
            (*c, "reason"),
            registry=registry,
        )
        self.watch_events = Counter(
            f"{p}_watch_events_total",
            _HELP["watch_events_total"],
            c,
            registry=registry,
        )
        self.watch_resumes = Counter(
            f"{p}_watch_resumes_total",
            _HELP["watch_resumes_total"],
            (*c, "member"),
            registry=registry,
        )
        self.leases_kept = Gauge(
            f"{p}_leases_kept_alive",
            _HELP["leases_kept_alive"],
            c,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.leases_lost = Counter(
            f"{p}_leases_lost_total",
            _HELP["leases_lost_total"],
            (*c, "reason"),
            registry=registry,
        )
        self.keepalives = Counter(
            f"{p}_keepalive_requests_total",
            _HELP["keepalive_requests_total"],
            (*c, "member", "result"),
            registry=registry,
        )
        self.batch_size = Histogram(
            f"{p}_batch_size",
            _HELP["batch_size"],
            (*c, "kind"),
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        registry.register(_PoolCollector(self, prefix))


class _PoolCollector(Collector):
    """Connections in use and pool size per member of every instrumented client, read at
    scrape time (``transport.pool_usage``). Never raises for a closed client (skipped)."""

    def __init__(self, families: _Families, prefix: str) -> None:
        self._families = families
        self._prefix = prefix

    def _empty(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        labels = ["client", "member"]
        return (
            GaugeMetricFamily(
                f"{self._prefix}_pool_connections_in_use",
                _HELP["pool_connections_in_use"],
                labels=labels,
            ),
            GaugeMetricFamily(
                f"{self._prefix}_pool_connections_max",
                _HELP["pool_connections_max"],
                labels=labels,
            ),
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._empty()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        in_use, most = self._empty()
        for metrics in self._families.clients:
            core = metrics.core
            if core.closed:
                continue
            for member in list(core.cluster.members):
                used, size = core.transport.pool_usage(member.url)
                in_use.add_metric([metrics.name, member.url], used)
                most.add_metric([metrics.name, member.url], size)
        yield in_use
        yield most


def attach(
    client: Client, registry: CollectorRegistry | None, *, prefix: str, name: str | None
) -> ClientMetrics:
    """See :func:`geetcd.metrics.instrument`."""
    if not isinstance(client, Client):
        raise InvalidType(f"instrument() needs a geetcd.Client, got {type(client).__name__}")
    if registry is None:
        registry = REGISTRY
    if not isinstance(registry, CollectorRegistry):
        raise InvalidType(f"registry must be a CollectorRegistry, got {type(registry).__name__}")
    if not isinstance(prefix, str) or not _NAME.match(prefix):
        raise InvalidArgument(f"prefix must be a Prometheus metric name prefix, got {prefix!r}")
    if name is not None and (not isinstance(name, str) or not name):
        raise InvalidArgument(f"name must be a non-empty str, got {name!r}")
    with _lock:
        per_prefix = _families.setdefault(registry, {})
        families = per_prefix.get(prefix)
        if families is None:
            shared = _Families if multiprocess_mode() else _Exposition
            families = per_prefix[prefix] = shared(registry, prefix)
        if any(m.core is client.core for m in families.clients):
            raise InvalidArgument(
                f"this client is already instrumented on this registry (prefix {prefix!r})"
            )
        taken = {m.name for m in families.clients}
        if name is None:
            for _ in range(len(taken) + 1):  # bounded: at most len(taken) names are taken
                name = f"client{next(_numbers)}"
                if name not in taken:
                    break
        assert name is not None
        if name in taken:
            raise InvalidArgument(f"a client named {name!r} is already instrumented here")
        metrics: ClientMetrics
        if isinstance(families, _Families):
            metrics = MultiprocessMetrics(client.core, families, name)
        else:
            metrics = CollectedMetrics(client.core, families, name)
        families.clients = (*families.clients, metrics)
    client.core.add_observer(metrics)
    return metrics


_MULTIPROC_ENV = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")  # (the old name too)


def multiprocess_mode() -> bool:
    """True when prometheus_client runs in multiprocess mode (its environment variable)."""
    return any(os.environ.get(name) for name in _MULTIPROC_ENV)


class ClientMetrics(Observer):
    """The observer that feeds one client's series (see :mod:`geetcd.metrics`): a
    :class:`CollectedMetrics`, or a :class:`MultiprocessMetrics` in multiprocess mode.

    ``name``: the value of its ``client`` label; ``core``: the client's core.
    """

    core: Core
    name: str

    def uninstrument(self) -> None:
        """Detach from the client and remove this client's series from the registry.
        Idempotent; never raises."""
        raise NotImplementedError


class MultiprocessMetrics(ClientMetrics):
    """A client's metrics as ``prometheus_client`` metric objects (multiprocess mode)."""

    def __init__(self, core: Core, families: _Families, name: str) -> None:
        self.core = core
        self.name = name
        self._f = families
        self._attached = True
        # Children by label values (without the client label): the hot path's cache, and
        # the list of series to remove at uninstrument.
        self._requests: dict[tuple[str, str], Counter] = {}
        self._durations: dict[str, Histogram] = {}
        self._attempts: dict[tuple[str, str], Counter] = {}
        self._hedges: dict[str, Counter] = {}
        self._up: dict[str, Gauge] = {}
        self._ejections: dict[tuple[str, str], Counter] = {}
        self._streams: dict[tuple[str, str], int] = {}
        self._watches_ended: dict[str, Counter] = {}
        self._resumes: dict[str, Counter] = {}
        self._lost: dict[str, Counter] = {}
        self._keepalives: dict[tuple[str, str], Counter] = {}
        self._batches: dict[str, Histogram] = {}
        self._watch_count = sum(len(s.subscribers) for s in list(core.watch_hub.streams))
        self._lease_count = len(core.keepalive)
        self._watches = families.watches.labels(name)
        self._events = families.watch_events.labels(name)
        self._kept = families.leases_kept.labels(name)
        self.restate()
        _attached.add(self)

    def restate(self) -> None:
        """Set every gauge of this client again from the observer's own counts and the
        cluster state (run in a forked child, where multiprocess mode starts them at 0)."""
        if not self._attached:
            return
        for known in list(self.core.cluster.members):
            self._set_up(known.url, known.state.value)
        self._watches.set(self._watch_count)
        self._kept.set(self._lease_count)
        for (url, kind), count in list(self._streams.items()):
            self._f.streams.labels(self.name, url, kind).set(count)

    def __repr__(self) -> str:
        state = "attached" if self._attached else "detached"
        return f"<ClientMetrics client={self.name!r} {state}>"

    def uninstrument(self) -> None:
        """Detach from the client and remove this client's series from the registry (its
        live gauges are set to 0 first, for multiprocess mode). Idempotent; never raises."""
        with _lock:
            if not self._attached:
                return
            self._attached = False
            _attached.discard(self)
            self.core.remove_observer(self)
            f = self._f
            f.clients = tuple(m for m in f.clients if m is not self)
        for child in (*self._up.values(), self._watches, self._kept):
            child.set(0)
        for member, kind in self._streams:
            f.streams.labels(self.name, member, kind).set(0)
        name = self.name
        removals: list[tuple[Counter | Gauge | Histogram, tuple[str, ...]]] = [
            *((f.requests, k) for k in self._requests),
            *((f.durations, (k,)) for k in self._durations),
            *((f.attempts, k) for k in self._attempts),
            *((f.hedges, (k,)) for k in self._hedges),
            *((f.member_up, (k,)) for k in self._up),
            *((f.ejections, k) for k in self._ejections),
            *((f.streams, k) for k in self._streams),
            *((f.watches_ended, (k,)) for k in self._watches_ended),
            *((f.watch_resumes, (k,)) for k in self._resumes),
            *((f.leases_lost, (k,)) for k in self._lost),
            *((f.keepalives, k) for k in self._keepalives),
            *((f.batch_size, (k,)) for k in self._batches),
            (f.watches, ()),
            (f.watch_events, ()),
            (f.leases_kept, ()),
        ]
        for metric, labels in removals:
            with contextlib.suppress(KeyError):  # never created
                metric.remove(name, *labels)

    # ------------------------------------------------------------------ calls
    def call_ended(self, call: CallRecord, seconds: float, error: BaseException | None) -> None:
        method = call.method
        key = (method, "ok" if error is None else outcome_of(error))
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = self._f.requests.labels(self.name, *key)
        counter.inc()
        histogram = self._durations.get(method)
        if histogram is None:
            histogram = self._durations[method] = self._f.durations.labels(self.name, method)
        histogram.observe(seconds)

    def attempt_ended(
        self, call: CallRecord, member: str, seconds: float, error: BaseException | None
    ) -> None:
        key = (member, "ok" if error is None else outcome_of(error))
        counter = self._attempts.get(key)
        if counter is None:
            counter = self._attempts[key] = self._f.attempts.labels(self.name, *key)
        counter.inc()

    def hedged(self, call: CallRecord, member: str) -> None:
        _child(self._hedges, self._f.hedges, self.name, call.method).inc()

    # ------------------------------------------------------------------ members
    def _set_up(self, member: str, state: str) -> None:
        up = 0
        if state == "healthy":
            up = 1
            for known in list(self.core.cluster.members):
                if known.url == member and known.is_learner:
                    up = 0
        _child(self._up, self._f.member_up, self.name, member).set(up)

    def member_state_changed(
        self, member: str, old: str, new: str, error: BaseException | None
    ) -> None:
        if new != "removed":
            self._set_up(member, new)
            return
        if self._up.pop(member, None) is not None:
            with contextlib.suppress(KeyError):
                self._f.member_up.remove(self.name, member)

    def member_ejected(self, member: str, reason: str) -> None:
        key = (member, reason)
        counter = self._ejections.get(key)
        if counter is None:
            counter = self._ejections[key] = self._f.ejections.labels(self.name, *key)
        counter.inc()

    # ------------------------------------------------------------------ streams
    def stream_opened(self, kind: str, member: str) -> None:
        key = (member, kind)
        count = self._streams[key] = self._streams.get(key, 0) + 1
        self._f.streams.labels(self.name, member, kind).set(count)

    def stream_closed(self, kind: str, member: str, error: BaseException | None) -> None:
        key = (member, kind)
        count = self._streams.get(key, 0)
        if count > 0:  # opened before instrument(): not counted, not uncounted
            self._streams[key] = count - 1
            self._f.streams.labels(self.name, member, kind).set(count - 1)

    # ------------------------------------------------------------------ watches
    def watch_created(self) -> None:
        self._watch_count += 1
        self._watches.set(self._watch_count)

    def watch_ended(self, reason: str) -> None:
        if self._watch_count > 0:
            self._watch_count -= 1
            self._watches.set(self._watch_count)
        _child(self._watches_ended, self._f.watches_ended, self.name, reason).inc()

    def watch_events(self, count: int) -> None:
        self._events.inc(count)

    def watch_resumed(self, member: str, from_revision: int) -> None:
        _child(self._resumes, self._f.watch_resumes, self.name, member).inc()

    # ------------------------------------------------------------------ leases
    def lease_kept(self, count: int) -> None:
        self._lease_count = max(0, self._lease_count + count)
        self._kept.set(self._lease_count)

    def keepalive_sent(self, member: str, leases: int, error: BaseException | None) -> None:
        key = (member, "ok" if error is None else outcome_of(error))
        counter = self._keepalives.get(key)
        if counter is None:
            counter = self._keepalives[key] = self._f.keepalives.labels(self.name, *key)
        counter.inc()

    def lease_lost(self, reason: str) -> None:
        _child(self._lost, self._f.leases_lost, self.name, reason).inc()

    # ------------------------------------------------------------------ batching
    def batch_sent(self, kind: str, size: int) -> None:
        _child(self._batches, self._f.batch_size, self.name, kind).observe(size)


# ---------------------------------------------------------------------- collected at scrape time
_BOUNDS = tuple(DURATION_BUCKETS)
_BATCH_BOUNDS = tuple(BATCH_BUCKETS)
_LE = (*(repr(float(b)) for b in _BOUNDS), "+Inf")  # as prometheus_client writes them
_BATCH_LE = (*(repr(float(b)) for b in _BATCH_BOUNDS), "+Inf")


class _Exposition(Collector):
    """The one collector of a (registry, prefix) outside multiprocess mode: every metric
    family, with the series of each instrumented client, built at scrape time from the
    clients' :class:`CollectedMetrics` and state. Safe from a scrape thread: it only copies
    dictionaries (atomic under the GIL) and reads plain attributes."""

    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        self.prefix = prefix
        self.clients: tuple[ClientMetrics, ...] = ()
        registry.register(self)

    def describe(self) -> Iterator[Metric]:
        return iter(_FamilySet(self.prefix).all())

    def collect(self) -> Iterator[Metric]:
        f = _FamilySet(self.prefix)
        for metrics in self.clients:
            if isinstance(metrics, CollectedMetrics):
                _add_client(f, metrics)
        return iter(f.all())


class _FamilySet:
    """Empty metric families of one scrape, one attribute each."""

    def __init__(self, prefix: str) -> None:
        def counter(name: str, *labels: str) -> CounterMetricFamily:
            return CounterMetricFamily(f"{prefix}_{name}", _HELP[name], labels=("client", *labels))

        def gauge(name: str, *labels: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{prefix}_{name}", _HELP[name], labels=("client", *labels))

        def histogram(name: str, *labels: str) -> HistogramMetricFamily:
            return HistogramMetricFamily(
                f"{prefix}_{name}", _HELP[name], labels=("client", *labels)
            )

        self.requests = counter("requests_total", "method", "outcome")
        self.durations = histogram("request_duration_seconds", "method")
        self.attempts = counter("attempts_total", "member", "result")
        self.hedges = counter("hedges_total", "method")
        self.member_up = gauge("member_up", "member")
        self.ejections = counter("member_ejections_total", "member", "reason")
        self.in_use = gauge("pool_connections_in_use", "member")
        self.most = gauge("pool_connections_max", "member")
        self.streams = gauge("open_streams", "member", "kind")
        self.watches = gauge("watches")
        self.watches_ended = counter("watches_ended_total", "reason")
        self.events = counter("watch_events_total")
        self.resumes = counter("watch_resumes_total", "member")
        self.kept = gauge("leases_kept_alive")
        self.lost = counter("leases_lost_total", "reason")
        self.keepalives = counter("keepalive_requests_total", "member", "result")
        self.batches = histogram("batch_size", "kind")

    def all(self) -> list[Metric]:
        return [
            self.requests, self.durations, self.attempts, self.hedges, self.member_up,
            self.ejections, self.in_use, self.most, self.streams, self.watches,
            self.watches_ended, self.events, self.resumes, self.kept, self.lost,
            self.keepalives, self.batches,
        ]  # fmt: skip


def _add_client(f: _FamilySet, metrics: CollectedMetrics) -> None:
    """Add the series of one client to ``f``: its counts, then its state (members up, pool
    use, watches alive, leases kept alive) unless it is closed."""
    n = metrics.name
    for key, count in list(metrics.calls.items()):
        f.requests.add_metric((n, *key), count)
    for method, counts in list(metrics.durations.items()):
        f.durations.add_metric((n, method), _cumulative(_LE, counts), counts[-1])
    for key, count in list(metrics.attempts.items()):
        f.attempts.add_metric((n, *key), count)
    for method, count in list(metrics.hedges.items()):
        f.hedges.add_metric((n, method), count)
    for key, count in list(metrics.ejections.items()):
        f.ejections.add_metric((n, *key), count)
    for key, count in list(metrics.streams.items()):
        f.streams.add_metric((n, *key), count)
    for reason, count in list(metrics.watches_ended.items()):
        f.watches_ended.add_metric((n, reason), count)
    f.events.add_metric((n,), metrics.events)
    for url, count in list(metrics.resumes.items()):
        f.resumes.add_metric((n, url), count)
    for reason, count in list(metrics.lost.items()):
        f.lost.add_metric((n, reason), count)
    for key, count in list(metrics.keepalives.items()):
        f.keepalives.add_metric((n, *key), count)
    for kind, counts in list(metrics.batches.items()):
        f.batches.add_metric((n, kind), _cumulative(_BATCH_LE, counts), counts[-1])
    core = metrics.core
    if core.closed:
        return
    for known in list(core.cluster.members):
        up = known.state.value == "healthy" and not known.is_learner
        f.member_up.add_metric((n, known.url), 1.0 if up else 0.0)
        used, size = core.transport.pool_usage(known.url)
        f.in_use.add_metric((n, known.url), used)
        f.most.add_metric((n, known.url), size)
    f.watches.add_metric((n,), sum(len(s.subscribers) for s in list(core.watch_hub.streams)))
    f.kept.add_metric((n,), len(core.keepalive))


def _cumulative(les: tuple[str, ...], counts: list[float]) -> list[tuple[str, float]]:
    """Histogram buckets in exposition form from per-bucket counts (the last item: sum)."""
    total = 0.0
    buckets = []
    for le, count in zip(les, counts, strict=False):
        total += count
        buckets.append((le, total))
    return buckets


class CollectedMetrics(ClientMetrics):
    """A client's metrics as plain counts, exposed by the registry's collector at scrape
    time (see the module docstring). The hot path: one dictionary increment per call and
    per attempt, and a ``bisect`` into the duration buckets."""

    def __init__(self, core: Core, exposition: _Exposition, name: str) -> None:
        self.core = core
        self.name = name
        self._exposition = exposition
        self._attached = True
        self.calls: dict[tuple[str, str], int] = {}
        self.durations: dict[str, list[float]] = {}  # per-bucket counts, then the sum
        self.attempts: dict[tuple[str, str], int] = {}
        self.hedges: dict[str, int] = {}
        self.ejections: dict[tuple[str, str], int] = {}
        self.streams: dict[tuple[str, str], int] = {}
        self.watches_ended: dict[str, int] = {}
        self.events = 0
        self.resumes: dict[str, int] = {}
        self.lost: dict[str, int] = {}
        self.keepalives: dict[tuple[str, str], int] = {}
        self.batches: dict[str, list[float]] = {}

    def __repr__(self) -> str:
        state = "attached" if self._attached else "detached"
        return f"<CollectedMetrics client={self.name!r} {state}>"

    def uninstrument(self) -> None:
        """Detach from the client; its series leave the exposition. Idempotent."""
        with _lock:
            if not self._attached:
                return
            self._attached = False
            self.core.remove_observer(self)
            e = self._exposition
            e.clients = tuple(m for m in e.clients if m is not self)

    # ------------------------------------------------------------------ calls
    def call_ended(self, call: CallRecord, seconds: float, error: BaseException | None) -> None:
        method = call.method
        key = (method, "ok" if error is None else outcome_of(error))
        calls = self.calls
        calls[key] = calls.get(key, 0) + 1
        counts = self.durations.get(method)
        if counts is None:
            counts = self.durations[method] = [0.0] * (len(_BOUNDS) + 2)
        counts[bisect_left(_BOUNDS, seconds)] += 1
        counts[-1] += seconds

    def attempt_ended(
        self, call: CallRecord, member: str, seconds: float, error: BaseException | None
    ) -> None:
        key = (member, "ok" if error is None else outcome_of(error))
        attempts = self.attempts
        attempts[key] = attempts.get(key, 0) + 1

    def hedged(self, call: CallRecord, member: str) -> None:
        self.hedges[call.method] = self.hedges.get(call.method, 0) + 1

    # ------------------------------------------------------------------ members
    def member_ejected(self, member: str, reason: str) -> None:
        key = (member, reason)
        self.ejections[key] = self.ejections.get(key, 0) + 1

    # ------------------------------------------------------------------ streams
    def stream_opened(self, kind: str, member: str) -> None:
        key = (member, kind)
        self.streams[key] = self.streams.get(key, 0) + 1

    def stream_closed(self, kind: str, member: str, error: BaseException | None) -> None:
        key = (member, kind)
        count = self.streams.get(key, 0)
        if count > 0:  # opened before instrument(): not counted, not uncounted
            self.streams[key] = count - 1

    # ------------------------------------------------------------------ watches
    def watch_ended(self, reason: str) -> None:
        self.watches_ended[reason] = self.watches_ended.get(reason, 0) + 1

    def watch_events(self, count: int) -> None:
        self.events += count

    def watch_resumed(self, member: str, from_revision: int) -> None:
        self.resumes[member] = self.resumes.get(member, 0) + 1

    # ------------------------------------------------------------------ leases
    def keepalive_sent(self, member: str, leases: int, error: BaseException | None) -> None:
        key = (member, "ok" if error is None else outcome_of(error))
        self.keepalives[key] = self.keepalives.get(key, 0) + 1

    def lease_lost(self, reason: str) -> None:
        self.lost[reason] = self.lost.get(reason, 0) + 1

    # ------------------------------------------------------------------ batching
    def batch_sent(self, kind: str, size: int) -> None:
        counts = self.batches.get(kind)
        if counts is None:
            counts = self.batches[kind] = [0.0] * (len(_BATCH_BOUNDS) + 2)
        counts[bisect_left(_BATCH_BOUNDS, size)] += 1
        counts[-1] += size


def _child(cache: dict[str, M], metric: M, client: str, value: str) -> M:
    child = cache.get(value)
    if child is None:
        child = cache[value] = metric.labels(client, value)
    return child
