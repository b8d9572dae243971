"""The session pool of one client: one kept-alive :class:`geetcd.Session` per TTL, shared by
the client's locks and elections, and the per-name FIFO gates in front of etcd.

Created once per client by ``client.lock`` / ``client.election`` on first use. Sessions are
granted lazily (the first acquire or campaign with a TTL grants it), replaced by a fresh
one when lost, and revoked when the client closes (``client.close()`` closes every session
of the client; a revoke deletes every lock and election key of the session at once).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gevent.event

from geetcd.errors import DeadlineExceeded, InvalidArgument, InvalidType
from geetcd.recipes.gate import FifoGate, remaining

if TYPE_CHECKING:
    from geetcd.client import Client
    from geetcd.lease import Session

__all__ = ["SessionPool", "check_ttl"]


def check_ttl(ttl: object) -> int:
    """``ttl`` as an int of seconds >= 1; InvalidType for a non-int or a bool,
    InvalidArgument below 1. No I/O."""
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        raise InvalidType(f"ttl must be an int of seconds, got {type(ttl).__name__}")
    if ttl < 1:
        raise InvalidArgument(f"ttl must be >= 1 second, got {ttl}")
    return ttl


class SessionPool:
    """One kept-alive session per TTL for a client, and one :class:`FifoGate` per key prefix.

    :meth:`session` never returns a session that is known lost or closed; concurrent callers
    asking for the same TTL share one grant. :meth:`gate` returns the gate every lock and
    election of this client on that prefix queues on (greenlet-safe: gevent switches only
    inside calls that wait).
    """

    __slots__ = ("_client", "_gates", "_granting", "_sessions")

    def __init__(self, client: Client) -> None:
        self._client = client
        self._sessions: dict[int, Session] = {}
        self._granting: dict[int, gevent.event.Event] = {}
        self._gates: dict[bytes, FifoGate] = {}

    def __repr__(self) -> str:
        ttls = ",".join(str(t) for t in sorted(self._sessions)) or "-"
        return f"<SessionPool ttls={ttls} gates={len(self._gates)}>"

    def current(self, ttl: int) -> Session | None:
        """The live session of ``ttl`` if one exists; no I/O."""
        session = self._sessions.get(ttl)
        if session is None or session.closed or session.lost.is_set():
            return None
        return session

    def session(self, ttl: int, *, deadline: float | None = None) -> Session:
        """The live session of ``ttl``, granting one (kept alive) if there is none.

        Raises what the lease grant raises (OutcomeUnknown, ClusterUnavailable,
        ClientClosed...), or DeadlineExceeded if ``deadline`` (monotonic) passes while another
        greenlet's grant for the same TTL is under way.
        """
        check_ttl(ttl)
        while True:
            session = self.current(ttl)
            if session is not None:
                return session
            pending = self._granting.get(ttl)
            if pending is None:
                return self._grant(ttl, deadline)
            if not pending.wait(remaining(deadline)):
                raise DeadlineExceeded(f"no session of ttl {ttl} before the deadline")

    def _grant(self, ttl: int, deadline: float | None) -> Session:
        done = self._granting[ttl] = gevent.event.Event()
        try:
            old = self._sessions.pop(ttl, None)
            if old is not None:
                old.close()  # lost already: no revoke is sent, it only leaves the keepalive
            session = self._client.session(ttl, timeout=remaining(deadline))
            self._sessions[ttl] = session
            return session
        finally:
            del self._granting[ttl]
            done.set()

    def gate(self, prefix: bytes) -> FifoGate:
        """The FIFO gate of ``prefix`` (created on first use). Acquire it before yielding
        to other greenlets, and give it back with :meth:`leave`."""
        gate = self._gates.get(prefix)
        if gate is None:
            gate = self._gates[prefix] = FifoGate()
        return gate

    def leave(self, prefix: bytes, gate: FifoGate) -> None:
        """Forget ``gate`` if it is idle (nobody holds or waits); no I/O, never raises."""
        if gate.idle and self._gates.get(prefix) is gate:
            del self._gates[prefix]
