"""The one stream supervisor: how every long-lived stream of a client is opened, served, and
resumed on another member after a failure: the HTTP watch stream (geetcd.watch_hub), the
multiplexed WebSocket watch channel (geetcd.watch_mux) and the v2 long poll (geetcd.v2.watch).

:func:`supervise` runs one loop for them all, and each stream supplies only what is its own,
through the :class:`SupervisedStream` protocol: how to open it on a member, how to serve it
once open, and what to record when it moves. The loop decides, in one place:

* **opening** goes through :meth:`Executor.run` (the client's one attempt loop: member pick,
  auth headers, in-flight count, benching of members that fail to open), avoiding the member
  whose stream just failed;
* **backoff**: after the second consecutive failure, :data:`RECONNECT_BACKOFF` (jittered
  exponential, 50 ms to 1 s) before each new open; a stream that serves again (its owner sets
  ``failures`` back to 0) starts over;
* **benching**: a stream that fails on a member with a transient error benches the member
  (``ClusterState.mark_failed``) and resumes elsewhere; a non-transient error is raised;
* **re-authentication**: a stream refused for its token (:func:`should_refresh_token`)
  invalidates the token and reopens once per served connection;
* **fork**: in a forked child that has not adopted the client yet, a stream never reopens:
  :func:`supervise` raises :func:`inherited_stream_error` (the child's first call ends every
  inherited stream, see :meth:`Core.start`);
* **observers**: ``stream_opened`` and ``stream_closed`` of :mod:`geetcd.observe`, once per
  connection.

The keepalive is not a stream: each refresh is one request through :meth:`Executor.run`
(over a per-member WebSocket or a POST), so it shares the loop's backoff, its fork rule and
the one record of a refused WebSocket upgrade (:meth:`Core.refuse_websockets`), not its loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import ClassVar, Protocol, TypeVar

import gevent

from geetcd._executor import Attempt, Executor, should_refresh_token
from geetcd.cluster import ClusterState, Member
from geetcd.config import ExponentialBackoff
from geetcd.errors import ClientClosed, DeadlineExceeded, EtcdError, WatchCanceled
from geetcd.observe import Observers

__all__ = [
    "RECONNECT_BACKOFF",
    "StreamHost",
    "SupervisedStream",
    "inherited_stream_error",
    "supervise",
]

log = logging.getLogger(__name__)
_monotonic = time.monotonic

RECONNECT_BACKOFF = ExponentialBackoff(base=0.05, cap=1.0)
"""The pause before reopening a stream that failed twice or more in a row."""

C = TypeVar("C")


class StreamHost(Protocol):
    """What :func:`supervise` needs of the core (geetcd.core.Core is one)."""

    @property
    def executor(self) -> Executor: ...
    @property
    def cluster(self) -> ClusterState: ...
    @property
    def observers(self) -> Observers: ...
    @property
    def closed(self) -> bool: ...
    @property
    def forked(self) -> bool: ...


class SupervisedStream(Protocol[C]):
    """What a stream gives :func:`supervise` (``C``: its open connection's type)."""

    stream_kind: ClassVar[str]
    """Its kind for observers: ``"watch"``, ``"watch_channel"`` or ``"v2_wait"``."""

    failures: int
    """Consecutive failures; the supervisor counts them, the stream resets them to 0 once it
    serves (a watch: when the server acknowledged it)."""

    def describe(self) -> str:
        """What the stream is, for log lines and errors (``watch '/k'``)."""

    def stopped(self) -> bool:
        """True once the stream must not (re)open: canceled, closed, nothing left to serve."""

    def open(self, attempt: Attempt) -> C:
        """Open the stream on ``attempt.member`` within the attempt's timeouts; raise the
        translated EtcdError of an error answer (the attempt loop judges it)."""

    def serve(self, connection: C, member: Member) -> EtcdError | None:
        """Serve the open ``connection`` until it ends, and close it. Return None when the
        stream is finished (the supervisor returns), or the error that ended it."""

    def unreachable(self, error: EtcdError) -> None:
        """No member could open the stream before the open's deadline (``error``); the
        supervisor keeps trying (a persistent stream) after this."""

    def failed(self, member: Member, error: EtcdError) -> None:
        """The stream on ``member`` failed with a transient ``error``; it resumes elsewhere
        (the supervisor then benches the member)."""


def inherited_stream_error() -> WatchCanceled:
    """The error that ends, in a forked child, a stream (a watch) its parent opened."""
    return WatchCanceled(
        "this watch was created by the parent process before the fork; watch again in this process",
        reason="forked",
    )


def supervise(
    core: StreamHost,
    stream: SupervisedStream[C],
    *,
    auth: bool = True,
    persistent: bool = True,
    deadline: float | None = None,
) -> None:
    """Open, serve and resume ``stream`` until it is finished or stopped (see the module
    docstring). Returns when ``stream.stopped()``, when the client closed, or when ``serve``
    returned None. Raises a non-transient EtcdError of an open or of a served stream,
    DeadlineExceeded past ``deadline``, and :func:`inherited_stream_error` in a forked child.

    ``auth``: send the client's token (False for v2). ``persistent``: keep trying when no
    member can open the stream (else the open's error is raised). ``deadline`` (monotonic):
    the whole stream's, None for none (each open then gets the client's ``timeout``).
    """
    executor = core.executor
    observers: Observers = core.observers
    avoid: list[Member] = []
    auth_retried = False

    def attempt_open(attempt: Attempt) -> tuple[C, Member, Mapping[str, str] | None]:
        return stream.open(attempt), attempt.member, attempt.headers

    while True:
        if stream.failures > 1:
            pause = RECONNECT_BACKOFF.compute(stream.failures - 1)
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - _monotonic()))
            gevent.sleep(pause)
        if stream.stopped() or core.closed:
            return
        if core.forked:
            raise inherited_stream_error()
        open_deadline = _monotonic() + executor.timeout if deadline is None else deadline
        try:
            connection, member, headers = executor.run(
                attempt_open,
                what=stream.describe(),
                idempotent=True,
                deadline=open_deadline,
                avoid=avoid,
                auth=auth,
            )
        except ClientClosed:
            return
        except EtcdError as exc:
            if stream.stopped() or core.closed:
                return
            waited_out = exc.waited_out and deadline is None
            if not persistent or not (exc.transient or waited_out):
                raise
            stream.failures += 1
            stream.unreachable(exc)
            avoid = []
            continue
        if observers.active:
            observers.emit("stream_opened", stream.stream_kind, member.url)
        error: EtcdError | None = None
        try:
            error = stream.serve(connection, member)
        finally:
            if observers.active:
                observers.emit("stream_closed", stream.stream_kind, member.url, error)
        if error is None or stream.stopped() or core.closed:
            return
        if core.forked:
            raise inherited_stream_error()  # the fork severed it: the member is fine
        if stream.failures == 0:
            auth_retried = False  # it served: a later expiry may re-authenticate again
        if should_refresh_token(error) and auth and executor.auth is not None and not auth_retried:
            auth_retried = True
            stream.failures += 1  # until it serves again: then a later expiry may re-auth
            executor.auth.invalidate(headers)
            log.info("%s refused (%s); re-authenticating once", stream.describe(), error)
            continue
        if not error.transient or isinstance(error, DeadlineExceeded):
            raise error
        stream.failures += 1
        stream.failed(member, error)
        core.cluster.mark_failed(member, error)
        avoid = [member]
