"""Load-test etcd with locust: :class:`EtcdUser` and its reporting client.

    from locust import task
    from geetcd.locust import EtcdUser

    class KV(EtcdUser):
        @task
        def put_get(self) -> None:
            self.client.put("k", "v")           # one locust request: type "put", name "put"
            self.client.get("k", name="get k")  # type "get", name "get k"

Run it with ``locust -f file.py --host http://127.0.0.1:2379[,http://...]``. Every call on
``self.client`` fires exactly one locust ``request`` event, with the keywords locust's own
HTTP users give, so listeners written for them (CSV/JSON writers, exporters such as
locust-plugins' timescale listener) work unchanged:

- ``request_type``: the operation (``"get"``, ``"put"``, ...); ``name``: the ``name=``
  keyword, else the operation;
- ``start_time``: ``time.time()`` when the call started; ``response_time``: its duration
  in milliseconds;
- ``url``: the client URL of the member that answered (see :meth:`LocustEtcdClient.call`);
- ``response_length``: bytes of values read plus values written;
- ``context``: the user's :meth:`locust.User.context` (``{}`` by default);
- ``exception``: the error, or None; ``response``: None (there is no HTTP response object).

The call then returns the result or re-raises the error: a failed call is counted by
locust *and* seen by the task. Watch deliveries are reported too (request type
``"watch"``, their put-to-delivery latency) when the writer stamps its values with
:func:`stamp_value`.

Importing this module imports locust, which monkey-patches the process (``gevent.monkey``):
the geetcd core never imports it. Under the ``locust`` command the patching happens before
the locustfile is loaded. When locust is used as a library, ``import locust`` before anything
that imports urllib3 or ssl (geetcd included).

Each user builds its own :class:`geetcd.Client` in ``__init__`` (after ``--processes``
forked, never at import) and closes it in ``on_stop``; subclasses that override ``on_stop``
must call ``super().on_stop()``. ``geetcd-bench``'s statistics (precise percentiles,
progress lines) are collected by :mod:`geetcd.bench.collector`, not here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

from locust import User
from locust.env import Environment
from locust.exception import StopTest

import geetcd
from geetcd.bench.histogram import LatencyHistogram
from geetcd.models import Event, EventType, Header, KeyValue, RangeResponse, TxnResponse
from geetcd.txn import TxnOp
from geetcd.watch import Watch

__all__ = [
    "OPERATIONS",
    "EtcdUser",
    "LatencyHistogram",
    "LocustEtcdClient",
    "WATCH",
    "WatchReporter",
    "is_coordinator",
    "parsed_options",
    "read_stamp",
    "stamp_value",
]

log = logging.getLogger(__name__)

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


# ---------------------------------------------------------------------------------------------
# the table of operations


def _length(value: object) -> int:
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, str):
        return len(value.encode())
    return 0


def _arg(position: int, keyword: str) -> Callable[[tuple[Any, ...], dict[str, Any]], int]:
    """Bytes of the argument at ``position`` (or given as ``keyword``)."""

    def sent(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
        if len(args) > position:
            return _length(args[position])
        return _length(kwargs.get(keyword))

    return sent


def _ops_length(ops: object) -> int:
    if not isinstance(ops, Sequence):
        return 0
    return sum(_length(getattr(op, "value", None)) for op in ops if isinstance(op, TxnOp))


def _txn_sent(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    success = args[1] if len(args) > 1 else kwargs.get("success", ())
    failure = args[2] if len(args) > 2 else kwargs.get("failure", ())
    return max(_ops_length(success), _ops_length(failure))


def _nothing(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    return 0


OPERATIONS: Mapping[str, Callable[[tuple[Any, ...], dict[str, Any]], int]] = {
    "put": _arg(1, "value"),
    "put_if_absent": _arg(1, "value"),
    "replace": _arg(2, "new"),
    "txn": _txn_sent,
}
"""How many bytes a call writes, by :class:`geetcd.Client` method, from its arguments.

