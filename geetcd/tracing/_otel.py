"""The OpenTelemetry side of :mod:`geetcd.tracing` (imported only when ``opentelemetry-api``
is installed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider

from geetcd import __version__
from geetcd.client import Client
from geetcd.errors import InvalidType
from geetcd.observe import CallRecord, Observer

if TYPE_CHECKING:
    from geetcd.core import Core

__all__ = ["ClientTracing", "attach"]

_SCOPE = "geetcd"
_SYSTEM = "etcd"
_QUIET_LOSSES = ("revoked", "closed")  # this client's own doing: not an error


def attach(client: Client, tracer_provider: TracerProvider | None) -> ClientTracing:
    """See :func:`geetcd.tracing.instrument`."""
    if not isinstance(client, Client):
        raise InvalidType(f"instrument() needs a geetcd.Client, got {type(client).__name__}")
    tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
    tracing = ClientTracing(client.core, tracer)
    client.core.add_observer(tracing)
    return tracing


class ClientTracing(Observer):
    """The observer that traces one client (see :mod:`geetcd.tracing`); :meth:`uninstrument`
    detaches it."""

    def __init__(self, core: Core, tracer: Tracer) -> None:
        self.core = core
        self.tracer = tracer
        self._servers: dict[str, tuple[str, int]] = {}

    def __repr__(self) -> str:
        return f"<ClientTracing {self.tracer!r}>"

    def uninstrument(self) -> None:
        """Detach from the client (no error if already detached). Never raises."""
        self.core.remove_observer(self)

    def _server(self, member: str) -> tuple[str, int]:
        server = self._servers.get(member)
        if server is None:
            parts = urlsplit(member)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            server = self._servers[member] = (parts.hostname or member, port)
        return server

    # ------------------------------------------------------------------ calls
    def call_started(self, call: CallRecord) -> Any:
        # Here, in the caller's greenlet: the current context holds the caller's span.
        return self.tracer.start_span(
            call.method,
            kind=SpanKind.CLIENT,
            attributes={"db.system.name": _SYSTEM, "db.operation.name": call.method},
        )

    def attempt_ended(
        self, call: CallRecord, member: str, seconds: float, error: BaseException | None
    ) -> None:
        span: Span | None = call.context_of(self)
        if span is None:
            return
        address, port = self._server(member)
        attributes: dict[str, str | int | float] = {
            "server.address": address,
            "server.port": port,
            "geetcd.attempt.duration_s": seconds,
        }
        if error is not None:
            attributes["error.type"] = type(error).__name__
        span.add_event("attempt", attributes)

    def hedged(self, call: CallRecord, member: str) -> None:
        span: Span | None = call.context_of(self)
        if span is None:
            return
        if member == "?":
            span.add_event("hedge")
            return
        address, port = self._server(member)
        span.add_event("hedge", {"server.address": address, "server.port": port})

    def call_ended(self, call: CallRecord, seconds: float, error: BaseException | None) -> None:
        span: Span | None = call.context_of(self)
        if span is None:
            return
        attributes: dict[str, str | int] = {}
        if call.member is not None:
            attributes["server.address"], attributes["server.port"] = self._server(call.member)
        if call.batch_size > 1:
            attributes["geetcd.batch.size"] = call.batch_size
        if error is not None:
            name = type(error).__name__
            attributes["error.type"] = name
            span.set_status(Status(StatusCode.ERROR, f"{name}: {error}"[:200]))
        if attributes:
            span.set_attributes(attributes)
        span.end()

    # ------------------------------------------------------------------ rare events: short spans
    def _moment(self, name: str, attributes: dict[str, str | int], error: str | None) -> None:
        span = self.tracer.start_span(
            name, context=_ROOT, kind=SpanKind.INTERNAL, attributes=attributes
        )
        span.set_attribute("db.system.name", _SYSTEM)
        if error is not None:
            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    def member_state_changed(
        self, member: str, old: str, new: str, error: BaseException | None
    ) -> None:
        if new != "down":
            return
        address, port = self._server(member)
        cause = type(error).__name__ if error is not None else "unknown"
        self._moment("member down", {"server.address": address, "server.port": port}, cause)

    def watch_resumed(self, member: str, from_revision: int) -> None:
        address, port = self._server(member)
        attributes: dict[str, str | int] = {
            "server.address": address,
            "server.port": port,
            "geetcd.watch.from_revision": from_revision,
        }
        self._moment("watch resume", attributes, None)

    def keepalive_sent(self, member: str, leases: int, error: BaseException | None) -> None:
        if error is None:
            return
        address, port = self._server(member)
        attributes: dict[str, str | int] = {
            "server.address": address,
            "server.port": port,
            "geetcd.lease.count": leases,
        }
        self._moment("lease keepalive", attributes, type(error).__name__)

    def lease_lost(self, reason: str) -> None:
        error = None if reason in _QUIET_LOSSES else "LeaseLost"
        self._moment("lease lost", {"geetcd.lease.loss_reason": reason}, error)


_ROOT = trace.set_span_in_context(trace.INVALID_SPAN)
"""A context with no span: the short spans of background events are roots, whatever
context their greenlet has."""
