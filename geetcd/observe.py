"""The one observer hook: everything a client does that an operator may want to see, reported
to :class:`Observer` objects attached to its core (``client.core.observers``).

Metrics (:mod:`geetcd.metrics`) and traces (:mod:`geetcd.tracing`) are adapters of this hook;
users may attach their own observer too::

    class Slow(geetcd.Observer):
        def call_ended(self, call, seconds, error):
            if seconds > 0.1:
                print("slow", call.method, call.member, seconds)

    client.core.add_observer(Slow())

Guarantees:

* With no observer attached the hot path pays one attribute test per call and per attempt:
  no object is built, no clock is read for the hook.
* Every method is called in the greenlet where the thing happened (a call's
  :meth:`Observer.call_started` in its caller's greenlet, so ``contextvars`` of the caller are
  visible there), and must neither raise nor switch greenlets. An observer that raises is
  logged once per method and otherwise ignored: it never fails a call.
* Label-like arguments are bounded: method names come from the code, members are the
  cluster's member URLs, kinds and reasons are the constants documented on each method.
  Keys, lease IDs and watch IDs are never passed.
"""

from __future__ import annotations

import logging
from typing import Any

from geetcd.errors import InvalidType

__all__ = ["CallRecord", "Observer", "Observers"]

log = logging.getLogger(__name__)


class CallRecord:
    """One client call as observers see it: created by :meth:`Observers.call_started` when an
    observer is attached, ended once by :meth:`Observers.call_ended`.

    ``method``: the client method (``get``, ``put``, ``range``, ``txn``, ``delete``,
    ``lease_grant``, ``status``, ...). ``member``: URL of the member whose answer ended the call
    (None when none answered). ``batch_size``: ops in the txn that carried this call (1 when
    sent alone). ``attempts``: attempts reported so far. ``observers``: the observers this call
    reports to (those attached when it started). An observer finds what its own
    ``call_started`` returned (a span, say) with :meth:`context_of`.
    """

    __slots__ = ("_context", "attempts", "batch_size", "member", "method", "observers", "started")

    def __init__(self, method: str, started: float, observers: tuple[Observer, ...]) -> None:
        self.method = method
        self.started = started
        self.member: str | None = None
        self.batch_size = 1
        self.attempts = 0
        self.observers = observers
        self._context: list[Any] = [None] * len(observers)

    def context_of(self, observer: Observer) -> Any:
        """What ``observer.call_started(self)`` returned (None if it is not one of
        ``observers`` or raised). Never raises."""
        for index, candidate in enumerate(self.observers):
            if candidate is observer:
                return self._context[index]
        return None

    def __repr__(self) -> str:
        return (
            f"<CallRecord {self.method} member={self.member} attempts={self.attempts} "
            f"batch={self.batch_size}>"
        )


class Observer:
    """Base class of observers: every method does nothing; override the ones you need.

    ``member`` arguments are member URLs (``http://127.0.0.1:2379``). ``error`` arguments are
    the exception that ended the thing (a :class:`~geetcd.errors.EtcdError` almost always), or
    None for success.
    """

    # ------------------------------------------------------------------ calls and attempts
    def call_started(self, call: CallRecord) -> Any:
        """A client call starts, in its caller's greenlet. What this returns is given back by
        ``call.context_of(self)`` in the later hooks of this call (None if unused)."""
        return None

    def attempt_ended(
        self, call: CallRecord, member: str, seconds: float, error: BaseException | None
    ) -> None:
        """One attempt of ``call`` on ``member`` ended (``error`` None: it answered). An
        attempt refused before sending (member benched meanwhile) is not reported."""

    def call_ended(self, call: CallRecord, seconds: float, error: BaseException | None) -> None:
        """``call`` returned (``error`` None) or raised ``error``; ``seconds`` since it started."""

    def hedged(self, call: CallRecord, member: str) -> None:
        """A read of ``call`` had no answer in ``hedge_delay`` and was also sent to ``member``
        (or moved there at once when its first member was judged an outlier)."""

    # ------------------------------------------------------------------ members
    def member_state_changed(
        self, member: str, old: str, new: str, error: BaseException | None
    ) -> None:
        """The cluster state moved ``member`` from ``old`` to ``new`` (``"healthy"``,
        ``"suspect"``, ``"down"``, or ``"removed"`` when it left the member list; ``"added"``
        as ``old`` when it joined)."""

    def member_ejected(self, member: str, reason: str) -> None:
        """Outlier detection stopped picking ``member`` (``reason``: ``"silent"``), before any
        call to it failed."""

    # ------------------------------------------------------------------ streams
    def stream_opened(self, kind: str, member: str) -> None:
        """A long-lived stream opened on ``member``. ``kind``: ``"watch"`` (an HTTP watch
        stream), ``"watch_channel"`` (a WebSocket carrying many watches), ``"v2_wait"``,
        ``"keepalive"`` (a keepalive WebSocket or POST stream)."""

    def stream_closed(self, kind: str, member: str, error: BaseException | None) -> None:
        """A stream that :meth:`stream_opened` reported ended (``error`` None: closed by us)."""

    # ------------------------------------------------------------------ watches
    def watch_created(self) -> None:
        """A watch handle was created (its server stream may be shared)."""

    def watch_ended(self, reason: str) -> None:
        """A watch handle ended. ``reason``: ``"canceled"`` (by the user or close),
        ``"overflow"`` (its buffer overflowed), ``"compacted"``, ``"error"``, ``"forked"``."""

    def watch_events(self, count: int) -> None:
        """``count`` events were received from a server stream (counted once per stream,
        not per subscriber)."""

    def watch_resumed(self, member: str, from_revision: int) -> None:
        """A watch stream resumed on ``member`` from ``from_revision`` after its stream
        failed (each watch carried by the stream is reported once)."""

    # ------------------------------------------------------------------ leases
    def lease_kept(self, count: int) -> None:
        """The number of kept-alive leases changed by ``count`` (+1 kept, -1 released/lost)."""

    def keepalive_sent(self, member: str, leases: int, error: BaseException | None) -> None:
        """A keepalive request for ``leases`` leases to ``member`` was answered (``error``
        None) or failed."""

    def lease_lost(self, reason: str) -> None:
        """A :class:`~geetcd.lease.Lease` handle's ``lost`` was set (kept alive or not);
        ``reason`` is the :class:`~geetcd.lease.LeaseLoss` value (``"expired"``,
        ``"revoked"``, ``"unreachable"``, ``"inherited"``...)."""

    # ------------------------------------------------------------------ batching
    def batch_sent(self, kind: str, size: int) -> None:
        """A txn carrying ``size`` batched ops was answered; ``kind`` ``"read"`` or ``"write"``."""


