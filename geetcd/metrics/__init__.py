"""Prometheus metrics of a geetcd client: an adapter of the observer hook (:mod:`geetcd.observe`).

Needs the optional extra: ``pip install 'geetcd[prometheus]'`` (the official
``prometheus_client``). ``import geetcd`` and ``import geetcd.metrics`` work without it;
:func:`instrument` then raises ImportError naming the extra.

::

    import geetcd, geetcd.metrics, prometheus_client

    client = geetcd.Client("http://127.0.0.1:2379")
    metrics = geetcd.metrics.instrument(client)      # the default registry, client="client1"
    prometheus_client.start_http_server(9100)        # or serve generate_latest() yourself
    ...
    metrics.uninstrument()                           # detach; this client's series disappear

The metrics (``prefix`` ``geetcd``; every series also has the label ``client``):

=======================================  =========  ===============================================
name                                     type       labels; meaning
=======================================  =========  ===============================================
``geetcd_requests_total``                counter    ``method``, ``outcome``: client calls ended
``geetcd_request_duration_seconds``      histogram  ``method``: call duration, retries included
``geetcd_attempts_total``                counter    ``member``, ``result``: attempts of calls
``geetcd_hedges_total``                  counter    ``method``: reads also sent to a 2nd member
``geetcd_member_up``                     gauge      ``member``: 1 while the client uses it
``geetcd_member_ejections_total``        counter    ``member``, ``reason``: outlier ejections
``geetcd_pool_connections_in_use``       gauge      ``member``: unary connections in use
``geetcd_pool_connections_max``          gauge      ``member``: the pool's size (``maxsize``)
``geetcd_open_streams``                  gauge      ``member``, ``kind``: long-lived streams open
``geetcd_watches``                       gauge      watch handles alive
``geetcd_watches_ended_total``           counter    ``reason``: watch handles ended
``geetcd_watch_events_total``            counter    events received (once per server stream)
``geetcd_watch_resumes_total``           counter    ``member``: watch streams resumed there
``geetcd_leases_kept_alive``             gauge      leases the keepalive refreshes
``geetcd_leases_lost_total``             counter    ``reason``: leases lost (LeaseLoss value)
``geetcd_keepalive_requests_total``      counter    ``member``, ``result``: keepalive requests
``geetcd_batch_size``                    histogram  ``kind`` (read/write): ops per batched txn
=======================================  =========  ===============================================

Label values are bounded: ``method`` comes from the code (``get``, ``put``, ``range``, ``txn``,
``lease_grant``...); ``member`` is a member's client URL; ``outcome`` and ``result`` are ``ok``
or the class name of the error (:func:`outcome_of`); ``kind`` and ``reason`` are constants of
:mod:`geetcd.observe`. Keys, lease IDs and watch IDs never become label values.

``geetcd_member_up``: 1 while the member is HEALTHY (picked for calls); 0 when it is DOWN
(benched after a failure), SUSPECT (new and not yet verified, used only when no healthy
member is left) or a learner (never picked). A member that leaves the member list loses its
series.

How it is collected: the observer counts in plain integers, and one collector per registry
builds every family at scrape time; the gauges that mirror state (members up, pool use from
``client.core.transport.pool_usage(url)``, watches alive, leases kept alive) are read from
the client then, so they also count what existed before ``instrument()``. Open streams are
counted from the events since ``instrument()`` (never below 0). In multiprocess mode (below)
``prometheus_client`` metric objects are updated instead, gauges included, from the events.

**Several clients in one process: a ``client`` label, not a registry per client.** What
operators scrape is one registry (usually the default one, served at ``/metrics``): a
registry per client would have to be served, or merged, by hand, and the same metric names
registered twice in one registry raise "Duplicated timeseries". So every client instrumented
on a registry shares one set of metric families and gets its own series through the
``client`` label: ``instrument(client, name="orders")``, by default ``client1``, ``client2``...
in the order clients are instrumented in the process (so the first client of every gunicorn
worker is ``client1``, and the workers' series add up in multiprocess mode). Sum over
``client`` for the whole process. Another registry may still be given (``registry=``), for
tests or to serve geetcd's metrics apart.

**gunicorn with several workers (prometheus_client's multiprocess mode).** Each worker is a
process with its own counters; a scrape reaches one worker. Set ``PROMETHEUS_MULTIPROC_DIR``
to an empty directory, for the master and every worker, before ``prometheus_client`` is
first imported; serve ``/metrics`` from a fresh ``CollectorRegistry`` with
``prometheus_client.multiprocess.MultiProcessCollector`` (see ``loadtests/app``); and call
``prometheus_client.multiprocess.mark_process_dead(worker.pid)`` in gunicorn's
``child_exit`` hook. Counters and histograms are then summed over the workers (dead ones
included, so totals never go back); the gauges are combined over *live* workers:
``geetcd_member_up`` by minimum (0 as soon as one worker benched the member), the others
(streams, watches, leases kept alive) by sum; after a fork (``--preload``) each worker
sets its gauges again. The pool gauges are read at scrape time, which multiprocess mode
cannot merge: they are absent from a multiprocess scrape.

Cost: nothing while no observer is attached. Attached, a call of one attempt costs two
dictionary increments and a ``bisect``: about 2 µs of CPU over the hook's own fan-out
(3-4 µs), measured interleaved in a monkey-patched process; see ``loadtests/bench_kv.py
--observe``. Multiprocess mode costs more: every update takes a lock (gevent's under
monkey patching) and writes a mapped file. The hooks run in the greenlet where things
happen and never switch greenlets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geetcd.metrics._common import BATCH_BUCKETS, DURATION_BUCKETS, outcome_of

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from geetcd.client import Client
    from geetcd.metrics._prometheus import ClientMetrics

__all__ = ["DURATION_BUCKETS", "BATCH_BUCKETS", "instrument", "outcome_of"]

_EXTRA = "pip install 'geetcd[prometheus]'"


def instrument(
    client: Client,
    registry: CollectorRegistry | None = None,
    *,
    prefix: str = "geetcd",
    name: str | None = None,
) -> ClientMetrics:
    """Report ``client``'s calls, attempts, members, streams, watches, leases and batches to
    Prometheus metrics in ``registry`` (default: ``prometheus_client.REGISTRY``), with metric
    names starting with ``prefix`` and the label ``client=name`` (default ``client<N>``).

    Returns the :class:`~geetcd.metrics._prometheus.ClientMetrics` observer attached to the
    client; its ``uninstrument()`` detaches it and removes this client's series. Several
    clients may be instrumented on one registry (each with its own ``client`` label); the
    same client twice on one registry, or two clients with the same ``name``, raise
    InvalidArgument. ImportError (saying ``pip install 'geetcd[prometheus]'``) when
    ``prometheus_client`` is not installed.
    """
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"geetcd.metrics needs the prometheus extra: {_EXTRA} (prometheus_client is "
            f"not installed: {exc})"
        ) from exc
    from geetcd.metrics._prometheus import attach

    return attach(client, registry, prefix=prefix, name=name)
