"""The one stream-liveness mechanism of a client, shared by v3 watch streams and v2 waits.

A stream that is connected registers with the core's :class:`StreamLiveness` and leaves it
when its connection ends. One supervisor greenlet (in the core's group, alive only while
streams are registered) wakes every ``min(CHECK_PERIOD, liveness / 4)`` (at least 50 ms) and,
reading the one cluster state:

* a stream whose member the cluster state marks DOWN (another call, a probe, outlier
  detection or a stream failed on it) loses its connection at once: its owner then resumes
  elsewhere, as after any broken connection;
* a member whose streams have all been silent for ``min(QUIET_PROBE, liveness)`` gets one
  probe (``Executor.probe``: a linearizable read, which a member cut off from its peers or
  from its leader cannot answer; ``PROBE_TIMEOUT``): an answer counts as activity for every
  stream on that member; a failure benches the member (``ClusterState.mark_failed``) and
  aborts the connections of all its streams. So a member holding streams is asked at most
  once per ``QUIET_PROBE`` seconds (one request per member, however many streams), and an
  isolated one is found within ``QUIET_PROBE + PROBE_TIMEOUT`` of its isolation.

Silence is measured from the stream's ``last_activity`` (bytes received) or the member's
last good probe, whichever is newer. A v2 wait sends nothing until its event, so its
member is simply probed every ``QUIET_PROBE`` seconds while the wait lasts.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import gevent

from geetcd.cluster import Member, MemberState
from geetcd.core_api import LiveStream
from geetcd.errors import ConnectionLost, EtcdError

if TYPE_CHECKING:
    from geetcd.core_api import CoreAPI as Core

__all__ = ["DEFAULT_LIVENESS", "LiveStream", "StreamLiveness"]

log = logging.getLogger(__name__)
_monotonic = time.monotonic

#: Seconds a stream may stay silent before its member is probed (``liveness=`` per watch;
#: re-exported by :mod:`geetcd.watch`).
DEFAULT_LIVENESS = 5.0
PROBE_TIMEOUT = 1.0
"""Seconds a liveness probe may take."""
QUIET_PROBE = 0.5
"""A member whose streams were all silent this long (or their liveness, if shorter) is probed."""
CHECK_PERIOD = 0.25
"""Longest pause between two supervisor passes."""


class StreamLiveness:
    """Watches over every connected stream of one core (see the module docstring).
    Building it does no I/O and starts no greenlet. Greenlet-safe."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self._streams: dict[LiveStream, None] = {}
        self._probing: set[str] = set()
        self._probe_ok: dict[str, float] = {}
        self._greenlet: gevent.Greenlet[[], None] | None = None
        self.probes = 0
        """Liveness probes sent so far (one per quiet member per ``QUIET_PROBE`` at most)."""

    def __repr__(self) -> str:
        return (
            f"<StreamLiveness streams={len(self._streams)} probing={len(self._probing)} "
            f"probes={self.probes}>"
        )

    def __len__(self) -> int:
        return len(self._streams)

    def watch(self, stream: LiveStream) -> None:
        """Watch over ``stream`` (connected now) until :meth:`forget`."""
        self._streams[stream] = None
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = self._core.spawn(self._run)

    def forget(self, stream: LiveStream) -> None:
        """Stop watching ``stream`` (its connection ended). Never raises."""
        self._streams.pop(stream, None)

    def _run(self) -> None:
        while self._streams and not self._core.closed:
            period = min(s.liveness for s in list(self._streams)) / 4
            gevent.sleep(min(CHECK_PERIOD, max(0.05, period)))
            self.check()

    def check(self) -> None:
        """One supervisor pass (no I/O here: probes run in their own greenlets)."""
        now = _monotonic()
        down: dict[str, Member] = {}
        silent: dict[str, Member] = {}
        for stream in list(self._streams):
            member = stream.member
            if member is None:
                continue
            quiet = now - max(stream.last_activity, self._probe_ok.get(member.url, 0.0))
            if member.state is MemberState.DOWN:
                down[member.url] = member
            elif quiet >= min(QUIET_PROBE, stream.liveness):
                silent[member.url] = member
        for member in down.values():
            self._evacuate(member, member.last_error)
        for url, member in silent.items():
            if url not in self._probing:
                self._probing.add(url)
                self.probes += 1
                self._core.spawn(self._probe, member)

    def _probe(self, member: Member) -> None:
        try:
            self._core.executor.probe(member, timeout=PROBE_TIMEOUT)
        except EtcdError as exc:
            if self._core.closed:
                return  # closing broke the probe: that says nothing of the member
            log.warning("etcd member %s failed the stream liveness probe: %s", member.url, exc)
            self._core.cluster.mark_failed(member, exc)
            self._evacuate(member, exc)
        else:
            self._probe_ok[member.url] = _monotonic()
        finally:
            self._probing.discard(member.url)

    def _evacuate(self, member: Member, reason: BaseException | None) -> None:
        error = (
            reason
            if reason is not None
            else ConnectionLost(f"etcd member {member.url} is down", member=member.url)
        )
        moved = 0
        for stream in list(self._streams):
            if stream.member is not None and stream.member.url == member.url:
                stream.abort_connection(error)
                moved += 1
        if moved:
            log.info("moving %d stream(s) off %s (%s)", moved, member.url, error)