class Observers:
    """The observers attached to one core, and the guarded fan-out to them.

    Features call these methods only after testing ``core.observers.active`` (a plain bool),
    so nothing is paid while no observer is attached. Greenlet-safe (attach and detach replace
    an immutable tuple).
    """

    __slots__ = ("_failed", "active", "all")

    def __init__(self) -> None:
        self.all: tuple[Observer, ...] = ()
        self.active = False
        self._failed: set[tuple[int, str]] = set()

    def __repr__(self) -> str:
        return f"<Observers {[type(o).__name__ for o in self.all]}>"

    def add(self, observer: Observer) -> None:
        """Attach ``observer`` (after those already attached). InvalidType (a TypeError) if it
        is not an Observer."""
        if not isinstance(observer, Observer):
            kind = type(observer).__name__  # type: ignore[unreachable]  # untyped callers
            raise InvalidType(f"observer must be a geetcd.Observer, got {kind}")
        self.all = (*self.all, observer)
        self.active = True

    def remove(self, observer: Observer) -> None:
        """Detach ``observer``; no error if it is not attached. Calls already started keep
        reporting to the observers they started with."""
        self.all = tuple(o for o in self.all if o is not observer)
        self.active = bool(self.all)

    def _warn(self, observer: Observer, what: str) -> None:
        mark = (id(observer), what)
        if mark not in self._failed:
            self._failed.add(mark)
            log.exception("observer %r raised in %s; ignored from now on silently", observer, what)

    # ------------------------------------------------------------------ calls
    def call_started(self, method: str, started: float) -> CallRecord:
        """A :class:`CallRecord` for a call of ``method`` that started at ``started``
        (monotonic), after every observer's ``call_started``."""
        observers = self.all
        call = CallRecord(method, started, observers)
        for index, observer in enumerate(observers):
            try:
                call._context[index] = observer.call_started(call)
            except Exception:  # noqa: BLE001 - logged in _warn; an observer never fails a call
                self._warn(observer, "call_started")
        return call

    def attempt_ended(
        self, call: CallRecord, member: str, seconds: float, error: BaseException | None
    ) -> None:
        """Fan :meth:`Observer.attempt_ended` out to the observers ``call`` started with."""
        call.attempts += 1
        for observer in call.observers:
            try:
                observer.attempt_ended(call, member, seconds, error)
            except Exception:  # noqa: BLE001 - logged in _warn; an observer never fails a call
                self._warn(observer, "attempt_ended")

    def call_ended(self, call: CallRecord, ended: float, error: BaseException | None) -> None:
        """Fan :meth:`Observer.call_ended` out to the observers ``call`` started with."""
        seconds = ended - call.started
        for observer in call.observers:
            try:
                observer.call_ended(call, seconds, error)
            except Exception:  # noqa: BLE001 - logged in _warn; an observer never fails a call
                self._warn(observer, "call_ended")

    def hedged(self, call: CallRecord, member: str) -> None:
        """Fan :meth:`Observer.hedged` out to the observers ``call`` started with."""
        for observer in call.observers:
            try:
                observer.hedged(call, member)
            except Exception:  # noqa: BLE001 - logged in _warn; an observer never fails a call
                self._warn(observer, "hedged")

    # ------------------------------------------------------------------ everything else
    def emit(self, event: str, *args: Any) -> None:
        """Call ``observer.<event>(*args)`` on every attached observer (the events of
        :class:`Observer` other than the call hooks)."""
        for observer in self.all:
            try:
                getattr(observer, event)(*args)
            except Exception:  # noqa: BLE001 - logged in _warn; an observer never fails a call
                self._warn(observer, event)
