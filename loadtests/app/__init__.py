"""A small real service on geetcd: the patterns users copy into gevent servers.

    gunicorn -k gevent -w 2 -c loadtests/app/gunicorn_conf.py loadtests.app:app [--preload]
    python -m loadtests.app --port 8080                      (gevent.pywsgi, one process)

Configuration, from the environment:

* ``GEETCD_APP_ENDPOINTS``: etcd endpoints (comma-separated; default http://127.0.0.1:2379);
* ``GEETCD_APP_NAMESPACE``: the key prefix of everything the service writes (default
  ``/geetcd-app/``);
* ``GEETCD_APP_TTL``: the TTL of each worker's registration lease and leader session
  (default 5 s);
* ``GEETCD_APP_BATCH_READS``: ``0`` turns read batching off (default on).

What each worker process does (started on its first use, or by gunicorn's
``post_worker_init`` hook in ``gunicorn_conf.py``):

* **config from a prefix cache**: ``GET /config/<name>`` answers from a local mirror of
  ``config/`` (no etcd request); a change in etcd reaches every worker's mirror as a watch
  event, typically within milliseconds;
* **service registration**: ``workers/<pid>`` is written under a lease kept alive by the
  client; when the worker dies its key disappears within the TTL;
* **leader duty**: every worker campaigns in ``client.election("duty")``; the leader writes
  ``duty-log/last`` every 0.2 s (outside the election's ``duty/`` prefix: a key under it
  would count as a candidate), fenced by the election (a txn that succeeds only while its
  campaign key is still the leader's), so two workers never run the duty at once; when the
  leader dies, another takes over within about the TTL;
* **per-request reads and writes**: ``GET``/``PUT /kv/<key>`` through the worker's client
  (reads batched, the default);
* **health**: ``GET /health``, the client's cluster state and this worker's duties;
* **metrics**: ``GET /metrics``, the client's Prometheus metrics (:mod:`geetcd.metrics`,
  when ``prometheus_client`` is installed). Under gunicorn with several workers, set
  ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory for the whole server (master and
  workers): every worker then writes its series there, and ``/metrics``, whichever worker
  answers, serves the sum over the workers (prometheus_client's multiprocess mode;
  ``gunicorn_conf.py`` marks dead workers for the live gauges). Without it, ``/metrics``
  shows the answering process only (right for ``python -m loadtests.app``).

One client per worker process. It may be created at import, which under ``--preload`` means
in the gunicorn master before the fork: geetcd is fork-safe (the child severs every inherited
socket and opens its own), but whatever the master started (watches, kept-alive leases) is not
carried into the workers. So the per-worker work (cache, registration, campaign) starts after
the fork, in the worker, which is why the recommended place to create the client is the
worker itself: ``post_worker_init`` (after gunicorn's gevent worker has monkey-patched), or
lazily on the first request. Both are what this module does: :func:`worker` builds the
worker's state the first time it is used in a process.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import gevent

import geetcd

log = logging.getLogger("geetcd.app")

ENDPOINTS = os.environ.get("GEETCD_APP_ENDPOINTS", "http://127.0.0.1:2379")
NAMESPACE = os.environ.get("GEETCD_APP_NAMESPACE", "/geetcd-app/")
TTL = int(os.environ.get("GEETCD_APP_TTL", "5"))
BATCH_READS = os.environ.get("GEETCD_APP_BATCH_READS", "1") != "0"
DUTY_PERIOD = 0.2

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class Worker:
    """The geetcd state of one worker process (see the module docstring)."""

    def __init__(self, client: geetcd.Client) -> None:
        self.pid = os.getpid()
        self.client = client
        self.config = client.prefix_cache("config/")
        self.lease = client.lease(TTL, keepalive=True)
        self.key = f"workers/{self.pid}"
        client.put(self.key, json.dumps({"pid": self.pid, "since": time.time()}), lease=self.lease)
        self.election = client.election("duty", ttl=TTL)
        self.duty_runs = 0
        self.duty = gevent.spawn(self._duty_loop)

    def is_leader(self) -> bool:
        return self.election.is_leader

    def _duty_loop(self) -> None:
        while not self.client.closed:
            try:
                if not self.election.is_leader:
                    self.election.campaign(str(self.pid), timeout=None)
                fenced = self.client.txn(
                    [self.election.is_leader_compare()],
                    [geetcd.Op.put("duty-log/last", f"{self.pid} {self.duty_runs}")],
                )
                if fenced.succeeded:
                    self.duty_runs += 1
            except geetcd.EtcdError as exc:  # a member failure: try again, never give up
                log.warning("leader duty of worker %d: %s", self.pid, exc)
                gevent.sleep(0.5)
                continue
            gevent.sleep(DUTY_PERIOD)


_client: geetcd.Client | None = None
_worker: Worker | None = None


def client() -> geetcd.Client:
    """This process's client (created at import when ``GEETCD_APP_EAGER=1``, else on first
    use); a forked child uses the one it inherited, which geetcd adopts safely."""
    global _client
    if _client is None:
        _client = geetcd.Client(
            ENDPOINTS, namespace=NAMESPACE, timeout=5.0, batch_reads=BATCH_READS
        )
        _instrument(_client)
    return _client


def _instrument(new: geetcd.Client) -> None:
    """Metrics of ``new`` in the default registry (label ``client="client1"``: the first
    client of this process, whether built here or in the master before the fork)."""
    try:
        import geetcd.metrics

        geetcd.metrics.instrument(new)
    except ImportError as exc:
        log.warning("no /metrics: %s", exc)


def metrics_page() -> tuple[bytes, str]:
    """The exposition ``/metrics`` serves and its content type: every worker's series
    summed in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``), else this process's."""
    import prometheus_client
    from prometheus_client import multiprocess

    registry = prometheus_client.REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return prometheus_client.generate_latest(registry), prometheus_client.CONTENT_TYPE_LATEST