Every public method of the client is reported the same way (see :class:`LocustEtcdClient`);
this table only says which ones carry values to the server (the request's response length
counts them, plus the bytes of values in the result). Methods not listed write none.
"""

_NOT_REPORTED = frozenset({"close", "spawn", "sync_members"})


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


def _header_of(result: object) -> Header | None:
    header = getattr(result, "header", None)
    return header if isinstance(header, Header) else None


class WatchReporter:
    """A watch whose deliveries are reported to locust; made by :meth:`LocustEtcdClient.watch`.

    A greenlet of the client iterates the watch. Every PUT event whose value carries a stamp
    (:func:`stamp_value`) fires one request event of type ``"watch"`` whose response time is
    the put-to-delivery latency (``start_time``: the stamp; ``url``: the member serving the
    watch's stream, :attr:`geetcd.watch.Watch.member`). Other events (deletes, values
    without a stamp) are counted in ``unstamped`` and not reported. ``on_event`` (if given)
    sees every event, after it was reported, in the reader greenlet. If the watch raises (or
    ``on_event`` does), the error is reported once as a failed ``"watch"`` request, logged,
    kept in ``error``, and the reporter ends.
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
            self._client.report(
                WATCH,
                self.name,
                latency_ms,
                len(event.kv.value),
                start_time=stamp,
                url=self.watch.member,
            )
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

    Every public method of :class:`geetcd.Client` is available here with the same arguments
    plus ``name=`` (the label in locust's statistics; default: the method's name). A call
    fires one ``request`` event (the keywords of the module docstring; the bytes written
    come from :data:`OPERATIONS`) and returns the geetcd result or re-raises its error
    (``Exception`` subclasses; ``gevent.Timeout`` and ``GreenletExit`` pass through
    unreported). Three methods behave differently: :meth:`iter_prefix` (one event when the
    iteration ends), :meth:`watch` and :meth:`watch_prefix` (one event per delivery).
    ``close``, ``spawn`` and ``sync_members`` are not reported. Attributes that are not
    methods (``endpoints``, ``closed``...) are the client's. ``raw`` is the wrapped client,
    for calls that must not be reported. ``context`` (a callable returning a dict; default
    ``{}``) gives each event's ``context``.
    """

    def __init__(
        self,
        client: geetcd.Client,
        environment: Environment,
        context: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.raw = client
        self.environment = environment
        self._fire: Callable[..., Any] = environment.events.request.fire
        self._context = context
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
        *,
        start_time: float | None = None,
        url: str | None = None,
    ) -> None:
        """Fire one locust request event (for custom measurements such as CAS conflicts).

        ``response_time`` is in milliseconds; ``start_time`` defaults to now minus it, and
        ``url`` (when None) to the client's endpoints, sorted and joined by commas. Never
        raises unless a locust listener does (or the ``context`` callable).
        """
        self._fire(
            request_type=request_type,
            name=name,
            start_time=time.time() - response_time / 1000.0 if start_time is None else start_time,
            response_time=response_time,
            response_length=response_length,
            response=None,
            context=self._context() if self._context is not None else {},
            exception=exception,
            url=",".join(sorted(self.raw.endpoints)) if url is None else url,
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

        ``url`` is the member that answered: the one member whose count of successful calls
        (``Member.ok_count`` in :attr:`geetcd.Client.cluster_state`) grew during the call,
        or, if several did (a watch or keepalive of the same client answered meanwhile),
        the one whose id is in the result's header; for a failure, the member whose
        ``last_error`` changed. When none can be told, the client's endpoints, sorted and
        joined by commas.
        """
        label = request_type if name is None else name
        members = self.raw.cluster_state.members
        before = [(m, m.ok_count, m.last_error) for m in members]
        started, start = time.time(), time.perf_counter()
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            elapsed = (time.perf_counter() - start) * 1000.0
            failed = [m.url for m, _, error in before if m.last_error is not error]
            where = failed[0] if len(failed) == 1 else None
            self.report(request_type, label, elapsed, sent, exc, start_time=started, url=where)
            raise
        elapsed = (time.perf_counter() - start) * 1000.0
        answered = [m for m, ok, _ in before if m.ok_count != ok]
        url: str | None = None
        if len(answered) == 1:
            url = answered[0].url
        elif answered:
            header = _header_of(result)
            same = [m for m in answered if header is not None and m.id == header.member_id]
            url = (same or answered)[0].url
        length = sent + _values_length(result)
        self.report(request_type, label, elapsed, length, start_time=started, url=url)
        return result

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        target = getattr(self.raw, attr)
        if not callable(target) or attr in _NOT_REPORTED:
            return target
        written = OPERATIONS.get(attr, _nothing)

        def reported(*args: Any, name: str | None = None, **kwargs: Any) -> Any:
            return self.call(attr, name, target, *args, sent=written(args, kwargs), **kwargs)

        reported.__name__ = attr
        reported.__doc__ = f"geetcd.Client.{attr}, reported to locust as {attr!r}."
        setattr(self, attr, reported)  # found in the instance from now on
        return reported

    def iter_prefix(
        self, prefix: str | bytes, *, name: str | None = None, **options: Any
    ) -> Iterator[KeyValue]:
        """:meth:`geetcd.Client.iter_prefix`, reported once as ``"iter_prefix"`` when the
        iteration ends (its time covers every page; an error is reported and re-raised). An
        iteration the caller abandons early is not reported."""
        label = "iter_prefix" if name is None else name
        started, start = time.time(), time.perf_counter()
        length = 0
        try:
            for kv in self.raw.iter_prefix(prefix, **options):
                length += len(kv.value)
                yield kv
        except Exception as exc:
            elapsed = (time.perf_counter() - start) * 1000.0
            self.report("iter_prefix", label, elapsed, length, exc, start_time=started)
            raise
        elapsed = (time.perf_counter() - start) * 1000.0
        self.report("iter_prefix", label, elapsed, length, start_time=started)

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
    :meth:`on_stop`. Each request event's ``context`` is :meth:`context` (override it to tag
    requests, as with locust's HTTP users). Raises locust's ``StopTest`` when no host is
    given.
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
        client = geetcd.Client(host, **self.client_kwargs())
        self.client = LocustEtcdClient(client, environment, context=self.context)

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :class:`geetcd.Client` (default: ``client_options``, with
        ``batch_reads=False`` unless it says otherwise: one locust request is then one etcd
        request, so the report measures etcd, not the batcher; a scenario that wants the
        batcher sets ``client_options = {"batch_reads": True}``).

        Called once from ``__init__``; override it to derive options from locust's parsed
        command line (``self.environment.parsed_options``).
        """
        return {"batch_reads": False, **self.client_options}

    def on_stop(self) -> None:
        """Close the client (cancels its watches, kills its greenlets). Never raises."""
        self.client.close()
