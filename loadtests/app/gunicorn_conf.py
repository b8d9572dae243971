"""gunicorn settings for the geetcd example service (``-c loadtests/app/gunicorn_conf.py``).

``worker_connections`` bounds the greenlets (requests) of one gevent worker; the client's
``maxsize`` bounds its connections per etcd member, so a deployment opens at most
workers x members x maxsize connections to etcd. Requests beyond ``maxsize`` wait in the
client's FIFO gate (cooperatively), and concurrent reads are batched, so ``maxsize`` far
below ``worker_connections`` is normal (64 for 1,000 connections).

For ``/metrics`` across workers, run the server with ``PROMETHEUS_MULTIPROC_DIR`` set to an
empty directory (see ``loadtests/app``); :func:`child_exit` marks dead workers there.
"""

from __future__ import annotations

import os
from typing import Any

worker_class = "gevent"
worker_connections = 1000
graceful_timeout = 5


def post_worker_init(worker: Any) -> None:
    """Start the worker's geetcd state here: after the fork and after gunicorn's gevent
    worker has monkey-patched, before the first request."""
    from loadtests.app import worker as start_worker

    start_worker()


def child_exit(server: Any, worker: Any) -> None:
    """In prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set), drop a
    dead worker from the live gauges (``geetcd_member_up``, ``geetcd_watches``...); its
    counters stay in the sums."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
