"""A list-then-watch mirror of every key under a prefix (``client.prefix_cache(prefix)``).

:class:`PrefixCache` lists the prefix at one revision (paged, one consistent snapshot),
then watches it from that revision + 1 and applies every change to a local dict
(key bytes -> :class:`~geetcd.models.KeyValue`), in one greenlet owned by the client.

* Member failures are handled by the watch itself (exactly-once resume elsewhere).
* When the watch's resume revision has been compacted (the cache was cut off longer than
  the history etcd keeps), the cache lists again and diffs the new snapshot against its
  mirror, emitting synthetic PUT / DELETE changes for what changed meanwhile (a synthetic
  DELETE's ``kv`` carries the key and the listing revision as ``mod_revision``).
* A subscriber to :meth:`PrefixCache.changes` that falls behind gets WatchOverflow.
* Errors that retrying cannot fix (authentication, permission, bad arguments) end the
  cache: :attr:`PrefixCache.error` holds the error and the waiters raise it; transient
  ones are logged and retried with backoff.

Keys are the caller's keys (the client's namespace stripped), prefix included.

The cache stands on a :class:`geetcd.kv.KV` (the client is one): it lists through that KV's
reads and watches through the watch hub of the KV's core.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator

import gevent
import gevent.event

from geetcd.config import ExponentialBackoff, check_duration
from geetcd.errors import (
    CompactedRevision,
    DeadlineExceeded,
    EtcdError,
    InvalidArgument,
    WatchCanceled,
    WatchCompacted,
    WatchOverflow,
)
from geetcd.kv import KV
from geetcd.models import Event, EventType, KeyValue
from geetcd.protocol.codec import to_bytes
from geetcd.protocol.kv import check_int
from geetcd.protocol.watch import WatchBatch
from geetcd.watch import DEFAULT_BUFFER, Watch, open_watch

__all__ = ["CacheChanges", "PrefixCache"]

log = logging.getLogger(__name__)
_monotonic = time.monotonic
_BACKOFF = ExponentialBackoff(base=0.1, cap=2.0)

ChangeCallback = Callable[[Event], object]
ErrorCallback = Callable[[BaseException], object]


class CacheChanges:
    """An iterator over a cache's changes from the moment it was created.

    Bounded: a reader more than ``buffer`` changes behind gets WatchOverflow (with the
    revision delivered last) after the buffered ones. Iteration ends when the feed or
    the cache is closed; a fatal cache error is raised.
    """

    __slots__ = ("_buffer", "_cache", "_done", "_error", "_items", "_ready", "revision")

    def __init__(self, cache: PrefixCache, buffer: int) -> None:
        self._cache = cache
        self._buffer = buffer
        self._items: deque[tuple[int, Event]] = deque()
        self._ready = gevent.event.Event()
        self._done = False
        self._error: BaseException | None = None
        #: The revision of the last change handed out.
        self.revision = cache.revision

    def __repr__(self) -> str:
        return f"<CacheChanges of {self._cache.prefix!r} buffered={len(self._items)}>"

    def __iter__(self) -> Iterator[Event]:
        while True:
            change = self._next(None)
            if change is None:
                return
            yield change

    def next_change(self, timeout: float | None = None) -> Event:
        """The next change; DeadlineExceeded after ``timeout`` s, WatchCanceled once closed."""
        change = self._next(timeout)
        if change is None:
            raise WatchCanceled("the change feed was closed", reason="closed")
        return change

    def _next(self, timeout: float | None) -> Event | None:
        deadline = (
            None
            if timeout is None
            else _monotonic() + check_duration(timeout, "timeout", allow_zero=True)
        )
        while not self._items:
            if self._done:
                if self._error is not None:
                    raise self._error
                return None
            self._ready.clear()
            if deadline is None:
                self._ready.wait()
            elif not self._ready.wait(max(0.0, deadline - _monotonic())):
                raise DeadlineExceeded("no cache change before the timeout")
        revision, event = self._items.popleft()
        self.revision = revision
        return event

    def _push(self, revision: int, event: Event) -> bool:
        if self._done:
            return False
        if len(self._items) >= self._buffer:
            last = self._items[-1][0]
            self._end(
                WatchOverflow(
                    f"cache change feed fell more than {self._buffer} changes behind "
                    f"(delivered up to revision {last})",
                    last_revision=last,
                )
            )
            return False
        self._items.append((revision, event))
        self._ready.set()
        return True

    def _end(self, error: BaseException | None) -> None:
        if not self._done:
            self._done = True
            self._error = error
            self._cache._feeds.discard(self)
            self._ready.set()

    def close(self) -> None:
        """Stop this feed (buffered changes are dropped). Idempotent."""
        self._items.clear()
        self._end(None)

    def __enter__(self) -> CacheChanges:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class PrefixCache:
    """A local, always-current copy of every key under ``prefix``.

    Reads (:meth:`get`, :meth:`items`, :meth:`snapshot`, ``len``, ``in``) never do I/O.
    ``revision`` is the revision the mirror reflects. ``on_change(event)`` is called in
    the cache's greenlet for every change (after the mirror was updated); an exception
    from it is passed to ``on_error`` or logged with its traceback, and the cache goes on.
    ``resyncs`` counts the re-lists after a compaction. ``client``: the KV it lists through
    (a :class:`geetcd.Client`, or any :class:`geetcd.kv.KV`); its core carries the watch.
    """

    def __init__(
        self,
        client: KV,
        prefix: str | bytes,
        *,
        on_change: ChangeCallback | None = None,
        on_error: ErrorCallback | None = None,
        page_size: int = 1000,
        buffer: int = DEFAULT_BUFFER,
        liveness: float | None = None,
    ) -> None:
        if on_change is not None and not callable(on_change):
            raise InvalidArgument(f"on_change must be callable, got {on_change!r}")
        if on_error is not None and not callable(on_error):
            raise InvalidArgument(f"on_error must be callable, got {on_error!r}")
        self.client = client
        self.prefix = to_bytes(prefix, "prefix")
        self._on_change = on_change
        self._on_error = on_error
        self._page_size = check_int(page_size, "page_size", minimum=1)
        self._buffer = check_int(buffer, "buffer", minimum=1)
        self._liveness = None if liveness is None else check_duration(liveness, "liveness")
        self._mirror: dict[bytes, KeyValue] = {}
        self._feeds: set[CacheChanges] = set()
        self._synced = gevent.event.Event()
        self._advanced = gevent.event.Event()
        self._watch: Watch | None = None
        self._greenlet: gevent.Greenlet[[], None] | None = None
        self._closed = False
        self.revision = 0
        self.resyncs = 0
        self.error: BaseException | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "synced" if self._synced.is_set() else "syncing"
        return (
            f"<PrefixCache {self.prefix!r} keys={len(self._mirror)} revision={self.revision} "
            f"{state} resyncs={self.resyncs}>"
        )

    def start(self) -> PrefixCache:
        """Start the cache's greenlet (no I/O here). Returns self."""
        if self._greenlet is None:
            self.client.core.on_close(self.close)
            self._greenlet = self.client.core.spawn(self._run)
        return self

    # ------------------------------------------------------------------ reads (no I/O)
    def get(self, key: str | bytes) -> KeyValue | None:
        """The cached KeyValue of ``key`` (the full key, prefix included), or None."""
        return self._mirror.get(to_bytes(key, "key"))

    def items(self) -> list[tuple[bytes, KeyValue]]:
        """Every cached ``(key, KeyValue)``, sorted by key."""
        return sorted(self._mirror.items())

    def snapshot(self) -> dict[bytes, KeyValue]:
        """A copy of the mirror."""
        return dict(self._mirror)

    def __len__(self) -> int:
        return len(self._mirror)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, (str, bytes)) and to_bytes(key, "key") in self._mirror

    @property
    def synced(self) -> bool:
        """True once the first listing has been applied."""
        return self._synced.is_set()

    # ------------------------------------------------------------------ waiting
    def wait_synced(self, timeout: float | None = None) -> None:
        """Wait until the first listing is applied. Raises DeadlineExceeded after
        ``timeout`` seconds (None: for ever) or the cache's fatal error."""
        deadline = (
            None
            if timeout is None
            else _monotonic() + check_duration(timeout, "timeout", allow_zero=True)
        )
        while not self._synced.is_set():
            self._raise_if_failed()
            remaining = None if deadline is None else deadline - _monotonic()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceeded(f"cache of {self.prefix!r} not synced in time")
            self._wait_advance(remaining)
        self._raise_if_failed()

    def wait_revision(self, revision: int, timeout: float | None = None) -> None:
        """Wait until the mirror reflects ``revision`` (e.g. a put's header.revision).

        Raises DeadlineExceeded after ``timeout`` seconds or the cache's fatal error.
        """
        check_int(revision, "revision")
        deadline = (
            None
            if timeout is None
            else _monotonic() + check_duration(timeout, "timeout", allow_zero=True)
        )
        while self.revision < revision or not self._synced.is_set():
            self._raise_if_failed()
            remaining = None if deadline is None else deadline - _monotonic()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceeded(
                    f"cache of {self.prefix!r} at revision {self.revision}, not {revision}"
                )
            self._wait_advance(remaining)
        self._raise_if_failed()

    def _wait_advance(self, timeout: float | None) -> None:
        event = self._advanced
        event.wait(timeout)

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error
        if self._closed:
            raise WatchCanceled(f"cache of {self.prefix!r} is closed", reason="closed")

    def _advance(self) -> None:
        event, self._advanced = self._advanced, gevent.event.Event()
        event.set()

    def changes(self, buffer: int = DEFAULT_BUFFER) -> CacheChanges:
        """A new iterator over every change applied from now on (see CacheChanges)."""
        feed = CacheChanges(self, check_int(buffer, "buffer", minimum=1))
        if self._closed or self.error is not None:
            feed._end(self.error)
        else:
            self._feeds.add(feed)
        return feed

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Stop watching; feeds end, waiters raise WatchCanceled. Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        self.client.core.remove_close_hook(self.close)
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
        greenlet = self._greenlet
        if greenlet is not None and greenlet is not gevent.getcurrent():
            greenlet.kill(block=False)
        for feed in list(self._feeds):
            feed._end(None)
        self._advance()

    def __enter__(self) -> PrefixCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the greenlet
    def _run(self) -> None:
        need_list = True
        failures = 0
        while not self._closed:
            try:
                if need_list:
                    self._relist()
                    need_list = False
                self._follow()
                return  # the watch ended cleanly: the cache or the client was closed
            except WatchCompacted as exc:
                log.info(
                    "cache of %r: history compacted at %s; listing again",
                    self.prefix,
                    exc.compact_revision,
                )
                need_list = True
                self.resyncs += 1
                continue
            except WatchOverflow as exc:
                log.warning("cache of %r fell behind its watch (%s); re-watching", self.prefix, exc)
                continue
            except CompactedRevision as exc:  # compacted between listing pages
                log.info("cache of %r: listing revision compacted (%s); retrying", self.prefix, exc)
                need_list = True
                continue
            except EtcdError as exc:
                if exc.permanent:  # the credentials, the TLS set-up or the request is wrong
                    self._fail(exc)
                    return
                failures += 1
                log.warning("cache of %r: %s; retrying", self.prefix, exc)
                gevent.sleep(_BACKOFF.compute(failures))

    def _relist(self) -> None:
        client = self.client
        head = client.range(self.prefix, prefix=True, count_only=True)
        revision = head.header.revision
        kvs = list(client.iter_prefix(self.prefix, revision=revision, page_size=self._page_size))
        fresh = {kv.key: kv for kv in kvs}
        first = not self._synced.is_set()
        old, self._mirror = self._mirror, fresh
        self.revision = revision
        if not first:
            for key, kv in fresh.items():
                before = old.get(key)
                if before is None or before.mod_revision != kv.mod_revision:
                    self._emit(revision, Event(EventType.PUT, kv, before))
            for key, before in old.items():
                if key not in fresh:
                    gone = KeyValue(key=key, mod_revision=revision)
                    self._emit(revision, Event(EventType.DELETE, gone, before))
        self._synced.set()
        self._advance()

    def _follow(self) -> None:
        watch = open_watch(
            self.client.core,
            self.prefix,
            prefix=True,
            start_revision=self.revision + 1,
            progress_notify=True,
            buffer=self._buffer,
            liveness=self._liveness,
        )
        self._watch = watch
        if self._closed:
            watch.cancel()
            return
        try:
            for batch in watch.responses():
                self._apply(batch)
        finally:
            watch.cancel()

    def _apply(self, batch: WatchBatch) -> None:
        mirror = self._mirror
        notify = self._on_change is not None or self._feeds
        for event in batch.events:
            key = event.kv.key
            before = mirror.get(key)
            if event.type is EventType.PUT:
                mirror[key] = event.kv
            else:
                mirror.pop(key, None)
            if notify:
                self._emit(batch.revision, Event(event.type, event.kv, before))
        self.revision = max(self.revision, batch.revision)
        self._advance()

    def _emit(self, revision: int, event: Event) -> None:
        for feed in list(self._feeds):
            feed._push(revision, event)
        callback = self._on_change
        if callback is None:
            return
        try:
            callback(event)
        except Exception as exc:  # noqa: BLE001 - user code: reported, the cache goes on
            self._report(exc)

    def _report(self, error: BaseException) -> None:
        if self._on_error is None:
            log.error("cache of %r: on_change raised", self.prefix, exc_info=error)
            return
        try:
            self._on_error(error)
        except Exception:
            log.exception("on_error callback of the cache of %r raised", self.prefix)

    def _fail(self, error: BaseException) -> None:
        self.error = error
        if self._on_error is None:
            log.error("cache of %r stopped: %s", self.prefix, error)
        else:
            self._report(error)
        for feed in list(self._feeds):
            feed._end(error)
        self._advance()
