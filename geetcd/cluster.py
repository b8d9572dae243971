"""The shared cluster state: members, their health, and the choice of member for each attempt.

One :class:`ClusterState` per client serves every unary call, watch stream and keepalive:

* :meth:`ClusterState.pick` returns a usable member at once when there is one (no I/O), and
  otherwise waits, cooperatively, until one recovers or the caller's deadline passes
  (then :class:`~geetcd.errors.ClusterUnavailable` with each member's last error).
* :meth:`ClusterState.mark_failed` benches a member (state DOWN) for a jittered, growing
  delay; a background prober greenlet probes benched members back (a serializable
  count-only range sent with ``Grpc-Metadata-hasleader``), never a user request.
* A member that passes a probe (a real KV request answered with a leader) is HEALTHY again.
  Members that auto-sync discovers start SUSPECT: usable only when no HEALTHY member is left,
  probed at once, then HEALTHY or DOWN.
* Learners (``isLearner`` in the member list) are known members, so calls pinned to them
  with ``endpoint=`` work, but :meth:`ClusterState.pick` never returns one: they refuse most
  client requests. Promoted learners become pickable at the next member list applied.
* Optional auto-sync refreshes the member list from ``/v3/cluster/member/list``: at start,
  every ``sync_interval`` seconds, and soon after a member fails. A list from another
  cluster id is refused (logged as an error, members unchanged).

State changes are logged on the ``geetcd.cluster`` logger, one line per change, and passed to
the optional ``on_state_change`` hook.
"""

from __future__ import annotations

import enum
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event
import gevent.pool

from geetcd.config import Backoff, ExponentialBackoff
from geetcd.errors import (
    ClusterMismatch,
    ClusterUnavailable,
    EtcdError,
    InvalidArgument,
    InvalidType,
)
from geetcd.models import Header, MemberList
from geetcd.observe import Observers
from geetcd.transport import parse_endpoint

__all__ = ["ClusterState", "Member", "MemberState", "PickPolicy", "StateChange"]

log = logging.getLogger(__name__)

_monotonic = time.monotonic


class MemberState(enum.Enum):
    """HEALTHY: in use. SUSPECT: not yet verified (new member), probed at once, used only as
    a last resort. DOWN: benched after a failure, probed back with growing, jittered delays."""

    HEALTHY = "healthy"
    SUSPECT = "suspect"
    DOWN = "down"


class PickPolicy(enum.Enum):
    """How :meth:`ClusterState.pick` chooses among usable members.

    STICKY_RANDOM (default, like go-etcd): one random member serves everything until it
    fails, which keeps connections warm. ROUND_ROBIN spreads calls in turn. LEAST_LOADED
    takes the member with the fewest calls in flight (then the lowest latency).
    """

    STICKY_RANDOM = "sticky-random"
    ROUND_ROBIN = "round-robin"
    LEAST_LOADED = "least-loaded"


class Member:
    """One endpoint of the cluster and what this client knows of its health.

    Attributes are read freely (nothing here does I/O); only ClusterState changes them.
    """

    __slots__ = (
        "answered_at",
        "benched_until",
        "failures",
        "history",
        "id",
        "inflight",
        "is_learner",
        "last_error",
        "latency",
        "name",
        "ok_count",
        "state",
        "url",
        "waiting",
    )

    def __init__(self, url: str, *, member_id: int | None = None, name: str = "") -> None:
        self.url = url
        self.id = member_id
        self.name = name
        self.state = MemberState.HEALTHY
        self.latency = 0.0
        self.inflight = 0
        self.is_learner = False
        self.failures = 0
        self.ok_count = 0
        self.last_error: BaseException | None = None
        self.benched_until = 0.0
        self.history: deque[tuple[float, str]] = deque(maxlen=16)
        self.waiting: dict[Waiting, None] = {}
        """Attempts sent to this member and not yet answered (see :class:`Waiting`)."""
        self.answered_at = 0.0
        """Monotonic time of its last answer (any answer: success or an error answer)."""

    def benched(self) -> bool:
        """True while the member is DOWN (benched after a failure). No I/O."""
        return self.state is MemberState.DOWN

    def __repr__(self) -> str:
        ident = f" {self.name}" if self.name else ""
        ident += " learner" if self.is_learner else ""
        err = f" last_error={type(self.last_error).__name__}" if self.last_error else ""
        return (
            f"<Member{ident} {self.url} {self.state.value} latency={self.latency * 1000:.1f}ms "
            f"inflight={self.inflight} failures={self.failures}{err}>"
        )