def worker() -> Worker:
    """This process's Worker, started on first use in each process (after any fork)."""
    global _worker
    if _worker is None or _worker.pid != os.getpid():
        _worker = Worker(client())
    return _worker


if os.environ.get("GEETCD_APP_EAGER") == "1":
    client()  # the --preload pattern: built in the master, used in every worker


# ---------------------------------------------------------------------- the WSGI app
def _reply(start: StartResponse, status: str, body: dict[str, Any]) -> Iterable[bytes]:
    payload = json.dumps({**body, "pid": os.getpid()}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    start(status, headers)
    return [payload]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The service's WSGI callable."""
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "/")
    if path == "/metrics":
        try:
            page, content_type = metrics_page()
        except ImportError as exc:
            return _reply(start_response, "501 Not Implemented", {"error": str(exc)})
        start_response(
            "200 OK", [("Content-Type", content_type), ("Content-Length", str(len(page)))]
        )
        return [page]
    try:
        w = worker()
        if path.startswith("/config/"):
            kv = w.config.get("config/" + path[len("/config/") :])  # full key
            value = kv.value.decode() if kv is not None else None
            return _reply(start_response, "200 OK", {"value": value})
        if path.startswith("/kv/"):
            key = "kv/" + path[len("/kv/") :]
            if method == "PUT":
                size = int(environ.get("CONTENT_LENGTH") or 0)
                value = environ["wsgi.input"].read(size)
                put = w.client.put(key, value)
                return _reply(start_response, "200 OK", {"revision": put.header.revision})
            got = w.client.get(key)
            body = {"value": got.value.decode() if got else None}
            return _reply(start_response, "200 OK" if got else "404 Not Found", body)
        if path == "/health":
            members = [
                {"url": m.url, "state": m.state.value, "inflight": m.inflight}
                for m in w.client.cluster_state.members
            ]
            body = {"members": members, "leader": w.is_leader(), "duty_runs": w.duty_runs}
            return _reply(start_response, "200 OK", body)
        return _reply(start_response, "404 Not Found", {"error": f"no route {path}"})
    except geetcd.OutcomeUnknown as exc:
        return _reply(
            start_response, "503 Service Unavailable", {"error": "OutcomeUnknown: " + str(exc)}
        )
    except geetcd.EtcdError as exc:
        return _reply(
            start_response, "503 Service Unavailable", {"error": f"{type(exc).__name__}: {exc}"}
        )
