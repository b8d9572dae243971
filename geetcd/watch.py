"""Watches: the :class:`Watch` handle a caller holds, and :class:`Watcher`, the watch API on
a core (``client.watch`` is ``Watcher.watch``: the client is a Watcher).

A watch is a subscription to a server stream run by the client's
:class:`~geetcd.watch_hub.WatchHub`. Guarantees:

* ``client.watch()`` returns once the server acknowledged the watch (``created``): every
  change committed after it returns is delivered.
* Changes arrive in revision order, each exactly once, also across member failures (the hub
  resumes from the last fully delivered revision + 1 on another member).
* The events of one revision (a txn) are delivered together (:meth:`Watch.responses`).
* Identical watches without ``start_revision`` share one server stream; each subscriber has
  a bounded buffer (``buffer`` events). A subscriber that falls behind receives everything
  buffered, then :class:`~geetcd.errors.WatchOverflow` with ``last_revision``: watch again
  with ``start_revision=last_revision + 1`` to continue without a gap.
* A compacted start/resume revision ends the watch with
  :class:`~geetcd.errors.WatchCompacted`; a server cancel with
  :class:`~geetcd.errors.PermissionDenied` or :class:`~geetcd.errors.WatchCanceled`.
  Errors are raised by the iterator (after the buffered events), passed to ``on_error`` in
  callback form, and kept in :attr:`Watch.error`. Nothing ends silently.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import gevent
from gevent.hub import Waiter

from geetcd.config import check_duration
from geetcd.core import Core
from geetcd.errors import (
    ClientClosed,
    DeadlineExceeded,
    EtcdError,
    InvalidArgument,
    WatchCanceled,
    WatchCompacted,
    WatchError,
    WatchOverflow,
)
from geetcd.feature import Feature, HasCore, core_of
from geetcd.liveness import DEFAULT_LIVENESS
from geetcd.models import Event
from geetcd.protocol.kv import check_bool, check_int
from geetcd.protocol.watch import WatchBatch, WatchFilter, normalize_filters
from geetcd.watch_hub import ServerStream, WatchHub, WatchSpec

__all__ = [
    "DEFAULT_BUFFER",
    "DEFAULT_LIVENESS",
    "Watch",
    "WatchBatch",
    "WatchFilter",
    "Watcher",
    "hub_for",
    "open_watch",
    "watch_once",
]

log = logging.getLogger(__name__)
_monotonic = time.monotonic

#: Events a subscriber may hold undelivered before it gets WatchOverflow.
DEFAULT_BUFFER = 10_000
# An inline callback slower than this (seconds) on a shared stream gets its own greenlet.
_SLOW_CALLBACK = 0.02

EventCallback = Callable[[Event], object]
ErrorCallback = Callable[[BaseException], object]


_NO_BATCHES: deque[WatchBatch] = deque()
"""The shared empty buffer of callback watches that never buffered (never appended to)."""


def hub_for(owner: Core | HasCore) -> WatchHub:
    """The watch hub of a core, or of the client (or feature) standing on one
    (``client.core.watch_hub``; closed by ``client.close()``)."""
    return core_of(owner).watch_hub


class Watch:
    """A subscription to changes of a key or range. Iterate it, or give a callback.

    ``for event in watch`` yields :class:`~geetcd.models.Event` objects until the watch is
    canceled (the loop ends) or fails (the error is raised after the buffered events).
    :meth:`responses` yields :class:`WatchBatch` ``(revision, events)`` instead.
    ``revision`` is the revision delivered up to (everything at or below it was handed
    out). A Watch is a context manager that cancels on exit. Use it from one consumer.
    Cancel it when done: a Watch merely dropped keeps its server stream open until
    ``client.close()``.

    In callback form, ``callback(event)`` runs in a greenlet owned by the client: the
    reader greenlet of the watch's server stream, one callback after the other (no buffer,
    no switch: 10,000 callbacks of one key cost milliseconds). A callback that blocks
    delays that stream's deliveries (etcd holds the events meanwhile). On a stream shared
    by identical watches, a callback that once takes longer than 20 ms is moved to a
    greenlet of its own, fed through its bounded buffer (WatchOverflow when it falls
    behind), so it cannot stall the others again; that greenlet ends after about a second
    without events. An exception from the callback cancels the watch, is stored in
    ``error`` and passed to ``on_error`` (or logged with its traceback); ``revision`` then
    tells what was fully handled.
    """

    __slots__ = (
        "__weakref__",
        "_batches",
        "_buffered",
        "_callback",
        "_capacity",
        "_current",
        "_current_revision",
        "_done",
        "_end_reason",
        "_hub",
        "_inline",
        "_last_delivery",
        "_on_error",
        "_own_waiter",
        "_pos",
        "_retire",
        "_runner",
        "_stream",
        "_waiter",
        "error",
        "key",
        "range_end",
        "revision",
    )

    def __init__(
        self,
        hub: WatchHub,
        key: bytes,
        range_end: bytes | None,
        *,
        capacity: int,
        callback: EventCallback | None = None,
        on_error: ErrorCallback | None = None,
    ) -> None:
        self._hub = hub
        self.key = key
        self.range_end = range_end
        self._capacity = capacity
        self._callback = callback
        self._on_error = on_error
        # A callback watch runs its callbacks inline and buffers nothing until a slow
        # callback moves it to a greenlet: it shares one empty deque until then (768 bytes
        # a watch saved); :meth:`_own_batches` gives it its own before anything is added.
        self._batches: deque[WatchBatch] = deque() if callback is None else _NO_BATCHES
        self._buffered = 0
        # One reusable Waiter (no allocation per wake-up). A late wake-up meant for an
        # earlier wait is harmless: every wait is in a loop that re-checks the buffer, and
        # Waiter.switch only switches into a greenlet blocked in this Waiter's get().
        self._own_waiter: Waiter[None] | None = None  # (created by the first wait)
        self._waiter: Waiter[None] | None = None
        self._done = False
        self._end_reason = ""
        self._stream: ServerStream | None = None
        self._runner: gevent.Greenlet[[], None] | None = None
        self._retire = False
        self._last_delivery = 0.0
        self._inline = False
        # The batch being handed out event by event: events, next index, its revision.
        self._current: tuple[Event, ...] = ()
        self._pos = 0
        self._current_revision = 0
        #: The terminal error (WatchCompacted, WatchOverflow, PermissionDenied, a
        #: callback's exception...), or None.
        self.error: BaseException | None = None
        #: Everything up to this revision has been delivered to the consumer.
        self.revision = 0
        if hub.core.observers.active:
            hub.core.observers.emit("watch_created")

    def __repr__(self) -> str:
        span = f" range_end={self.range_end!r}" if self.range_end is not None else ""
        if self._done:
            state = f"failed ({type(self.error).__name__})" if self.error else "ended"
        else:
            state = "active"
        stream = self._stream
        member = stream.member.url if stream is not None and stream.member is not None else "-"
        return (
            f"<Watch key={self.key!r}{span} revision={self.revision} buffered={self.buffered} "
            f"{state} member={member}>"
        )

    def _own_batches(self) -> deque[WatchBatch]:
        batches = self._batches
        if batches is _NO_BATCHES:
            batches = self._batches = deque()
        return batches

    def _new_waiter(self) -> Waiter[None]:
        waiter = self._own_waiter = Waiter()
        return waiter

    # ------------------------------------------------------------------ consumer side
    @property
    def done(self) -> bool:
        """True once the watch was canceled or failed (buffered events may remain)."""
        return self._done

    @property
    def member(self) -> str | None:
        """The URL of the member currently serving this watch's stream (None if none)."""
        stream = self._stream
        return stream.serving_member() if stream is not None else None

    @property
    def buffered(self) -> int:
        """Events received but not yet consumed."""
        return self._buffered + len(self._current) - self._pos

    def __iter__(self) -> Iterator[Event]:
        """Events in order; ends when canceled or closed; raises the watch's error."""
        batches = self._own_batches()
        while True:
            if self._current:
                yield self._take()
                continue
            if not batches:  # inlined _pop(None): this loop is the hot path of fan-out
                if self._done:
                    if self.error is not None:
                        raise self.error
                    return
                waiter = self._waiter = self._own_waiter or self._new_waiter()
                waiter.clear()
                waiter.get()
                continue
            batch = batches.popleft()
            events = batch.events
            self._buffered -= len(events) or 1
            if len(events) == 1:  # the common case: one event per revision
                self.revision = max(self.revision, batch.revision)
                yield events[0]
            elif not events:
                self.revision = max(self.revision, batch.revision)
            else:
                self._current, self._pos, self._current_revision = events, 0, batch.revision

    def _take(self) -> Event:
        """The next event of the current batch; the revision moves after its last event."""
        current = self._current
        event = current[self._pos]
        self._pos += 1
        if self._pos == len(current):
            self._current, self._pos = (), 0
            self.revision = max(self.revision, self._current_revision)
        return event

    def responses(self) -> Iterator[WatchBatch]:
        """``(revision, events)`` batches in order (progress notifications have no events)."""
        while True:
            batch = self._next_batch(None)
            if batch is None:
                return
            yield batch

    def next_event(self, timeout: float | None = None) -> Event:
        """The next event. Raises DeadlineExceeded after ``timeout`` seconds (None: wait for
        ever), the watch's error, or WatchCanceled once the watch was canceled or closed."""
        deadline = (
            None
            if timeout is None
            else _monotonic() + check_duration(timeout, "timeout", allow_zero=True)
        )
        while not self._current:
            batch = self._pop(deadline)
            if batch is None:
                raise WatchCanceled(f"the watch was {self._end_reason}", reason=self._end_reason)
            if batch.events:
                self._current, self._pos, self._current_revision = batch.events, 0, batch.revision
            else:
                self.revision = max(self.revision, batch.revision)
        return self._take()

    def next_batch(self, timeout: float | None = None) -> WatchBatch:
        """The next batch; raises like :meth:`next_event`."""
        batch = self._next_batch(timeout)
        if batch is None:
            raise WatchCanceled(f"the watch was {self._end_reason}", reason=self._end_reason)
        return batch

    def _next_batch(self, timeout: float | None) -> WatchBatch | None:
        if self._current:  # a batch partly consumed through next_event: finish it first
            rest = WatchBatch(self._current_revision, self._current[self._pos :])
            self._current, self._pos = (), 0
            self.revision = max(self.revision, rest.revision)
            return rest
        if timeout is not None:
            timeout = check_duration(timeout, "timeout", allow_zero=True)
        batch = self._pop(None if timeout is None else _monotonic() + timeout)
        if batch is not None:
            self.revision = max(self.revision, batch.revision)
        return batch

    def _pop(self, deadline: float | None) -> WatchBatch | None:
        """The next buffered batch (waiting for one); None at a clean end."""
        batches = self._own_batches()
        while not batches:
            if self._done:
                if self.error is not None:
                    raise self.error
                return None
            self._wait(deadline)
        batch = batches.popleft()
        self._buffered -= len(batch.events) or 1
        return batch

    def _wait(self, deadline: float | None) -> None:
        """Block until the hub delivers, the watch ends, or ``deadline`` (DeadlineExceeded).

        The stream wakes all its waiting subscribers from one hub callback (see
        ServerStream._dispatch), much cheaper than one gevent Event per subscriber.
        """
        waiter = self._waiter = self._own_waiter or self._new_waiter()
        waiter.clear()
        if deadline is None:
            waiter.get()
            return
        timer = gevent.Timeout(max(0.0, deadline - _monotonic()))
        timer.start()
        try:
            waiter.get()
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            raise DeadlineExceeded("no watch event before the timeout") from None
        finally:
            timer.close()
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            gevent.get_hub().loop.run_callback(waiter.switch, None)

    def request_progress(self, timeout: float | None = None) -> int:
        """A barrier: ask the server for its current revision R and return R once every
        event of this watch up to R has been delivered to it (iterating or the callback
        then sees them before anything later); ``watch.revision`` reaches R once what
        was buffered has been taken.

        Needs a watch on a WebSocket stream (``Client(streams="websocket")``, the default,
        without credentials): an HTTP stream cannot carry the request, and WatchError
        says so. ``timeout`` (default: the client's) bounds the wait, reconnections
        included (DeadlineExceeded). The answer is etcd's: on etcd 3.4 and 3.5 builds
        without the fix of etcd issue #15220 (PR #15237, 3.4.23 and 3.5.1 among them) a
        progress answer can overtake events the server had queued, so under heavy write
        load it may come early there.
        """
        if self._done:
            raise WatchError(f"the watch on {self.key!r} has ended")
        stream = self._stream
        if stream is None:
            raise WatchError(f"the watch on {self.key!r} has no stream")
        deadline = self._hub.core.executor.deadline(timeout)
        revision = self._hub.mux.request_progress(stream, deadline)
        if revision > self.revision and not self._batches and not self._current:
            self.revision = max(self.revision, revision)
        return revision

    def cancel(self) -> None:
        """Stop watching: buffered events are dropped, iteration ends, and the server stream
        is closed once no other watch shares it (waits at most 2 s for that). Idempotent;
        never raises."""
        if not self._done:
            self._end("canceled")
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.detach(self)
        runner = self._runner
        if runner is not None and runner is not gevent.getcurrent():
            runner.kill(block=False)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()

    def _end(self, reason: str) -> None:
        self._done = True
        self._end_reason = reason
        if self._hub.core.observers.active:
            ended = "canceled" if self.error is None else "error"
            self._hub.core.observers.emit("watch_ended", ended)
        self._batches.clear()
        self._current, self._pos = (), 0
        self._buffered = 0
        self._wake()

    # ------------------------------------------------------------------ hub side
    # The Subscriber interface (geetcd.watch_hub.Subscriber): called by the watch hub only.
    def hub_joined(self, stream: ServerStream, revision: int) -> None:
        self._stream = stream
        self.revision = revision
        self._inline = self._callback is not None

    def hub_created(self, revision: int) -> None:
        if not self.revision:
            self.revision = revision

    def hub_deliver(self, batch: WatchBatch, wake: list[Waiter[None]]) -> bool:
        """Buffer one batch; False (and WatchOverflow queued) if the buffer is full.

        A waiting consumer's Waiter is appended to ``wake`` (the caller switches to them).
        """
        if self._done:
            return True
        if self._inline:
            self._call_inline(batch)
            return True
        batches = self._own_batches()
        size = len(batch.events)
        if not size:  # a progress mark: keep only the newest of consecutive ones
            if batches and not batches[-1].events:
                batches[-1] = batch
            else:
                batches.append(batch)
                self._buffered += 1
        elif self._buffered and self._buffered + size > self._capacity:
            last = batches[-1].revision if batches else self.revision
            self.error = WatchOverflow(
                f"watch on {self.key!r} fell more than {self._capacity} events behind; "
                f"everything up to revision {last} was delivered, resume from {last + 1}",
                last_revision=last,
            )
            self._done = True
            self._stream = None
            if self._hub.core.observers.active:
                self._hub.core.observers.emit("watch_ended", "overflow")
        else:
            batches.append(batch)
            self._buffered += size
        if self._callback is not None:
            self._last_delivery = _monotonic()
            if self._runner is None:
                self._start_runner()
                return not self._done
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            wake.append(waiter)
        return not self._done

    def hub_finish(self, error: BaseException) -> None:
        """Terminal error from the stream: delivered after the buffered batches."""
        if self._done:
            return
        self.error = error
        self._done = True
        self._stream = None
        if self._hub.core.observers.active:
            self._hub.core.observers.emit("watch_ended", _end_reason_of(error))
        if self._inline:
            self._report(error)  # nothing is buffered while callbacks run inline
        elif self._callback is not None and self._runner is None:
            self._start_runner()
        self._wake()

    def hub_closed(self) -> None:
        if not self._done:
            self._end("closed with the client")
        self._stream = None

    # ------------------------------------------------------------------ callback form
    def _start_runner(self) -> None:
        self._retire = False
        self._runner = self._hub.core.spawn(self._run_callback)
        self._hub.runners.add(self)

    def _call_inline(self, batch: WatchBatch) -> None:
        """Run the callback for ``batch`` here, in the stream's reader greenlet.

        A call slower than _SLOW_CALLBACK on a stream shared with other watches moves this
        watch to a greenlet of its own: the rest of the batch, and everything after it, go
        through the buffer, in order.
        """
        callback = self._callback
        assert callback is not None
        events = batch.events
        for index, event in enumerate(events):
            started = _monotonic()
            if not self._call_back(callback, event):
                return
            if _monotonic() - started > _SLOW_CALLBACK and self._shares_stream():
                self._inline = False
                log.info(
                    "watch on %r: slow callback (%.0f ms), moved to a greenlet of its own",
                    self.key,
                    (_monotonic() - started) * 1000,
                )
                rest = events[index + 1 :]
                if rest:
                    self._own_batches().append(WatchBatch(batch.revision, rest))
                    self._buffered += len(rest)
                    self._start_runner()
                    return
                break
        self.revision = max(self.revision, batch.revision)

    def _shares_stream(self) -> bool:
        """True when a slow callback here would delay other watches: identical watches on
        one server watch, or any watch on a multiplexed WebSocket (one reader for all)."""
        stream = self._stream
        return stream is not None and (len(stream.subscribers) > 1 or stream.channel is not None)

    def hub_retire_if_idle(self, now: float, linger: float) -> None:
        """Called by the hub: end an idle runner (it is started again by the next event)."""
        if self._waiter is not None and not self._batches and now - self._last_delivery > linger:
            self._retire = True
            self._wake()

    def _run_callback(self) -> None:
        try:
            self._callbacks()
        finally:
            if self._runner is gevent.getcurrent():
                self._runner = None
            self._hub.runners.discard(self)

    def _callbacks(self) -> None:
        callback = self._callback
        assert callback is not None
        batches = self._own_batches()
        while True:
            if not batches:
                if self._done:
                    if self.error is not None:
                        self._report(self.error)
                    return
                if self._retire:
                    return
                waiter = self._waiter = self._own_waiter or self._new_waiter()
                waiter.clear()
                waiter.get()
                continue
            batch = batches.popleft()
            self._buffered -= len(batch.events) or 1
            for event in batch.events:
                if not self._call_back(callback, event):
                    return
            self.revision = max(self.revision, batch.revision)

    def _call_back(self, callback: Callable[[Event], object], event: Event) -> bool:
        """Run the user's callback on one event; False once the watch has ended.

        An exception from the callback ends the watch (``error``, then on_error or the log):
        reported, never swallowed. The callback (or another greenlet) may also cancel it.
        """
        try:
            callback(event)
        except Exception as exc:  # noqa: BLE001 - user code: reported, never swallowed
            self.error = exc
            self.cancel()
            self._report(exc)
            return False
        return not self._end_reason

    def _report(self, error: BaseException) -> None:
        """Hand a terminal error to on_error, or log it with its traceback."""
        if self._on_error is None:
            log.error("watch on %r ended with an error", self.key, exc_info=error)
            return
        try:
            self._on_error(error)
        except Exception:
            log.exception("on_error callback of the watch on %r raised", self.key)


