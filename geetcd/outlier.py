"""Outlier detection: a member that stops answering while requests wait on it costs a fraction
of a second, not a whole ``attempt_timeout``.

A member can be sick without being dead: paused (SIGSTOP), cut off from its peers (it
accepts requests it cannot serve), black-holed (packets dropped), or forwarding to a paused
leader. Waiting ``attempt_timeout`` (2 s) for each request sent to it stalls every greenlet
that picked it, while the other members answer in a millisecond. Like Envoy's and gRPC's
outlier detection, one greenlet per client (alive only while requests wait) judges each
member by its **silence** relative to what is normal for it and for the cluster:

* a member is *quiet* when attempts are waiting on it and it has answered nothing (no answer
  of any kind, to any request) since the oldest of them was sent, for its *bound*:
  ``SILENCE_FACTOR`` x its typical latency (the larger of the member's own and the median of
  the members'), kept between ``SILENCE_FLOOR`` (150 ms) and ``SILENCE_CAP`` (500 ms). With
  many requests in flight a healthy member answers far more often than its latency, so the
  bound is a generous one;
* a quiet member is then asked one linearizable probe (``Executor.probe``: only a member that
  can reach its leader answers it); an answer within the same bound clears it (a large range
  that is slow to produce, a saturated member, a pause of this process: the member answers
  the probe at once), and silence is measured afresh from then;
* no answer: the member is **ejected**: benched in the cluster state (``mark_failed`` with
  :class:`~geetcd.errors.MemberSilent`, so new calls go to other members and the prober brings
  it back once it answers the linearizable probe again), every idempotent attempt waiting on
  it (reads, read-only txns, keepalives, stream opens) is moved to another member at once, and
  every stream on it is moved (stream liveness reads the same cluster state). A write waiting
  on it ends at once with :class:`~geetcd.errors.OutcomeUnknown`: the answer it would have got
  at ``attempt_timeout``, sooner; it is never sent again (it may still be applied, as after a
  timeout). Calls that chose to wait longer than ``attempt_timeout`` for their answer (admin
  writes such as a member add or a defragmentation) are left alone.

It never misfires into an outage: it never ejects the last member that is neither benched nor
quiet itself, nor more than one member in three at once (several members silent together is
the cluster electing a leader, not a sick member), it does nothing with a single member, and
an ejected member that answers anything is healthy again (``ClusterState.mark_success``).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable

import gevent
import gevent.pool

from geetcd.cluster import ClusterState, Member, MemberState, Waiting
from geetcd.errors import EtcdError, MemberSilent
from geetcd.models import Header
from geetcd.observe import Observers

__all__ = ["SILENCE_CAP", "SILENCE_FACTOR", "SILENCE_FLOOR", "TICK", "SilenceDetector"]

log = logging.getLogger(__name__)
_monotonic = time.monotonic

TICK = 0.05
"""Seconds between two looks at the waiting attempts."""
SILENCE_FLOOR = 0.15
"""Shortest silence that makes a member quiet, and shortest time its probe may take (s)."""
SILENCE_CAP = 0.5
"""Longest silence bound and probe time: past this, a member is judged whatever its latency."""
SILENCE_FACTOR = 4.0
"""Silence and probe bounds in multiples of the typical latency (between floor and cap)."""


class SilenceDetector:
    """The outlier detection of one client (see the module docstring). Building it does no
    I/O; its greenlet runs in ``group`` only while attempts wait. Greenlet-safe."""

    def __init__(
        self,
        cluster: ClusterState,
        probe: Callable[[Member, float], Header],
        group: gevent.pool.Group,
        observers: Observers,
    ) -> None:
        self._cluster = cluster
        self._probe = probe
        self._group = group
        self._observers = observers
        self._greenlet: gevent.Greenlet[[], None] | None = None
        self._probing: set[str] = set()
        self._cleared: dict[str, float] = {}
        self._ejected: set[str] = set()
        self.ejections = 0
        """Members ejected so far (for monitoring and tests)."""
        self.probes = 0
        """Quiet members probed so far."""
        self.enabled = True
        """False turns detection off (attempts then wait their ``attempt_timeout``)."""

    def __repr__(self) -> str:
        running = self._greenlet is not None and not self._greenlet.dead
        return (
            f"<SilenceDetector running={running} probes={self.probes} ejections={self.ejections}>"
        )

    def ensure_running(self) -> None:
        """Start the detector's greenlet if attempts wait and it is not running. Never
        raises, never switches."""
        greenlet = self._greenlet
        if greenlet is not None and not greenlet.dead:
            return  # running: the common case, kept cheap (once per call that waits alone)
        if not self.enabled or len(self._cluster.members) < 2 or self._cluster.closed:
            return
        self._greenlet = self._group.spawn(self._run)

    def _run(self) -> None:
        cluster = self._cluster
        while not cluster.closed and any(m.waiting for m in cluster.members):
            gevent.sleep(TICK)
            self.check()

    def typical_latency(self, member: Member) -> float:
        """The larger of ``member``'s latency estimate and the median of the members'."""
        known = [m.latency for m in self._cluster.members if m.ok_count]
        median = statistics.median(known) if known else 0.0
        return max(member.latency, median)

    def bound(self, member: Member) -> float:
        """The silence bound of ``member``, and the time its probe may take:
        ``SILENCE_FACTOR`` x its typical latency, between ``SILENCE_FLOOR`` and ``SILENCE_CAP``."""
        return min(SILENCE_CAP, max(SILENCE_FLOOR, SILENCE_FACTOR * self.typical_latency(member)))

    def quiet_for(self, member: Member, now: float) -> float:
        """Seconds ``member`` has been silent with attempts waiting on it (0 if none wait)."""
        waiting = member.waiting
        if not waiting:
            return 0.0
        oldest = min(entry.started for entry in list(waiting))
        since = max(oldest, member.answered_at, self._cleared.get(member.url, 0.0))
        return max(0.0, now - since)

    def check(self) -> None:
        """One look at every member (no I/O here: probes run in their own greenlets)."""
        cluster = self._cluster
        members = cluster.members
        if len(members) < 2:
            return
        now = _monotonic()
        for member in members:
            if member.state is MemberState.DOWN or member.url in self._probing:
                continue
            if self.quiet_for(member, now) >= self.bound(member):
                self._probing.add(member.url)
                self.probes += 1
                self._group.spawn(self._confirm, member)

    def _confirm(self, member: Member) -> None:
        """Probe a quiet ``member``; eject it if it does not answer in time."""
        timeout = self.bound(member)
        try:
            try:
                self._probe(member, timeout)
            except EtcdError as exc:
                self._eject(member, exc, timeout)
            else:
                self._cleared[member.url] = _monotonic()
        finally:
            self._probing.discard(member.url)

    def _others_usable(self, member: Member) -> bool:
        """True if some other voting member is in use and not quiet itself."""
        now = _monotonic()
        for other in self._cluster.members:
            if other is member or other.is_learner or other.state is MemberState.DOWN:
                continue
            if other.url in self._probing and other.waiting:
                continue
            if self.quiet_for(other, now) < self.bound(other):
                return True
        return False

    def _eject(self, member: Member, cause: EtcdError, timeout: float) -> None:
        if member.state is MemberState.DOWN or member.answered_at > _monotonic() - timeout:
            return  # benched meanwhile, or it answered something while we probed
        if not self._others_usable(member):
            log.info("etcd member %s is silent, but no other member is usable: kept", member.url)
            return
        members = {m.url: m for m in self._cluster.members}
        self._ejected = {url for url in self._ejected if url in members and members[url].benched()}
        if len(self._ejected) >= max(1, len(members) // 3):
            # Another member is ejected already: several silent at once is the cluster (an
            # election), not one sick member; their requests wait as they would have.
            log.debug("etcd member %s is silent too; not ejected (max ejections)", member.url)
            return
        self._ejected.add(member.url)
        error = MemberSilent(
            f"{member.url} answered nothing for {self.quiet_for(member, _monotonic()):.3f} s "
            f"while requests waited on it, nor a probe in {timeout:.3f} s ({cause.message})",
            member=member.url,
        )
        error.__cause__ = cause
        self.ejections += 1
        log.warning("etcd member %s ejected: %s", member.url, error.message)
        if self._observers.active:
            self._observers.emit("member_ejected", member.url, "silent")
        self._cluster.mark_failed(member, error)
        hub = gevent.get_hub()
        for entry in list(member.waiting):
            if not entry.patient and not entry.done:
                hub.loop.run_callback(_move, entry, error)


def _move(entry: Waiting, error: MemberSilent) -> None:
    """In the hub: raise ``error`` in the greenlet of a waiting attempt, if it still waits (it
    is then blocked inside its attempt, on that member's socket or pool). The attempt loop then
    sends a read elsewhere, and ends a write with OutcomeUnknown (never sent again)."""
    if entry.done or entry.greenlet.dead:
        return
    entry.greenlet.throw(MemberSilent(error.message, member=error.member))
