"""Inside the locust processes that ``geetcd-bench`` starts: precise statistics and progress.

Imported by the bootstrap of :data:`geetcd.bench.runner.BOOTSTRAP` after locust (importing
this module imports locust, which monkey-patches the process). When
:data:`~geetcd.bench.runner.REPORT_ENV` names a file, every locust process (local runner,
master, each worker) gets one collector, whatever the locustfile:

- Every request event is counted in a :class:`~geetcd.bench.histogram.LatencyHistogram`
  per (request type, name), and by its ``url`` (the member that answered). Workers ship
  what they counted since their last report to the master inside locust's own worker
  reports (``report_to_master``), so the master's figures cover every process.
- The coordinator (local runner or master) prints a progress line every 2 s
  (:data:`~geetcd.bench.runner.PROGRESS_MARK` plus JSON: elapsed s, users, requests,
  failures, locust's current rate, p50/p99 of the requests counted since the last line).
- At exit the coordinator writes the report file (``latency.json``: per entry count, p50,
  p90, p99, p99.9, max; requests by member; locust's errors), and **every** process writes
  ``requests-<role>-<pid>.json`` beside it: the requests and failures it fired itself, by
  type and name, and how many carried each request ``context`` (as sorted JSON; 50
  distinct ones at most, the rest under ``"(other)"``). The sum over those files is what
  locust's totals must be; the distributed test checks that no request was lost or
  counted twice on the way to the master.
- Every geetcd client built in the process reports its attempts to one
  :class:`~geetcd.bench.attempts.AttemptCounter` (attempts, failed attempts and failovers
  per member), shipped to the master like the histograms and written to the report file
  under ``attempts``. The counter is attached by wrapping ``geetcd.Client.__init__`` in
  the locust processes only (the hook has no process-wide registration of its own): every
  client a locustfile builds, through :class:`geetcd.locust.EtcdUser` or not, is counted.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any

import gevent
from locust import events
from locust.env import Environment
from locust.runners import LocalRunner, MasterRunner, WorkerRunner

import geetcd.client
from geetcd.bench.attempts import AttemptCounter
from geetcd.bench.histogram import LatencyHistogram
from geetcd.bench.runner import PROGRESS_MARK, REPORT_ENV

__all__ = ["Collector", "role_of"]

_PROGRESS_INTERVAL = 2.0
_CONTEXTS = 50  # distinct request contexts counted by name; the rest as "(other)"
_TOTAL = ("", "Aggregated")  # the key of all requests together, as in locust's statistics


def role_of(environment: Environment) -> str:
    """``"local"``, ``"master"`` or ``"worker<index>"`` for the process's runner."""
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return f"worker{runner.worker_index}"
    if isinstance(runner, MasterRunner):
        return "master"
    if isinstance(runner, LocalRunner):
        return "local"
    return "none"