class Waiting:
    """One attempt waiting on a member (registered by the attempt loop): when it started,
    the greenlet waiting, whether it may be sent again elsewhere (idempotent), whether it
    chose to wait longer than ``attempt_timeout`` (patient), and whether it is over. Read by
    outlier detection (:mod:`geetcd.outlier`)."""

    __slots__ = ("done", "greenlet", "idempotent", "patient", "started")

    def __init__(self, started: float, greenlet: Any, idempotent: bool, patient: bool) -> None:
        self.started = started
        self.greenlet = greenlet
        self.idempotent = idempotent
        self.patient = patient
        self.done = False


@dataclass(frozen=True, slots=True)
class StateChange:
    """What the ``on_state_change`` hook receives."""

    member: Member
    old: MemberState
    new: MemberState
    error: BaseException | None


def normalize_endpoints(endpoints: str | Iterable[str]) -> list[str]:
    """A list of ``scheme://host:port`` URLs from a list or a comma-separated string."""
    if isinstance(endpoints, str):
        items = [e.strip() for e in endpoints.split(",")]
    elif isinstance(endpoints, Iterable):
        items = [e.strip() if isinstance(e, str) else e for e in endpoints]
    else:
        raise InvalidType(f"endpoints must be a str or a list of str, got {endpoints!r}")
    urls: list[str] = []
    for item in items:
        if item == "":
            continue
        scheme, host, port = parse_endpoint(item)
        shown = f"[{host}]" if ":" in host else host
        url = f"{scheme}://{shown}:{port}"
        if url not in urls:
            urls.append(url)
    if not urls:
        raise InvalidArgument("at least one endpoint is required")
    return urls


