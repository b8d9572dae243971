"""What the core's own components see of the core: the Protocols :class:`CoreAPI`,
:class:`LivenessSupervisor` and :class:`LiveStream`.

:class:`geetcd.core.Core` builds the watch hub, the keepalive, the keepalive channels and
the stream-liveness supervisor, and each of them holds a reference back to the core. They
type that reference by :class:`CoreAPI`, never by the ``Core`` class: ``core.py`` imports
them and none of them imports ``core.py``, so the import graph has no cycle (mypy checks
that ``Core`` satisfies the Protocol wherever a component is built). The features above the
core (KV, leases, watches, auth, maintenance, v2...) import ``Core`` itself.

This module holds types only: it imports nothing of geetcd at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import gevent

    from geetcd._executor import Executor
    from geetcd.cluster import ClusterState, Member
    from geetcd.config import Retry
    from geetcd.observe import Observers
    from geetcd.protocol.codec import Keyspace
    from geetcd.transport import Transport

__all__ = ["CoreAPI", "LiveStream", "LivenessSupervisor"]


class LiveStream(Protocol):
    """What the stream-liveness supervisor needs from a registered stream."""

    @property
    def member(self) -> Member | None:
        """The member the stream is connected to (None: not connected)."""

    @property
    def liveness(self) -> float:
        """Seconds of silence after which the member is probed."""

    @property
    def last_activity(self) -> float:
        """Monotonic time of the last bytes received."""

    def abort_connection(self, reason: BaseException) -> None:
        """Drop the connection (from the supervisor); the owner resumes elsewhere."""


class LivenessSupervisor(Protocol):
    """The core's one stream-liveness supervisor (:class:`geetcd.liveness.StreamLiveness`)."""

    def watch(self, stream: LiveStream) -> None:
        """Watch over ``stream`` (connected now) until :meth:`forget`."""

    def forget(self, stream: LiveStream) -> None:
        """Stop watching ``stream`` (its connection ended). Never raises."""


class CoreAPI(Protocol):
    """The parts of :class:`geetcd.core.Core` its components use (see the module
    docstring; the meaning of each is documented on ``Core``)."""

    @property
    def ks(self) -> Keyspace: ...

    @property
    def transport(self) -> Transport: ...

    @property
    def cluster(self) -> ClusterState: ...

    @property
    def executor(self) -> Executor: ...

    @property
    def liveness(self) -> LivenessSupervisor: ...

    @property
    def streams(self) -> str: ...

    @property
    def observers(self) -> Observers: ...

    @property
    def websocket_refused(self) -> str | None: ...

    @property
    def websockets_enabled(self) -> bool: ...

    def refuse_websockets(self, reason: str) -> bool: ...

    @property
    def closed(self) -> bool: ...

    @property
    def forked(self) -> bool: ...

    def start(self) -> None: ...

    def on_close(self, hook: Callable[[], None]) -> None: ...

    def remove_close_hook(self, hook: Callable[[], None]) -> None: ...

    def spawn(self, func: Callable[..., Any], *args: Any) -> gevent.Greenlet[..., Any]: ...

    def call(  # noqa: PLR0917 - the signature of Core.call
        self,
        path: str,
        body: dict[str, Any],
        parse: Callable[[dict[str, Any]], Any],
        idempotent: bool,
        timeout: float | None = None,
        retry: Retry | None = None,
        *,
        name: str | None = None,
        drain: bool = False,
    ) -> Any: ...
