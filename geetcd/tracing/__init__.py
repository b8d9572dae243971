"""OpenTelemetry traces of a geetcd client: an adapter of the observer hook (:mod:`geetcd.observe`).

Needs the optional extra: ``pip install 'geetcd[otel]'`` (``opentelemetry-api``; configure
an SDK and an exporter as usual). ``import geetcd`` and ``import geetcd.tracing`` work
without it; :func:`instrument` then raises ImportError naming the extra.

::

    import geetcd, geetcd.tracing
    from opentelemetry import trace

    client = geetcd.Client("http://127.0.0.1:2379")
    tracing = geetcd.tracing.instrument(client)        # the global tracer provider
    with trace.get_tracer("app").start_as_current_span("handle request"):
        client.get("/config/color")                    # a child span named "get"
    tracing.uninstrument()

**Calls** follow OpenTelemetry's stable database-client conventions: one span per client
call (each caller of a batched read gets its own), kind CLIENT, named after the method
(``get``, ``put``, ``range``, ``txn``, ``lease_grant``...), with ``db.system.name="etcd"``,
``db.operation.name`` (the method), and ``server.address`` / ``server.port`` of the member
that answered (or last failed). A failed call has ``error.type`` (the exception's class
name: ``CompactedRevision``, ``OutcomeUnknown``, ``DeadlineExceeded``...) and status ERROR.
Each attempt is a span event ``attempt`` with ``server.address``, ``server.port``,
``geetcd.attempt.duration_s`` and, when it failed, ``error.type``: a call that failed over
shows one event per member tried. A hedged read gets a ``hedge`` event naming the second
member. A read that went out in a batched txn of several ops carries ``geetcd.batch.size``.
Keys and values are never recorded.

**Parents across greenlets.** gevent gives every greenlet its own ``contextvars`` context,
and a spawned greenlet starts with an *empty* one (it does not copy its parent's; seen with
gevent 26.9 and greenlet 3.5). A call's span is created in :meth:`Observer.call_started`,
which runs in the caller's greenlet, so the caller's active span is its parent; it is kept
in the call's record and every later hook (attempts of a batch run in a sender greenlet, a
hedge in a greenlet of its own) writes to that span object, never to the current context.
Nothing here ever attaches or detaches a context.

**Watches and keepalives: no endless spans.** A watch or a kept-alive lease lives for
hours: a span over its life would be exported only when it ends (if ever), and a span per
event or per keepalive would flood the backend with traffic nobody asked for. The moments
worth a look are the rare ones, so each is a short span of its own, a root span (they
happen in background greenlets, with no caller to be the child of): ``watch resume`` (a
watch stream resumed on another member: ``server.address``, ``server.port``,
``geetcd.watch.from_revision``), ``lease lost`` (``geetcd.lease.loss_reason``; status ERROR
unless this client revoked or closed it), ``lease keepalive`` for a failed keepalive
request only (``error.type``, ``geetcd.lease.count``), and ``member down`` when the cluster
state benches a member (``error.type``). Watch events and successful keepalives are counted
by :mod:`geetcd.metrics` instead.

The hooks run in the greenlet where things happen and never switch greenlets (the SDK's
BatchSpanProcessor only appends to a queue; its export runs in its own thread).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from geetcd.client import Client
    from geetcd.tracing._otel import ClientTracing

__all__ = ["instrument"]

_EXTRA = "pip install 'geetcd[otel]'"


def instrument(client: Client, tracer_provider: TracerProvider | None = None) -> ClientTracing:
    """Trace ``client``'s calls (and the rare watch and lease events, see the module
    docstring) with a tracer of ``tracer_provider`` (default: the global one).

    Returns the :class:`~geetcd.tracing._otel.ClientTracing` observer attached to the
    client; its ``uninstrument()`` detaches it (calls already started still end their
    spans). ImportError (saying ``pip install 'geetcd[otel]'``) when ``opentelemetry-api``
    is not installed.
    """
    try:
        import opentelemetry.trace  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"geetcd.tracing needs the otel extra: {_EXTRA} (opentelemetry-api is not "
            f"installed: {exc})"
        ) from exc
    from geetcd.tracing._otel import attach

    return attach(client, tracer_provider)
