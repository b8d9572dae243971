"""Load-test etcd with locust: :class:`EtcdUser` and its reporting client.

    from locust import task
    from geetcd.locust import EtcdUser

    class KV(EtcdUser):
        @task
        def put_get(self) -> None:
            self.client.put("k", "v")           # one locust request: type "put", name "put"
            self.client.get("k", name="get k")  # type "get", name "get k"

Run it with ``locust -f file.py --host http://127.0.0.1:2379[,http://...]``. Every call on
``self.client`` fires exactly one locust ``request`` event (``request_type`` is the operation,
``name`` the ``name=`` keyword or else the operation, ``response_time`` in milliseconds,
``response_length`` the bytes of values read plus values written, ``exception`` the error or
None) and then returns the result or re-raises the error: a failed call is counted by locust
*and* seen by the task. Watch deliveries are reported too (request type ``"watch"``, their
put-to-delivery latency) when the writer stamps its values with :func:`stamp_value`.

Importing this module imports locust, which monkey-patches the process (``gevent.monkey``):
the geetcd core never imports it. Under the ``locust`` command the patching happens before
the locustfile is loaded. When locust is used as a library, ``import locust`` before anything
that imports urllib3 or ssl (geetcd included).

Each user builds its own :class:`geetcd.Client` in ``__init__`` (after ``--processes``
forked, never at import) and closes it in ``on_stop``; subclasses that override ``on_stop``
must call ``super().on_stop()``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import gevent
from locust import User, events
from locust.env import Environment
from locust.exception import StopTest

import geetcd
from geetcd.lease import Lease
from geetcd.models import (
    DeleteResponse,
    Event,
    EventType,
    Header,
    KeyValue,
    LeaseInfo,
    MemberList,
    PutResponse,
    RangeResponse,
    Status,
    TxnResponse,
)
from geetcd.txn import Comparison, TxnOp
from geetcd.watch import Watch

__all__ = [
    "BENCH_REPORT_ENV",
    "EtcdUser",
    "LatencyHistogram",
    "LocustEtcdClient",
    "PROGRESS_MARK",
    "WATCH",
    "WatchReporter",
    "is_coordinator",
    "parsed_options",
    "read_stamp",
    "stamp_value",
]

log = logging.getLogger("geetcd.locust")

WATCH = "watch"
"""The request type of reported watch deliveries."""

_STAMP_HEAD = b"ts="
_STAMP_END = b";"


def stamp_value(size: int = 0, *, now: float | None = None) -> bytes:
    """A value that carries the wall-clock time it was made, padded with ``x`` to ``size`` bytes.

    The layout is ``ts=<time.time() with 6 decimals>;xxxx...``; the value is never shorter
    than the stamp itself (about 21 bytes). Watchers turn it back into a delivery latency
    with :func:`read_stamp` (writer and watcher share the machine's clock).
    """
    stamp = b"%s%.6f%s" % (_STAMP_HEAD, time.time() if now is None else now, _STAMP_END)
    return stamp + b"x" * max(0, size - len(stamp))


def read_stamp(value: bytes) -> float | None:
    """The time stamped into ``value`` by :func:`stamp_value`, or None if it carries none."""
    if not value.startswith(_STAMP_HEAD):
        return None
    end = value.find(_STAMP_END, len(_STAMP_HEAD))
    if end < 0:
        return None
    try:
        return float(value[len(_STAMP_HEAD) : end])
    except ValueError:
        return None


def parsed_options(environment: Environment) -> Any:
    """locust's parsed command line (custom options included); RuntimeError when absent.

    It is absent only when locust runs as a library without options.
    """
    options = environment.parsed_options
    if options is None:
        raise RuntimeError("no parsed options: run this locustfile with the locust command")
    return options


def is_coordinator(environment: Environment) -> bool:
    """True in the process that runs a test once: the local runner or the master.

    False on workers (``--processes``, ``--worker``), where per-test setup must not run again.
    """
    from locust.runners import WorkerRunner

    return not isinstance(environment.runner, WorkerRunner)


def _values_length(result: object) -> int:
    """Bytes of values carried by a result (reads); 0 for results without values."""
    if isinstance(result, KeyValue):
        return len(result.value)
    if isinstance(result, RangeResponse):
        return sum(len(kv.value) for kv in result.kvs)
    if isinstance(result, TxnResponse):
        return sum(_values_length(r) for r in result.responses)
    if isinstance(result, (list, tuple)):
        return sum(len(kv.value) for kv in result if isinstance(kv, KeyValue))
    return 0


def _ops_length(ops: Sequence[TxnOp]) -> int:
    total = 0
    for op in ops:
        value = getattr(op, "value", None)
        if isinstance(value, bytes):
            total += len(value)
    return total


def _sent_length(value: str | bytes) -> int:
    return len(value.encode() if isinstance(value, str) else value)


class WatchReporter:
    """A watch whose deliveries are reported to locust; made by :meth:`LocustEtcdClient.watch`.

    A greenlet of the client iterates the watch. Every PUT event whose value carries a stamp
    (:func:`stamp_value`) fires one request event of type ``"watch"`` whose response time is
    the put-to-delivery latency. Other events (deletes, values without a stamp) are counted in
    ``unstamped`` and not reported. ``on_event`` (if given) sees every event, after it was
    reported, in the reader greenlet. If the watch raises (or ``on_event`` does), the error
    is reported once as a failed ``"watch"`` request, logged, kept in ``error``, and the
    reporter ends.
    """

    def __init__(
        self,
        client: LocustEtcdClient,
        watch: Watch,
        name: str,
        on_event: Callable[[Event], None] | None,
    ) -> None:
        self.watch = watch
        self.name = name
        self.delivered = 0
        self.unstamped = 0
        self.error: Exception | None = None
        self._client = client
        self._on_event = on_event
        self._greenlet = client.raw.spawn(self._run)

    def __repr__(self) -> str:
        state = "ended" if self._greenlet.dead else "running"
        return (
            f"<WatchReporter {self.name!r} delivered={self.delivered} "
            f"unstamped={self.unstamped} {state}>"
        )

    def _run(self) -> None:
        try:
            for event in self.watch:
                self._deliver(event)
        except Exception as exc:  # noqa: BLE001 - reported to locust, logged, kept in .error
            self.error = exc
            self._client.report(WATCH, self.name, 0.0, exception=exc)
            log.warning("watch %r ended with %s: %s", self.name, type(exc).__name__, exc)

    def _deliver(self, event: Event) -> None:
        now = time.time()
        stamp = read_stamp(event.kv.value) if event.type is EventType.PUT else None
        if stamp is None:
            self.unstamped += 1
        else:
            self.delivered += 1
            latency_ms = max(0.0, (now - stamp) * 1000.0)
            self._client.report(WATCH, self.name, latency_ms, len(event.kv.value))
        if self._on_event is not None:
            self._on_event(event)

    def cancel(self) -> None:
        """Cancel the watch and end the reader greenlet; waits at most 5 s. Never raises."""
        try:
            self.watch.cancel()
        except Exception:
            log.exception("cancelling watch %r failed; killing its reader", self.name)
        self._greenlet.kill(block=True, timeout=5.0)


class LocustEtcdClient:
    """A :class:`geetcd.Client` wrapper that reports every call to locust (``EtcdUser.client``).

    Each method takes the arguments of the geetcd method of the same name plus ``name=``
    (the label shown in locust's statistics; default: the operation), fires one ``request``
    event and returns the geetcd result or re-raises its error (``Exception`` subclasses;
    ``gevent.Timeout`` and ``GreenletExit`` pass through unreported). Methods of
    :class:`geetcd.Client` that have no wrapper here (``leases``, ``watch_once``,
    ``session``, later additions...) are reached through attribute access and reported the
    same way, with the method's name as the request type. ``raw`` is the wrapped client, for
    calls that must not be reported.
    """

    def __init__(self, client: geetcd.Client, environment: Environment) -> None:
        self.raw = client
        self.environment = environment
        self._fire: Callable[..., Any] = environment.events.request.fire
        self._watches: list[WatchReporter] = []

    def __repr__(self) -> str:
        return f"<LocustEtcdClient {self.raw!r}>"

    # ------------------------------------------------------------------ reporting
    def report(
        self,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int = 0,
        exception: BaseException | None = None,
    ) -> None:
        """Fire one locust request event (for custom measurements such as CAS conflicts).

        ``response_time`` is in milliseconds. Never raises unless a locust listener does.
        """
        self._fire(
            request_type=request_type,
            name=name,
            response_time=response_time,
            response_length=response_length,
            exception=exception,
            context={},
        )

    def call(
        self,
        request_type: str,
        name: str | None,
        func: Callable[..., Any],
        *args: Any,
        sent: int = 0,
        **kwargs: Any,
    ) -> Any:
        """Run ``func(*args, **kwargs)``, report it as one request and return its result.

        The response length is ``sent`` plus the bytes of values in the result. An
        ``Exception`` is reported as the request's failure and re-raised unchanged.
        """
        label = request_type if name is None else name
        start = time.perf_counter()
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            self.report(request_type, label, (time.perf_counter() - start) * 1000.0, sent, exc)
            raise
        elapsed = (time.perf_counter() - start) * 1000.0
        self.report(request_type, label, elapsed, sent + _values_length(result))
        return result

    def __getattr__(self, attr: str) -> Callable[..., Any]:
        if attr.startswith("_"):
            raise AttributeError(attr)
        target = getattr(self.raw, attr)
        if not callable(target):
            return target  # type: ignore[no-any-return]

        def reported(*args: Any, name: str | None = None, **kwargs: Any) -> Any:
            return self.call(attr, name, target, *args, **kwargs)

        reported.__name__ = attr
        reported.__doc__ = getattr(target, "__doc__", None)
        return reported

    # ------------------------------------------------------------------ KV
    def get(self, key: str | bytes, *, name: str | None = None, **options: Any) -> KeyValue | None:
        """:meth:`geetcd.Client.get`, reported as ``"get"``."""
        result: KeyValue | None = self.call("get", name, self.raw.get, key, **options)
        return result

    def range(
        self,
        key: str | bytes,
        range_end: str | bytes | None = None,
        *,
        name: str | None = None,
        **options: Any,
    ) -> RangeResponse:
        """:meth:`geetcd.Client.range`, reported as ``"range"``."""
        result: RangeResponse = self.call("range", name, self.raw.range, key, range_end, **options)
        return result

    def get_prefix(
        self, prefix: str | bytes, *, name: str | None = None, **options: Any
    ) -> list[KeyValue]:
        """:meth:`geetcd.Client.get_prefix`, reported as ``"get_prefix"``."""
        result: list[KeyValue] = self.call(
            "get_prefix", name, self.raw.get_prefix, prefix, **options
        )
        return result

    def put(
        self, key: str | bytes, value: str | bytes, *, name: str | None = None, **options: Any
    ) -> PutResponse:
        """:meth:`geetcd.Client.put`, reported as ``"put"`` (length: the value's bytes)."""
        result: PutResponse = self.call(
            "put", name, self.raw.put, key, value, sent=_sent_length(value), **options
        )
        return result

    def delete(
        self, key: str | bytes, *, name: str | None = None, **options: Any
    ) -> DeleteResponse:
        """:meth:`geetcd.Client.delete`, reported as ``"delete"``."""
        result: DeleteResponse = self.call("delete", name, self.raw.delete, key, **options)
        return result

    def delete_prefix(
        self, prefix: str | bytes, *, name: str | None = None, **options: Any
    ) -> DeleteResponse:
        """:meth:`geetcd.Client.delete_prefix`, reported as ``"delete_prefix"``."""
        result: DeleteResponse = self.call(
            "delete_prefix", name, self.raw.delete_prefix, prefix, **options
        )
        return result

    def txn(
        self,
        compare: Sequence[Comparison] = (),
        success: Sequence[TxnOp] = (),
        failure: Sequence[TxnOp] = (),
        *,
        name: str | None = None,
        **options: Any,
    ) -> TxnResponse:
        """:meth:`geetcd.Client.txn`, reported as ``"txn"`` (a failed compare is a success)."""
        sent = max(_ops_length(success), _ops_length(failure))
        result: TxnResponse = self.call(
            "txn", name, self.raw.txn, compare, success, failure, sent=sent, **options
        )
        return result

    def put_if_absent(
        self, key: str | bytes, value: str | bytes, *, name: str | None = None, **options: Any
    ) -> bool:
        """:meth:`geetcd.Client.put_if_absent`, reported as ``"put_if_absent"``."""
        result: bool = self.call(
            "put_if_absent",
            name,
            self.raw.put_if_absent,
            key,
            value,
            sent=_sent_length(value),
            **options,
        )
        return result

    def replace(
        self,
        key: str | bytes,
        old: str | bytes,
        new: str | bytes,
        *,
        name: str | None = None,
        **options: Any,
    ) -> bool:
        """:meth:`geetcd.Client.replace`, reported as ``"replace"``."""
        result: bool = self.call(
            "replace", name, self.raw.replace, key, old, new, sent=_sent_length(new), **options
        )
        return result

    def iter_prefix(
        self, prefix: str | bytes, *, name: str | None = None, **options: Any
    ) -> Iterator[KeyValue]:
        """:meth:`geetcd.Client.iter_prefix`, reported once as ``"iter_prefix"`` when the
        iteration ends (its time covers every page; an error is reported and re-raised). An
        iteration the caller abandons early is not reported."""
        label = "iter_prefix" if name is None else name
        start = time.perf_counter()
        length = 0
        try:
            for kv in self.raw.iter_prefix(prefix, **options):
                length += len(kv.value)
                yield kv
        except Exception as exc:
            self.report("iter_prefix", label, (time.perf_counter() - start) * 1000.0, length, exc)
            raise
        self.report("iter_prefix", label, (time.perf_counter() - start) * 1000.0, length)

    def compact(self, revision: int, *, name: str | None = None, **options: Any) -> Header:
        """:meth:`geetcd.Client.compact`, reported as ``"compact"``."""
        result: Header = self.call("compact", name, self.raw.compact, revision, **options)
        return result

    def lease(self, ttl: int, *, name: str | None = None, **options: Any) -> Lease:
        """:meth:`geetcd.Client.lease` (the grant), reported as ``"lease"``; keepalives that
        follow (``keepalive=True``) are not reported."""
        result: Lease = self.call("lease", name, self.raw.lease, ttl, **options)
        return result

    def revoke_lease(self, lease: object, *, name: str | None = None, **options: Any) -> None:
        """:meth:`geetcd.Client.revoke_lease`, reported as ``"revoke_lease"``."""
        self.call("revoke_lease", name, self.raw.revoke_lease, lease, **options)

    def lease_time_to_live(
        self, lease: object, keys: bool = False, *, name: str | None = None, **options: Any
    ) -> LeaseInfo:
        """:meth:`geetcd.Client.lease_time_to_live`, reported as ``"lease_time_to_live"``."""
        result: LeaseInfo = self.call(
            "lease_time_to_live", name, self.raw.lease_time_to_live, lease, keys, **options
        )
        return result

    def status(self, *, name: str | None = None, **options: Any) -> Status:
        """:meth:`geetcd.Client.status`, reported as ``"status"``."""
        result: Status = self.call("status", name, self.raw.status, **options)
        return result

    def member_list(self, *, name: str | None = None, **options: Any) -> MemberList:
        """:meth:`geetcd.Client.member_list`, reported as ``"member_list"``."""
        result: MemberList = self.call("member_list", name, self.raw.member_list, **options)
        return result

    # ------------------------------------------------------------------ watch
    def watch(
        self,
        key: str | bytes,
        *,
        name: str | None = None,
        on_event: Callable[[Event], None] | None = None,
        **options: Any,
    ) -> WatchReporter:
        """Open ``geetcd.Client.watch(key, **options)`` and report its deliveries.

        Opening is reported as request type ``"watch_open"``; each stamped delivery as
        ``"watch"`` (see :class:`WatchReporter`), both under ``name`` (default ``"watch"``).
        The watch is cancelled by :meth:`close` (``EtcdUser.on_stop``).
        """
        label = WATCH if name is None else name
        handle: Watch = self.call("watch_open", label, self.raw.watch, key, **options)
        reporter = WatchReporter(self, handle, label, on_event)
        self._watches.append(reporter)
        return reporter

    def watch_prefix(
        self,
        prefix: str | bytes,
        *,
        name: str | None = None,
        on_event: Callable[[Event], None] | None = None,
        **options: Any,
    ) -> WatchReporter:
        """:meth:`watch` of every key starting with ``prefix``."""
        return self.watch(prefix, name=name, on_event=on_event, prefix=True, **options)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Cancel the watches opened here, then close the geetcd client. Never raises."""
        watches, self._watches = self._watches, []
        for reporter in watches:
            reporter.cancel()
        self.raw.close()


class EtcdUser(User):
    """An abstract locust user with ``self.client``, a :class:`LocustEtcdClient`.

    Endpoints come from the user's ``host`` (locust's ``--host``): one URL or several,
    comma-separated. ``client_options`` are passed to :class:`geetcd.Client` (for example
    ``{"namespace": "/bench/", "timeout": 5.0}``), or override :meth:`client_kwargs`. The
    client is built in ``__init__`` (no I/O until the first call) and closed in
    :meth:`on_stop`. Raises locust's ``StopTest`` when no host is given.
    """

    abstract = True
    client_options: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        host = self.host or environment.host
        if not host:
            raise StopTest(
                "EtcdUser needs etcd endpoints: pass --host http://127.0.0.1:2379 (several "
                "members comma-separated) or set the host attribute of the User class."
            )
        self.client = LocustEtcdClient(geetcd.Client(host, **self.client_kwargs()), environment)

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :class:`geetcd.Client` (default: ``client_options``).

        Called once from ``__init__``; override it to derive options from locust's parsed
        command line (``self.environment.parsed_options``).
        """
        return dict(self.client_options)

    def on_stop(self) -> None:
        """Close the client (cancels its watches, kills its greenlets). Never raises."""
        self.client.close()


# ---------------------------------------------------------------------------------------------
# Precise latencies and live progress for geetcd-bench

BENCH_REPORT_ENV = "GEETCD_BENCH_REPORT"
"""When set (to a file path) in a locust process that imported this module, the coordinator
prints a progress line every 2 s and writes a report with precise percentiles at the end."""

PROGRESS_MARK = "geetcd-bench-progress "
"""Prefix of the progress lines (followed by one JSON object) printed to stdout."""

_PROGRESS_INTERVAL = 2.0
_TOTAL = ("", "Aggregated")  # the key of all requests together, as in locust's statistics
_BUCKETS_PER_E = 100  # bucket width: 1 % of the value (locust rounds to whole ms below 100 ms)


class LatencyHistogram:
    """Response times in logarithmic buckets 1 % wide, mergeable across processes.

    ``add(ms)`` counts one sample; ``percentile(q)`` (``q`` in 0..1) returns a value within
    about 0.5 % of the true one (0.0 when empty). ``to_json`` / ``merge_json`` carry it
    between locust workers and the master.
    """

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.count = 0
        self.max = 0.0

    def add(self, ms: float) -> None:
        """Count one sample of ``ms`` milliseconds (values below 1 µs count as 1 µs)."""
        self.buckets[round(math.log(max(ms, 0.001)) * _BUCKETS_PER_E)] += 1
        self.count += 1
        self.max = max(self.max, ms)

    def percentile(self, q: float) -> float:
        """The smallest bucket value with at least ``q`` of the samples at or below it."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return min(math.exp(index / _BUCKETS_PER_E), self.max)
        return self.max

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form for :meth:`merge_json`."""
        return {"b": {str(k): v for k, v in self.buckets.items()}, "n": self.count, "m": self.max}

    def merge(self, other: LatencyHistogram) -> None:
        """Add the samples of ``other``."""
        self.buckets.update(other.buckets)
        self.count += other.count
        self.max = max(self.max, other.max)

    def merge_json(self, data: Mapping[str, Any]) -> None:
        """Add the samples of another histogram's :meth:`to_json`."""
        for key, value in data["b"].items():
            self.buckets[int(key)] += int(value)
        self.count += int(data["n"])
        self.max = max(self.max, float(data["m"]))


class _BenchReporter:
    """Collects every request in :class:`LatencyHistogram` s; on the coordinator prints progress
    and writes the report (see :data:`BENCH_REPORT_ENV`). Workers ship their histograms to
    the master with locust's own worker reports."""

    def __init__(self, environment: Environment, path: str) -> None:
        self.environment = environment
        self.path = path
        self.histograms: dict[tuple[str, str], LatencyHistogram] = {}
        self.started = time.time()
        self.progress: gevent.Greenlet[[], None] | None = None
        hooks: Any = environment.events  # locust's EventHook.add_listener is untyped
        hooks.request.add_listener(self.on_request)
        hooks.report_to_master.add_listener(self.on_report_to_master)
        hooks.worker_report.add_listener(self.on_worker_report)
        hooks.test_start.add_listener(self.on_test_start)
        hooks.test_stop.add_listener(self.on_test_stop)
        hooks.quitting.add_listener(self.on_quitting)

    def _histogram(self, key: tuple[str, str]) -> LatencyHistogram:
        histogram = self.histograms.get(key)
        if histogram is None:
            histogram = self.histograms[key] = LatencyHistogram()
        return histogram

    def on_request(self, request_type: str, name: str, response_time: float, **_: Any) -> None:
        if response_time is not None:
            self._histogram((request_type, name)).add(float(response_time))

    def on_report_to_master(self, client_id: str, data: dict[str, Any]) -> None:
        data["geetcd_latency"] = [[t, n, h.to_json()] for (t, n), h in self.histograms.items()]
        self.histograms = {}

    def on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        for request_type, name, histogram in data.get("geetcd_latency", ()):
            self._histogram((request_type, name)).merge_json(histogram)

    def on_test_start(self, environment: Environment, **_: Any) -> None:
        self.histograms = {}
        self.started = time.time()
        if is_coordinator(environment) and self.progress is None:
            self.progress = gevent.spawn(self._print_progress)

    def on_test_stop(self, environment: Environment, **_: Any) -> None:
        if self.progress is not None:
            self.progress.kill(block=False)
            self.progress = None

    def _print_progress(self) -> None:
        while True:
            gevent.sleep(_PROGRESS_INTERVAL)
            total = self.environment.stats.total
            runner = self.environment.runner
            line = {
                "elapsed": round(time.time() - self.started, 1),
                "users": runner.user_count if runner is not None else 0,
                "requests": total.num_requests,
                "failures": total.num_failures,
                "rps": round(total.current_rps, 1),
                "fail_per_s": round(total.current_fail_per_sec, 1),
                "p50": total.get_current_response_time_percentile(0.5),
                "p99": total.get_current_response_time_percentile(0.99),
            }
            print(PROGRESS_MARK + json.dumps(line), flush=True)

    def on_quitting(self, environment: Environment, **_: Any) -> None:
        if not is_coordinator(environment):
            return
        total = LatencyHistogram()
        for histogram in self.histograms.values():
            total.merge(histogram)
        latency = [
            {
                "type": request_type,
                "name": name,
                "count": h.count,
                "p50": h.percentile(0.5),
                "p90": h.percentile(0.9),
                "p99": h.percentile(0.99),
                "p999": h.percentile(0.999),
                "max": h.max,
            }
            for (request_type, name), h in [*sorted(self.histograms.items()), (_TOTAL, total)]
        ]
        found = sorted(environment.stats.errors.values(), key=lambda e: -e.occurrences)
        errors = [
            {"type": e.method, "name": e.name, "error": str(e.error), "occurrences": e.occurrences}
            for e in found
        ]
        report = {"latency_ms": latency, "errors": errors}
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(self.path, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)


def _install_bench_reporter(environment: Environment, **_: Any) -> None:
    path = os.environ.get(BENCH_REPORT_ENV)
    if path:
        _BenchReporter(environment, path)


_events: Any = events
_events.init.add_listener(_install_bench_reporter)
