"""The load of the sick-member tests: greenlets that put a key then read it back, recording when
each call succeeded, whether a read was stale (an older value than the one just written, other
than a value whose put raised OutcomeUnknown), and calls that outlived their deadline."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import gevent

import geetcd
from geetcd.testing import EtcdCluster, EtcdMember


@dataclass
class PutThenGet:
    """``greenlets`` loops of put(k, n) then get(k) == n, each call with ``timeout``."""

    client: geetcd.Client
    greenlets: int = 16
    timeout: float = 5.0
    prefix: str = "sick/"
    ok_at: list[float] = field(default_factory=list)
    stale: list[tuple[str, bytes, bytes | None]] = field(default_factory=list)
    late: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    unknown: set[bytes] = field(default_factory=set)
    _stop: bool = False
    _workers: list[gevent.Greenlet[..., None]] = field(default_factory=list)

    def start(self) -> PutThenGet:
        self._workers = [gevent.spawn(self._run, i) for i in range(self.greenlets)]
        return self

    def _call(self, fn: object, *args: object) -> object:
        started = time.monotonic()
        try:
            return fn(*args, timeout=self.timeout)  # type: ignore[operator]
        finally:
            took = time.monotonic() - started
            if took > self.timeout + 0.5:
                self.late.append(took)

    def _run(self, worker: int) -> None:
        key = f"{self.prefix}{worker}"
        n = 0
        while not self._stop:
            n += 1
            value = f"{worker}-{n}".encode()
            try:
                try:
                    self._call(self.client.put, key, value)
                except geetcd.OutcomeUnknown:
                    # It may be applied, even late (after newer writes: a put forwarded to a
                    # paused leader can commit when it resumes): reading it back is not stale.
                    self.unknown.add(value)
                    raise
                self.ok_at.append(time.monotonic())
                kv = self._call(self.client.get, key)
                self.ok_at.append(time.monotonic())
            except geetcd.EtcdError as exc:
                name = type(exc).__name__
                self.errors[name] = self.errors.get(name, 0) + 1
                gevent.sleep(0.01)
                continue
            got = kv.value if isinstance(kv, geetcd.KeyValue) else None
            if got != value and got not in self.unknown:
                self.stale.append((key, value, got))

    def stop(self) -> None:
        self._stop = True
        gevent.joinall(self._workers, timeout=self.timeout + 2)

    def max_gap(self, since: float, until: float) -> float:
        """The longest time in [since, until] with no successful call."""
        marks = [since, *sorted(t for t in self.ok_at if since <= t <= until), until]
        return max(b - a for a, b in itertools.pairwise(marks))


def use_member(client: geetcd.Client, member: EtcdMember) -> None:
    """Make ``member`` the sticky member of ``client`` (after one call)."""
    client.get("warmup")
    state = client.cluster_state
    state._current = next(m for m in state.members if m.url == member.client_url)


def follower(cluster: EtcdCluster) -> EtcdMember:
    leader = cluster.leader()
    return next(m for m in cluster.members if m is not leader)
