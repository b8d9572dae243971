"""v2 watches: long polls (``GET /v2/keys/...?wait=true``) over the shared cluster state.

etcd answers a v2 wait with the status line and headers at once and the body (one event)
when the event happens, so every wait is read as a stream (the stream pool, so waits never
hold the connections of unary calls): the body read is bounded by the caller's deadline and
can be aborted from another greenlet.

* :func:`long_poll` waits for one event on any healthy member, failing over (same
  ``waitIndex``, so nothing is lost) when a member breaks or hangs.
* every open wait is registered with the core's one stream-liveness supervisor
  (:mod:`geetcd.liveness`, shared with v3 watches): a v2 wait sends nothing until its
  event, so a hung (SIGSTOPped) member would otherwise hold it forever; its member is
  probed every ``liveness`` seconds while the wait lasts, and a member that fails its probe
  (or that the cluster state marks DOWN) is benched and its waits aborted (and so moved to
  another member).
* :class:`V2Watch` is a persistent watch: one greenlet owned by the client polls from the
  last delivered ``modifiedIndex + 1``, and when etcd has cleared that index from its
  1000-event history (errorCode 401) reads the key again and yields a :class:`Resync`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, ClassVar

import gevent
import gevent.queue

from geetcd._executor import Attempt
from geetcd.cluster import Member
from geetcd.errors import ClientClosed, ClusterUnavailable, DeadlineExceeded, EtcdError
from geetcd.supervisor import RECONNECT_BACKOFF, supervise
from geetcd.transport import Stream
from geetcd.v2.errors import EventIndexCleared, KeyNotFound
from geetcd.v2.models import Response, Resync
from geetcd.v2.protocol import PLAIN_HEADERS, error_from_answer, parse_response, watch_request

if TYPE_CHECKING:
    from geetcd.core import Core

__all__ = ["V2Watch", "long_poll"]

log = logging.getLogger(__name__)
_monotonic = time.monotonic


class _Wait:
    """One open wait, as the core's stream-liveness supervisor sees it
    (:class:`geetcd.liveness.LiveStream`): silent from its start until its event."""

    __slots__ = ("last_activity", "liveness", "member", "stream")

    def __init__(self, stream: Stream, member: Member, liveness: float) -> None:
        self.stream = stream
        self.member: Member | None = member
        self.liveness = liveness
        self.last_activity = _monotonic()

    def abort_connection(self, reason: BaseException) -> None:
        self.stream.abort()


def _read_body(stream: Stream) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = stream.read_chunk()
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class _LongPoll:
    """One v2 wait as the stream supervisor (:func:`geetcd.supervisor.supervise`) runs it:
    opened on a member, served until its one event (kept in ``result``), resumed elsewhere
    with the same ``waitIndex`` when its member fails."""

    stream_kind: ClassVar[str] = "v2_wait"

    def __init__(
        self,
        core: Core,
        liveness: float,
        path: str,
        *,
        deadline: float | None,
        on_member: Callable[[Member], None] | None,
        stopped: Callable[[], bool] | None,
    ) -> None:
        self.core = core
        self.liveness = liveness
        self.path = path
        self.deadline = deadline
        self.on_member = on_member
        self.stopped_by_owner = stopped
        self.failures = 0
        self.result: Response | None = None

    def describe(self) -> str:
        return f"v2 wait {self.path}"

    def stopped(self) -> bool:
        return self.result is not None or (
            self.stopped_by_owner is not None and self.stopped_by_owner()
        )

    def open(self, attempt: Attempt) -> Stream:
        member = attempt.member
        if self.on_member is not None:
            self.on_member(member)
        stream = self.core.transport.open_stream(
            member.url,
            self.path,
            None,
            connect_timeout=attempt.connect_timeout,
            first_byte_timeout=attempt.read_timeout,
            headers=PLAIN_HEADERS,
            method="GET",
        )
        if stream.status != 200:
            try:
                raise error_from_answer(stream.status, stream.read_all(), {}, member.url)
            finally:
                stream.close()
        return stream

    def serve(self, stream: Stream, member: Member) -> EtcdError | None:
        try:
            self.result = _read_event(
                self.core, _Wait(stream, member, self.liveness), self.path, self.deadline
            )
        except EtcdError as exc:
            return exc
        self.failures = 0
        return None

    def unreachable(self, error: EtcdError) -> None:
        log.warning("%s: no member usable (%s); still trying", self.describe(), error)

    def failed(self, member: Member, error: EtcdError) -> None:
        log.info("v2 wait on %s failed (%s); moving on", member.url, error)


def long_poll(
    core: Core,
    liveness: float,
    path: str,
    deadline: float | None,
    on_member: Callable[[Member], None] | None = None,
) -> Response:
    """Wait for the one event ``path`` (a ``watch_request`` path) asks for, on any member.

    Run by the core's one stream supervisor (:func:`geetcd.supervisor.supervise`): opened
    through the attempt loop (one pick policy, one in-flight count), the open ending at the
    first byte of the answer; the body (the event) is then read watched over by the core's
    stream-liveness supervisor (its member probed while the wait lasts). A member that fails
    (refused, broken, hung, transient error answer) is benched and the same wait is sent to
    another one, with the supervisor's backoff after repeated failures.

    ``deadline`` (monotonic) bounds the whole wait, failovers included: DeadlineExceeded when
    it passes. With None the wait has no end of its own, but ClusterUnavailable is raised
    when no member could be reached within a whole client ``timeout`` (chained to the last
    failure). Deterministic error answers (EventIndexCleared, ...) are raised as is;
    ClientClosed once the client closed. The stream is always closed (never pooled while
    live), also when the calling greenlet is killed. ``on_member`` is told each member a wait
    is sent to.
    """
    core.start()
    poll = _LongPoll(core, liveness, path, deadline=deadline, on_member=on_member, stopped=None)
    try:
        supervise(core, poll, auth=False, persistent=False, deadline=deadline)
    except EtcdError as exc:
        if deadline is not None or not exc.transient or isinstance(exc, ClusterUnavailable):
            raise
        raise ClusterUnavailable(
            f"v2 wait {path}: no member could be reached within {core.executor.timeout} s",
            errors={m.url: m.last_error for m in core.cluster.members},
        ) from exc
    if poll.result is None:
        raise ClientClosed()  # the supervisor returns without a result only when closed
    return poll.result


def poll_until_stopped(
    core: Core,
    liveness: float,
    path: str,
    on_member: Callable[[Member], None],
    stopped: Callable[[], bool],
) -> Response | None:
    """:func:`long_poll` for a persistent watch: no deadline, never gives up while members
    are unreachable (the supervisor backs off and tries again) until ``stopped()``; returns
    the event, or None once stopped (or the client closed). Raises deterministic error
    answers (EventIndexCleared, ...)."""
    core.start()
    poll = _LongPoll(core, liveness, path, deadline=None, on_member=on_member, stopped=stopped)
    supervise(core, poll, auth=False, persistent=True)
    return poll.result


def _read_event(core: Core, wait: _Wait, path: str, deadline: float | None) -> Response:
    """Read the answer of an open wait (until ``deadline``, if any); always closes it."""
    stream, member = wait.stream, wait.member
    assert member is not None
    remaining = None if deadline is None else deadline - _monotonic()
    timer = gevent.Timeout(max(remaining, 0.0)) if remaining is not None else None
    core.liveness.watch(wait)
    try:
        if timer is not None:
            timer.start()
        return parse_response(200, _read_body(stream), {}, member.url)
    except gevent.Timeout as exc:
        if exc is not timer:
            raise
        raise DeadlineExceeded(f"no v2 event for {path} before the deadline") from exc
    finally:
        if timer is not None:
            timer.close()
        core.liveness.forget(wait)
        stream.close()


class _End:
    __slots__ = ("error",)

    def __init__(self, error: EtcdError | None) -> None:
        self.error = error


_Item = Response | Resync | _End


class V2Watch:
    """A persistent v2 watch: iterate it for :class:`Response` events and :class:`Resync`
    signals, in index order, with no loss and no duplicate across member failures.

    Made by :meth:`geetcd.v2.Client.watcher`, on its core: ``reread()`` reads the key again
    after a history gap, ``on_cancel(watch)`` is told when the watch is canceled, and
    ``liveness`` is the probe interval of its waits. A greenlet owned by the core polls etcd and
    fills a buffer of ``buffer`` items; when the consumer falls behind it stops polling
    (etcd keeps 1000 events: past that the watch resyncs). Iteration (and :meth:`get`)
    blocks until the next item; it ends after :meth:`cancel`, and raises the error that
    ended the watch (a deterministic error answer, never a member failure).
    """

    def __init__(
        self,
        core: Core,
        key: str,
        *,
        recursive: bool,
        next_index: int,
        buffer: int,
        liveness: float,
        reread: Callable[[], Response],
        on_cancel: Callable[[V2Watch], None],
    ) -> None:
        self.key = key
        self.recursive = recursive
        self._core = core
        self._liveness = liveness
        self._reread = reread
        self._on_cancel = on_cancel
        self._next_index = next_index
        self._queue: gevent.queue.Queue[_Item] = gevent.queue.Queue(maxsize=buffer)
        self._canceled = False
        self._ended: _End | None = None
        self._serving: str | None = None
        self._greenlet = core.spawn(self._run)

    def __repr__(self) -> str:
        state = "canceled" if self._canceled else "ended" if self._ended else "active"
        rec = " recursive" if self.recursive else ""
        return (
            f"<V2Watch {self.key!r}{rec} next_index={self._next_index} "
            f"buffered={self._queue.qsize()} serving={self._serving} {state}>"
        )

    @property
    def next_index(self) -> int:
        """The ``waitIndex`` of the next poll (last delivered index + 1)."""
        return self._next_index

    @property
    def serving(self) -> str | None:
        """The URL of the member the current (or last) poll was sent to; None before any."""
        return self._serving

    @property
    def canceled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._canceled

    # ------------------------------------------------------------------ consumer side
    def __iter__(self) -> V2Watch:
        return self

    def __next__(self) -> Response | Resync:
        item = self.get()
        if item is None:
            raise StopIteration
        return item

    def get(self, timeout: float | None = None) -> Response | Resync | None:
        """The next item, waiting at most ``timeout`` seconds (None: until there is one).

        Returns None when the timeout passed, or once the watch was canceled (buffered
        items are then dropped). Raises the error that ended the watch, every time.
        """
        if self._canceled:
            return None
        if self._ended is None:
            try:
                item = self._queue.get(timeout=timeout)
            except gevent.queue.Empty:
                return None
            if not isinstance(item, _End):
                return item
            self._ended = item
        if self._ended.error is not None and not self._canceled:
            raise self._ended.error
        return None

    def cancel(self) -> None:
        """End the watch: kill its greenlet (its open wait is closed, never pooled) and wake
        a consumer blocked in :meth:`get`. Idempotent; never raises."""
        if self._canceled:
            return
        self._canceled = True
        self._on_cancel(self)
        if self._greenlet is not gevent.getcurrent():
            self._greenlet.kill(block=True, timeout=5.0)
        with suppress(gevent.queue.Full):
            self._queue.put_nowait(_End(None))

    def __enter__(self) -> V2Watch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()

    # ------------------------------------------------------------------ producer side
    def _run(self) -> None:
        try:
            self._loop()
        except EtcdError as exc:
            if not self._core.closed:
                log.warning("v2 watch on %r ended: %s", self.key, exc)
            self._queue.put(_End(exc))
            return
        self._queue.put(_End(None))

    def _loop(self) -> None:
        while not self._stopped():
            path = watch_request(self.key, self._next_index, recursive=self.recursive).path
            try:
                response = poll_until_stopped(
                    self._core, self._liveness, path, self._on_member, self._stopped
                )
            except EventIndexCleared as exc:
                resync = self._resync(exc)
                if resync is None:
                    return
                self._next_index = resync.etcd_index + 1
                self._queue.put(resync)
                continue
            if response is None:
                return  # stopped
            self._next_index = response.node.modified_index + 1
            self._queue.put(response)

    def _on_member(self, member: Member) -> None:
        self._serving = member.url

    def _stopped(self) -> bool:
        return self._canceled or self._core.closed

    def _resync(self, cleared: EventIndexCleared) -> Resync | None:
        """Read the key again after a 401; None if the client closed meanwhile."""
        failures = 0
        while not self._stopped():
            try:
                response = self._reread()
            except KeyNotFound as missing:
                return Resync(None, missing.index or cleared.index)
            except EtcdError as exc:
                if not (exc.transient or exc.waited_out) or self._stopped():
                    raise
                failures += 1
                log.warning("v2 watch on %r: re-read failed (%s); retrying", self.key, exc)
                gevent.sleep(RECONNECT_BACKOFF.compute(failures))
                continue
            log.info(
                "v2 watch on %r: index %d cleared from history; resynced at %d",
                self.key,
                self._next_index,
                response.etcd_index,
            )
            return Resync(response, response.etcd_index or cleared.index)
        return None