class ClusterState:
    """Members and their health, shared by everything a client does. Greenlet-safe.

    ``probe(member) -> Header`` and ``fetch_members() -> MemberList`` are the client's I/O,
    injected so that this class holds only policy (and unit tests use fakes).
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        probe: Callable[[Member], Header],
        fetch_members: Callable[[], MemberList] | None = None,
        group: gevent.pool.Group,
        policy: PickPolicy = PickPolicy.STICKY_RANDOM,
        bench_backoff: Backoff | None = None,
        sync_interval: float | None = None,
        sync_on_start: bool = False,
        sync_after_failure: bool = True,
        on_state_change: Callable[[StateChange], None] | None = None,
        on_member_removed: Callable[[Member], None] | None = None,
        pool_usage: Callable[[str], tuple[int, int]] | None = None,
        clock: Callable[[], float] = _monotonic,
        observers: Observers | None = None,
    ) -> None:
        if not isinstance(policy, PickPolicy):
            raise InvalidArgument(f"policy must be a PickPolicy, got {policy!r}")
        self.members: list[Member] = [Member(url) for url in endpoints]
        self.policy = policy
        self.cluster_id: int | None = None
        self._probe = probe
        self._fetch_members = fetch_members
        self._group = group
        self._bench_backoff = bench_backoff or ExponentialBackoff(base=0.1, cap=2.0)
        self._sync_interval = sync_interval
        self._sync_on_start = sync_on_start
        self._sync_after_failure = sync_after_failure and fetch_members is not None
        self._on_state_change = on_state_change
        self._on_member_removed = on_member_removed
        self._pool_usage = pool_usage
        self._clock = clock
        self._observers = observers if observers is not None else Observers()
        self.on_waiting: Callable[[], None] | None = None
        """Called by the attempt loop when a member gets waiting attempts again (outlier
        detection's start; set by the core). Must not raise or switch."""
        self._current: Member | None = None
        self._rr = itertools.count()
        self._changed = gevent.event.Event()
        self._prober: gevent.Greenlet[[], None] | None = None
        self._syncer: gevent.Greenlet[[], None] | None = None
        self._sync_wanted = gevent.event.Event()
        self._last_sync = 0.0
        self._started = False
        self._closed = False

    def __repr__(self) -> str:
        lines = [f"<ClusterState policy={self.policy.value} cluster_id={self.cluster_id}"]
        for m in self.members:
            if self._pool_usage is not None:
                used, size = self._pool_usage(m.url)
                lines.append(f"  {m!r} pool={used}/{size}")
            else:
                lines.append(f"  {m!r}")
        return "\n".join(lines) + ">"

    # ------------------------------------------------------------------ picking
    def start(self) -> None:
        """Start the background sync greenlet if configured. Idempotent; does no I/O itself."""
        if self._started or self._closed:
            return
        self._started = True
        if self._fetch_members is not None and (self._sync_interval or self._sync_on_start):
            if self._sync_on_start:
                self._sync_wanted.set()
            self._syncer = self._group.spawn(self._sync_loop)

    def _usable(self, avoid: Sequence[Member]) -> list[Member]:
        voters = [m for m in self.members if not m.is_learner and m not in avoid]
        healthy = [m for m in voters if m.state is MemberState.HEALTHY]
        if healthy:
            return healthy
        return [m for m in voters if m.state is MemberState.SUSPECT]

    def _choose(self, usable: list[Member]) -> Member:
        if self.policy is PickPolicy.STICKY_RANDOM:
            member = random.choice(usable)
            self._current = member
            return member
        if self.policy is PickPolicy.ROUND_ROBIN:
            return usable[next(self._rr) % len(usable)]
        return min(usable, key=lambda m: (m.inflight, m.latency))

    def pick(self, deadline: float, avoid: Sequence[Member] = ()) -> Member:
        """A member to send the next attempt to; never does I/O.

        Never returns a learner. Prefers HEALTHY members, then SUSPECT ones, skipping
        ``avoid`` (members that already failed this call) unless nothing else is usable. When
        every member is DOWN, waits cooperatively for a probe to bring one back; raises
        ClusterUnavailable at ``deadline`` (a ``time.monotonic()`` value) with each member's
        last error.
        """
        current = self._current
        if (
            current is not None
            and current.state is MemberState.HEALTHY
            and not current.is_learner
            and self.policy is PickPolicy.STICKY_RANDOM
            and (not avoid or current not in avoid)
        ):
            return current
        while True:
            if self._closed:
                raise ClusterUnavailable("client is closed", errors={})
            usable = self._usable(avoid) or self._usable(())
            if usable:
                return self._choose(usable)
            self._ensure_prober()
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise ClusterUnavailable(
                    f"no etcd member answered within the deadline ({len(self.members)} members)",
                    errors={m.url: m.last_error for m in self.members},
                )
            self._changed.wait(remaining)

    # ------------------------------------------------------------------ health
    def mark_success(self, member: Member, latency: float) -> None:
        """Record a successful call: updates the latency estimate; SUSPECT becomes HEALTHY."""
        member.latency += 0.2 * (latency - member.latency) if member.ok_count else latency
        member.ok_count += 1
        if member.state is not MemberState.HEALTHY or member.failures:
            member.failures = 0
            if member.state is not MemberState.HEALTHY:
                self._transition(member, MemberState.HEALTHY, None)

    def mark_failed(self, member: Member, error: BaseException) -> None:
        """Bench ``member`` after ``error``: state DOWN, probed back in the background.

        Many greenlets failing on the same member at once bench it once (one log line).
        Does nothing once the cluster state is closed.
        """
        if self._closed:
            return  # closing breaks connections: that says nothing of the member
        member.last_error = error
        member.history.append((time.time(), f"{type(error).__name__}: {error}"))
        if member.state is MemberState.DOWN:
            return
        member.failures += 1
        member.benched_until = self._clock() + self._bench_backoff.compute(member.failures)
        if self._current is member:
            self._current = None
        self._transition(member, MemberState.DOWN, error)
        self._ensure_prober()
        if self._sync_after_failure:
            self.request_sync()

    def _transition(self, member: Member, new: MemberState, error: BaseException | None) -> None:
        old = member.state
        if old is new:
            return
        member.state = new
        if new is MemberState.DOWN:
            log.warning("etcd member %s: %s -> down (%s)", member.url, old.value, error)
        else:
            log.info("etcd member %s: %s -> %s", member.url, old.value, new.value)
        if new is not MemberState.DOWN:
            self._wake()
        if self._observers.active:
            self._observers.emit("member_state_changed", member.url, old.value, new.value, error)
        if self._on_state_change is not None:
            try:
                self._on_state_change(StateChange(member, old, new, error))
            except Exception:
                log.exception("on_state_change hook raised; ignored")

    def _wake(self) -> None:
        event, self._changed = self._changed, gevent.event.Event()
        event.set()

    # ------------------------------------------------------------------ probing
    def _ensure_prober(self) -> None:
        if self._closed:
            return
        if self._prober is None or self._prober.dead:
            self._prober = self._group.spawn(self._probe_loop)

    def _probe_loop(self) -> None:
        while not self._closed:
            down = [m for m in self.members if m.state is not MemberState.HEALTHY]
            if not down:
                return
            now = self._clock()
            due = [m for m in down if m.benched_until <= now]
            if due:
                probes = [self._group.spawn(self._probe_one, m) for m in due]
                gevent.joinall(probes)
                continue
            gevent.sleep(max(0.005, min(m.benched_until for m in down) - now))

    def _probe_one(self, member: Member) -> None:
        try:
            header = self._probe(member)
            self._check_cluster_id(header.cluster_id, member.url)
        except EtcdError as exc:
            member.last_error = exc
            member.failures += 1
            member.benched_until = self._clock() + self._bench_backoff.compute(member.failures)
            log.debug("probe of %s failed: %s", member.url, exc)
            if member.state is MemberState.SUSPECT:
                self._transition(member, MemberState.DOWN, exc)
            return
        member.failures = 0
        self._transition(member, MemberState.HEALTHY, None)

    def _check_cluster_id(self, cluster_id: int, url: str) -> None:
        if not cluster_id:
            return
        if self.cluster_id is None:
            self.cluster_id = cluster_id
        elif cluster_id != self.cluster_id:
            raise ClusterMismatch(
                f"member {url} belongs to cluster {cluster_id:x}, "
                f"this client to cluster {self.cluster_id:x}",
                member=url,
            )

    # ------------------------------------------------------------------ membership
    def request_sync(self) -> None:
        """Ask the sync greenlet for a member-list refresh soon (rate-limited). Never raises."""
        if self._fetch_members is None or self._closed:
            return
        self._sync_wanted.set()
        if self._syncer is None or self._syncer.dead:
            self._syncer = self._group.spawn(self._sync_loop)

    def _sync_loop(self) -> None:
        while not self.closed:
            self._sync_wanted.wait(self._sync_interval)
            self._sync_wanted.clear()
            if self._closed_now():
                return
            wait = self._last_sync + 1.0 - self._clock()
            if wait > 0:
                gevent.sleep(wait)
            try:
                self.sync()
            except EtcdError as exc:
                log.warning("etcd member list refresh failed: %s", exc)
            if self._sync_interval is None and not self._sync_wanted.is_set():
                return

    def sync(self) -> list[Member]:
        """Refresh the members from the cluster now; returns the new member list.

        Raises ClusterMismatch (members unchanged) when the list comes from another cluster,
        and whatever the fetch raises. Members keep their health across a sync.
        """
        if self._fetch_members is None:
            raise InvalidArgument("this cluster state has no member-list source")
        self._last_sync = self._clock()
        member_list = self._fetch_members()
        self.apply_member_list(member_list)
        return list(self.members)

    def apply_member_list(self, member_list: MemberList) -> None:
        """Add members that appeared and drop those that left (by client URL); learners are
        kept with ``is_learner`` set (never picked), promoted ones lose it.

        A list with no started voting member (no client URLs at all) is ignored.
        """
        try:
            self._check_cluster_id(member_list.header.cluster_id, "member list")
        except ClusterMismatch:
            log.error(
                "refusing a member list from cluster %x (client bound to %x)",
                member_list.header.cluster_id,
                self.cluster_id or 0,
            )
            raise
        wanted: dict[str, tuple[int, str, bool]] = {}
        for info in member_list.members:
            for url in info.client_urls:
                try:
                    (normalized,) = normalize_endpoints(url)
                except InvalidArgument:
                    continue
                wanted[normalized] = (info.id, info.name, info.is_learner)
        if not any(not learner for _, _, learner in wanted.values()):
            return
        existing = {m.url: m for m in self.members}
        new_members: list[Member] = []
        added = False
        for url, (member_id, name, learner) in wanted.items():
            member = existing.pop(url, None)
            if member is None:
                member = Member(url, member_id=member_id, name=name)
                member.state = MemberState.SUSPECT
                added = True
                kind = " (learner)" if learner else ""
                log.info("etcd member %s (%s)%s joined the client's view", url, name, kind)
                if self._observers.active:
                    self._observers.emit("member_state_changed", url, "added", "suspect", None)
            else:
                member.id, member.name = member_id, name
                if member.is_learner and not learner:
                    log.info("etcd member %s (%s) was promoted to a voting member", url, name)
            member.is_learner = learner
            if learner and self._current is member:
                self._current = None
            new_members.append(member)
        self.members = new_members
        for gone in existing.values():
            log.info("etcd member %s left the client's view", gone.url)
            if self._observers.active:
                self._observers.emit(
                    "member_state_changed", gone.url, gone.state.value, "removed", None
                )
            if self._current is gone:
                self._current = None
            if self._on_member_removed is not None:
                self._on_member_removed(gone)
        if added:
            self._ensure_prober()
        self._wake()

    def _closed_now(self) -> bool:  # a call: mypy must not narrow it across a wait
        return self._closed

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Stop background work and wake every waiter (they raise ClusterUnavailable)."""
        self._closed = True
        self._sync_wanted.set()
        self._wake()