def _end_reason_of(error: BaseException) -> str:
    """The ``watch_ended`` reason observers see for a terminal ``error`` (bounded)."""
    if isinstance(error, WatchCompacted):
        return "compacted"
    if isinstance(error, WatchCanceled) and error.reason == "forked":
        return "forked"
    return "error"


def open_watch(
    core: Core,
    key: str | bytes,
    *,
    prefix: bool = False,
    range_end: str | bytes | None = None,
    start_revision: int | None = None,
    prev_kv: bool = False,
    filters: Iterable[str | WatchFilter] | str | WatchFilter = (),
    progress_notify: bool = False,
    callback: EventCallback | None = None,
    on_error: ErrorCallback | None = None,
    buffer: int = DEFAULT_BUFFER,
    liveness: float | None = None,
    timeout: float | None = None,
) -> Watch:
    """Create a watch on ``core`` and wait until the server acknowledged it. See
    :meth:`Watcher.watch`."""
    if core.closed:
        raise ClientClosed()
    ks = core.ks
    wire, end = ks.span(key, range_end, check_bool(prefix, "prefix"))
    if start_revision is not None and check_int(start_revision, "start_revision", minimum=0) == 0:
        start_revision = None  # 0 is etcd's "from now", the same as no start revision
    spec = WatchSpec(
        key=wire,
        range_end=end,
        prev_kv=check_bool(prev_kv, "prev_kv"),
        filters=normalize_filters(filters),
        progress_notify=check_bool(progress_notify, "progress_notify"),
    )
    capacity = check_int(buffer, "buffer", minimum=1)
    bound = check_duration(DEFAULT_LIVENESS if liveness is None else liveness, "liveness")
    if callback is not None and not callable(callback):
        raise InvalidArgument(f"callback must be callable, got {callback!r}")
    if on_error is not None and not callable(on_error):
        raise InvalidArgument(f"on_error must be callable, got {on_error!r}")
    deadline = core.executor.deadline(timeout)
    hub = core.watch_hub
    watch = Watch(
        hub,
        ks.unkey(wire),
        None if end is None else ks.unkey(end),
        capacity=capacity,
        callback=callback,
        on_error=on_error,
    )
    stream = hub.subscribe(spec, watch, start_revision, bound)
    acknowledged = False
    try:
        acknowledged = stream.created.wait(max(0.0, deadline - _monotonic()))
    finally:
        if not acknowledged:
            watch.cancel()
    if not acknowledged:
        raise DeadlineExceeded(
            f"watch on {key!r} not acknowledged by etcd within the deadline"
        ) from stream.last_error
    if not stream.ever_created:
        watch.cancel()
        if core.closed:
            raise WatchCanceled("the client was closed", reason="client closed")
        error = stream.error or stream.last_error
        if isinstance(error, EtcdError):
            raise error
        raise WatchCanceled(f"watch on {key!r} could not be created: {error!r}") from error
    return watch