class Collector:
    """The statistics of one locust process (see the module docstring)."""

    def __init__(self, environment: Environment, path: str) -> None:
        self.environment = environment
        self.path = path
        self.histograms: dict[tuple[str, str], LatencyHistogram] = {}
        self.by_member: dict[str, int] = {}
        self.window = LatencyHistogram()
        self.fired: dict[tuple[str, str], list[int]] = {}  # this process only: [n, failures]
        self.contexts: dict[str, int] = {}  # this process only: requests by context
        self.started = time.time()
        self.progress: gevent.Greenlet[[], None] | None = None
        self.attempts = AttemptCounter()
        _observe_every_client(self.attempts)
        hooks: Any = environment.events  # locust's EventHook.add_listener is untyped
        hooks.request.add_listener(self.on_request)
        hooks.report_to_master.add_listener(self.on_report_to_master)
        hooks.worker_report.add_listener(self.on_worker_report)
        hooks.test_start.add_listener(self.on_test_start)
        hooks.test_stop.add_listener(self.on_test_stop)
        hooks.quitting.add_listener(self.on_quitting)

    def _histogram(self, key: tuple[str, str]) -> LatencyHistogram:
        histogram = self.histograms.get(key)
        if histogram is None:
            histogram = self.histograms[key] = LatencyHistogram()
        return histogram

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float | None,
        *,
        exception: BaseException | None = None,
        url: str | None = None,
        context: Any = None,
        **_: Any,
    ) -> None:
        fired = self.fired.setdefault((request_type, name), [0, 0])
        fired[0] += 1
        fired[1] += exception is not None
        try:
            tag = json.dumps(context if context is not None else {}, sort_keys=True)
        except (TypeError, ValueError):
            tag = "(not JSON)"
        if tag not in self.contexts and len(self.contexts) >= _CONTEXTS:
            tag = "(other)"
        self.contexts[tag] = self.contexts.get(tag, 0) + 1
        if url:
            self.by_member[url] = self.by_member.get(url, 0) + 1
        if response_time is not None:
            self._histogram((request_type, name)).add(float(response_time))
            self.window.add(float(response_time))

    def on_report_to_master(self, client_id: str, data: dict[str, Any]) -> None:
        data["geetcd_latency"] = [[t, n, h.to_json()] for (t, n), h in self.histograms.items()]
        data["geetcd_members"] = self.by_member
        data["geetcd_attempts"] = self.attempts.take()
        self.histograms, self.by_member = {}, {}

    def on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        for request_type, name, histogram in data.get("geetcd_latency", ()):
            shipped = LatencyHistogram.from_json(histogram)
            self._histogram((request_type, name)).merge(shipped)
            self.window.merge(shipped)
        for url, count in data.get("geetcd_members", {}).items():
            self.by_member[url] = self.by_member.get(url, 0) + int(count)
        self.attempts.merge(data.get("geetcd_attempts") or {})

    def on_test_start(self, environment: Environment, **_: Any) -> None:
        self.histograms, self.by_member, self.window = {}, {}, LatencyHistogram()
        self.started = time.time()
        if not isinstance(environment.runner, WorkerRunner) and self.progress is None:
            self.progress = gevent.spawn(self._print_progress)

    def on_test_stop(self, environment: Environment, **_: Any) -> None:
        if self.progress is not None:
            self.progress.kill(block=False)
            self.progress = None

    def _print_progress(self) -> None:
        while True:
            gevent.sleep(_PROGRESS_INTERVAL)
            total = self.environment.stats.total
            runner = self.environment.runner
            window, self.window = self.window, LatencyHistogram()
            line = {
                "elapsed": round(time.time() - self.started, 1),
                "users": runner.user_count if runner is not None else 0,
                "requests": total.num_requests,
                "failures": total.num_failures,
                "rps": round(total.current_rps, 1),
                "p50": window.percentile(0.5) if window.count else None,
                "p99": window.percentile(0.99) if window.count else None,
            }
            print(PROGRESS_MARK + json.dumps(line), flush=True)

    def on_quitting(self, environment: Environment, **_: Any) -> None:
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, exist_ok=True)
        role = role_of(environment)
        fired = [[t, n, c[0], c[1]] for (t, n), c in sorted(self.fired.items())]
        own = {"role": role, "pid": os.getpid(), "requests": fired, "contexts": self.contexts}
        with open(os.path.join(directory, f"requests-{role}-{os.getpid()}.json"), "w") as f:
            json.dump(own, f, indent=1)
        if isinstance(environment.runner, WorkerRunner):
            return
        total = LatencyHistogram()
        for histogram in self.histograms.values():
            total.merge(histogram)
        latency = [
            {"type": request_type, "name": name, **h.summary()}
            for (request_type, name), h in [*sorted(self.histograms.items()), (_TOTAL, total)]
        ]
        found = sorted(environment.stats.errors.values(), key=lambda e: -e.occurrences)
        errors = [
            {"type": e.method, "name": e.name, "error": str(e.error), "occurrences": e.occurrences}
            for e in found
        ]
        report = {
            "latency_ms": latency,
            "members": self.by_member,
            "attempts": self.attempts.to_json(),
            "errors": errors,
        }
        with open(self.path, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)


def _observe_every_client(counter: AttemptCounter) -> None:
    """Attach ``counter`` to every geetcd client built from now on in this process (the
    latest counter replaces an earlier one)."""
    original = getattr(geetcd.client.Client.__init__, "__wrapped__", geetcd.client.Client.__init__)

    @functools.wraps(original)
    def init(self: geetcd.client.Client, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.core.add_observer(counter)

    setattr(geetcd.client.Client, "__init__", init)  # noqa: B010 - mypy: no method assignment


def _install(environment: Environment, **_: Any) -> None:
    path = os.environ.get(REPORT_ENV)
    if path:
        Collector(environment, path)


_events: Any = events
_events.init.add_listener(_install)