def watch_once(
    core: Core, key: str | bytes, *, timeout: float | None = None, **options: object
) -> Event:
    """The next event of ``key`` on ``core``; DeadlineExceeded if none within ``timeout``
    (creation included; None: the client's timeout)."""
    deadline = core.executor.deadline(timeout)
    watch = open_watch(core, key, timeout=timeout, **options)  # type: ignore[arg-type]
    try:
        return watch.next_event(timeout=max(0.0, deadline - _monotonic()))
    finally:
        watch.cancel()


class Watcher(Feature):
    """The watch API on a core (Go's ``clientv3.NewWatcher``): :meth:`watch`,
    :meth:`watch_prefix`, :meth:`watch_once`. :class:`geetcd.Client` is a Watcher;
    ``Watcher(core)`` works on its own. Building it does no I/O."""

    def watch(
        self,
        key: str | bytes,
        *,
        prefix: bool = False,
        range_end: str | bytes | None = None,
        start_revision: int | None = None,
        prev_kv: bool = False,
        filters: Sequence[str | WatchFilter] | str | WatchFilter = (),
        progress_notify: bool = False,
        callback: Callable[[Event], object] | None = None,
        on_error: Callable[[BaseException], object] | None = None,
        buffer: int = 10_000,
        liveness: float | None = None,
        timeout: float | None = None,
    ) -> Watch:
        """Watch ``key`` (or a range / prefix) and return a :class:`geetcd.watch.Watch`.

        Returns once etcd acknowledged the watch: every change committed after this returns
        is delivered, in order, exactly once, also across member failures (resumed on
        another member from the last delivered revision + 1). ``start_revision`` replays
        history from that revision (WatchCompacted if compacted). ``filters``: ``"noput"``
        / ``"nodelete"``. ``progress_notify``: etcd's periodic progress messages (empty
        batches in ``watch.responses()``). ``callback(event)`` runs in a greenlet owned by
        the client; its exceptions and watch errors go to ``on_error(exc)`` (else logged
        with traceback) and to ``watch.error``. ``buffer``: events a slow consumer may lag
        before WatchOverflow. ``liveness``: seconds of silence before the member is probed
        (default geetcd.watch.DEFAULT_LIVENESS, 5 s). Identical watches without
        ``start_revision`` share one server stream. Raises DeadlineExceeded if not
        acknowledged within ``timeout`` (default: the client's), or the server's refusal
        (PermissionDenied, InvalidArgument...).
        """
        return open_watch(
            self._core,
            key,
            prefix=prefix,
            range_end=range_end,
            start_revision=start_revision,
            prev_kv=prev_kv,
            filters=filters,
            progress_notify=progress_notify,
            callback=callback,
            on_error=on_error,
            buffer=buffer,
            liveness=liveness,
            timeout=timeout,
        )

    def watch_prefix(self, prefix: str | bytes, **options: Any) -> Watch:
        """Watch every key starting with ``prefix`` (same options as :meth:`watch`)."""
        return self.watch(prefix, prefix=True, **options)

    def watch_once(
        self,
        key: str | bytes,
        *,
        timeout: float | None = None,
        prefix: bool = False,
        range_end: str | bytes | None = None,
        start_revision: int | None = None,
        prev_kv: bool = False,
        filters: Sequence[str | WatchFilter] | str | WatchFilter = (),
    ) -> Event:
        """The next change of ``key`` (or range / prefix), as a :class:`geetcd.Event`.

        Raises DeadlineExceeded if none comes within ``timeout`` seconds (watch creation
        included; default: the client's timeout). The watch is canceled before returning.
        """
        return watch_once(
            self._core,
            key,
            timeout=timeout,
            prefix=prefix,
            range_end=range_end,
            start_revision=start_revision,
            prev_kv=prev_kv,
            filters=filters,
        )
