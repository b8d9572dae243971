"""Failover: a KV and watch load while one member of the cluster is paused or killed.

    geetcd-bench --scenario failover            (starts the cluster and passes its members)

This scenario signals etcd processes, so it runs only against members that the caller started
and names in ``GEETCD_BENCH_MEMBERS``: a JSON list of ``{"name", "url", "pid"}`` objects
(``geetcd-bench`` sets it for its throwaway cluster). Before signalling a PID it checks that
the process is an etcd listening on that member's URL; without the variable it refuses to run.

Each user does gets and puts over a small key space and holds one watch on a shared key that
the puts stamp (:func:`geetcd.locust.stamp_value`), so the report shows both the request
errors and the watch delivery gap during the fault. ``--fault-at`` seconds after the start,
the coordinator (local runner or master) sends SIGSTOP (``pause``) or SIGKILL (``kill``) to
the leader (or a follower), then measures how long the cluster needed to take a write again
through the remaining members; a paused member gets SIGCONT ``--fault-duration`` seconds
later (and at the end of the run in any case). A killed member stays down.

The coordinator tells every process that runs users about the fault with locust's
``runner.send_message`` (message ``geetcd_fault``: on a master, to all workers; in a local
run, to itself): when the signal is sent and when a paused member is resumed. Each such
process then tags its requests with the fault (``context["fault"]``, e.g.
``"pause leader m2"``, None outside it), fires one request ``failover``/``fault seen:
<what>`` (response time: from the signal to the message's arrival) and answers
``geetcd_fault_seen``; the coordinator logs how many of its workers saw the fault.

Errors while the fault lasts are expected: they are reported to locust as failures, and the
run's exit code is 0 when writes recovered, every worker saw the fault and no task raised an
unexpected exception.

Requests: ``get``, ``put``, ``watch_open``, ``watch`` (deliveries) and ``failover``
(``first write after ...``, ``resumed member answers``: times from the signal, in ms;
``fault seen: ...``: one per process that runs users).

Options (each also read from the environment variable in brackets):

--fault-action    [GEETCD_FAULT_ACTION]    pause | kill (default pause)
--fault-target    [GEETCD_FAULT_TARGET]    leader | follower (default leader)
--fault-at        [GEETCD_FAULT_AT]        seconds after the start (default 5)
--fault-duration  [GEETCD_FAULT_DURATION]  seconds a paused member stays paused (default 5)
--failover-prefix [GEETCD_FAILOVER_PREFIX] namespace (default /geetcd-bench/failover/)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import signal
import time
from dataclasses import dataclass
from typing import Any

import gevent
from locust import events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from geetcd import Client, EtcdError
from geetcd.locust import EtcdUser, is_coordinator, parsed_options, stamp_value

log = logging.getLogger("loadtests.failover")

MEMBERS_ENV = "GEETCD_BENCH_MEMBERS"
FAULT_MESSAGE = "geetcd_fault"
SEEN_MESSAGE = "geetcd_fault_seen"
_KEYS = 100
_RECOVERY_LIMIT = 30.0
_SEEN_WAIT = 10.0


class _FaultState:
    """What this process knows of the fault: the current one (for request contexts) and,
    on the coordinator, which processes running users saw it."""

    def __init__(self) -> None:
        self.current: str | None = None
        self.sent_to = 0  # how many processes the start message went to
        self.seen: set[str] = set()


_state = _FaultState()


@dataclass(frozen=True)
class _Member:
    name: str
    url: str
    pid: int


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    group = parser.add_argument_group("geetcd failover")
    group.add_argument(
        "--fault-action",
        choices=("pause", "kill"),
        default="pause",
        env_var="GEETCD_FAULT_ACTION",
        help="SIGSTOP (pause) or SIGKILL (kill) (default pause)",
    )
    group.add_argument(
        "--fault-target",
        choices=("leader", "follower"),
        default="leader",
        env_var="GEETCD_FAULT_TARGET",
        help="which member to hit (default leader)",
    )
    group.add_argument(
        "--fault-at",
        type=float,
        default=5.0,
        env_var="GEETCD_FAULT_AT",
        help="seconds after the start of the run (default 5)",
    )
    group.add_argument(
        "--fault-duration",
        type=float,
        default=5.0,
        env_var="GEETCD_FAULT_DURATION",
        help="seconds a paused member stays paused (default 5)",
    )
    group.add_argument(
        "--failover-prefix",
        default="/geetcd-bench/failover/",
        env_var="GEETCD_FAILOVER_PREFIX",
        help="namespace of every key (default /geetcd-bench/failover/)",
    )


def _members() -> list[_Member]:
    raw = os.environ.get(MEMBERS_ENV, "")
    if not raw:
        return []
    return [_Member(str(m["name"]), str(m["url"]), int(m["pid"])) for m in json.loads(raw)]


def _check_owned(member: _Member) -> None:
    """Refuse to signal a PID that is not the etcd serving ``member.url``."""
    try:
        with open(f"/proc/{member.pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError as exc:
        raise RuntimeError(f"member {member.name}: no process {member.pid}") from exc
    listen = f"--listen-client-urls={member.url}".encode()
    if not argv or b"etcd" not in os.path.basename(argv[0]) or listen not in argv:
        raise RuntimeError(f"pid {member.pid} is not the etcd of {member.name} ({member.url})")


def _role_of(members: list[_Member]) -> tuple[_Member, list[_Member]]:
    """(leader, followers), asking each member for its status."""
    leader_ids: set[int] = set()
    own: dict[int, _Member] = {}
    for member in members:
        with Client(member.url, timeout=2.0) as client:
            status = client.status()
        own[status.header.member_id] = member
        if status.leader:
            leader_ids.add(status.leader)
    if len(leader_ids) != 1 or next(iter(leader_ids)) not in own:
        raise RuntimeError(f"no single leader among the members: {sorted(leader_ids)}")
    leader = own[next(iter(leader_ids))]
    return leader, [m for m in members if m is not leader]


class _Fault:
    """The fault schedule of one run, run by the coordinator in one greenlet."""

    def __init__(self, environment: Environment, members: list[_Member]) -> None:
        options = parsed_options(environment)
        self.environment = environment
        self.members = members
        self.action = str(options.fault_action)
        self.target_role = str(options.fault_target)
        self.at = float(options.fault_at)
        self.duration = float(options.fault_duration)
        self.prefix = str(options.failover_prefix)
        self.paused: _Member | None = None
        self.label = ""
        self.recovered = False
        self.greenlet = gevent.spawn(self._run)

    def _report(
        self, name: str, since: float, url: str, exception: Exception | None = None
    ) -> None:
        """One ``failover`` request: from ``since`` (monotonic) until now, at ``url``."""
        elapsed = time.monotonic() - since
        self.environment.events.request.fire(
            request_type="failover",
            name=name,
            start_time=time.time() - elapsed,
            response_time=elapsed * 1000.0,
            response_length=0,
            response=None,
            exception=exception,
            context={"fault": self.label},
            url=url,
        )

    def _run(self) -> None:
        gevent.sleep(self.at)
        leader, followers = _role_of(self.members)
        target = leader if self.target_role == "leader" else followers[0]
        rest = [m for m in self.members if m is not target]
        _check_owned(target)
        what = f"{self.action} {self.target_role}"
        if self.action == "pause":
            os.kill(target.pid, signal.SIGSTOP)
            self.paused = target
        else:
            os.kill(target.pid, signal.SIGKILL)
        since = time.monotonic()
        self.label = f"{what} {target.name}"
        log.warning("fault: %s %s (%s, pid %d)", what, target.name, target.url, target.pid)
        self._tell("start", target, time.time())
        self._first_write([m.url for m in rest], what, since)
        if self.paused is not None:
            gevent.sleep(max(0.0, since + self.duration - time.monotonic()))
            self.resume()
            resumed = time.monotonic()
            self._answers(target, resumed)

    def _tell(self, event: str, target: _Member, at: float) -> None:
        """Send the fault to every process that runs users (see the module docstring)."""
        runner = self.environment.runner
        assert runner is not None
        if event == "start":
            _state.seen = set()
            _state.sent_to = runner.worker_count if isinstance(runner, MasterRunner) else 1
        data = {"event": event, "fault": self.label, "member": target.url, "at": at}
        runner.send_message(FAULT_MESSAGE, data)

    def _first_write(self, urls: list[str], what: str, since: float) -> None:
        """Put through the other members until one write succeeds; report the wait."""
        deadline = since + _RECOVERY_LIMIT
        last: EtcdError | None = None
        with Client(urls, namespace=self.prefix, timeout=1.0) as client:
            while time.monotonic() < deadline:
                try:
                    client.put("probe", stamp_value())
                except EtcdError as exc:
                    last = exc
                    gevent.sleep(0.05)
                    continue
                self.recovered = True
                self._report(f"first write after {what}", since, ",".join(sorted(urls)))
                log.warning(
                    "fault: first write %.2f s after the %s", time.monotonic() - since, what
                )
                return
        error = RuntimeError(f"no write succeeded within {_RECOVERY_LIMIT} s: {last}")
        self._report(f"first write after {what}", since, ",".join(sorted(urls)), error)
        log.error("fault: %s", error)

    def _answers(self, member: _Member, since: float) -> None:
        """Wait until the resumed member serves a linearizable read again; report the wait."""
        deadline = since + _RECOVERY_LIMIT
        last: EtcdError | None = None
        with Client(member.url, namespace=self.prefix, timeout=1.0) as client:
            while time.monotonic() < deadline:
                try:
                    client.get("probe")
                except EtcdError as exc:
                    last = exc
                    gevent.sleep(0.05)
                    continue
                self._report("resumed member answers", since, member.url)
                log.warning(
                    "fault: %s answers %.2f s after SIGCONT", member.name, time.monotonic() - since
                )
                return
        error = RuntimeError(f"{member.name} did not answer within {_RECOVERY_LIMIT} s: {last}")
        self._report("resumed member answers", since, member.url, error)
        log.error("fault: %s", error)

    def resume(self) -> None:
        """SIGCONT the paused member, if any (idempotent), and tell the workers."""
        member, self.paused = self.paused, None
        if member is not None:
            os.kill(member.pid, signal.SIGCONT)
            log.warning("fault: resumed %s (pid %d)", member.name, member.pid)
            self._tell("end", member, time.time())

    def stop(self) -> None:
        self.greenlet.kill(block=True, timeout=5.0)
        self.resume()


_fault: list[_Fault] = []


def _on_fault(environment: Environment, msg: Any, **_: Any) -> None:
    """In every process that runs users: note the fault, report it once, acknowledge it."""
    data = msg.data
    runner = environment.runner
    if data["event"] == "start":
        _state.current = str(data["fault"])
        environment.events.request.fire(
            request_type="failover",
            name=f"fault seen: {data['fault']}",
            start_time=float(data["at"]),
            response_time=max(0.0, time.time() - float(data["at"])) * 1000.0,
            response_length=0,
            response=None,
            context={"fault": _state.current},
            exception=None,
            url=str(data["member"]),
        )
        who = f"worker{runner.worker_index}" if isinstance(runner, WorkerRunner) else "local"
        log.warning("fault: %s saw %s", who, data["fault"])
        assert runner is not None
        runner.send_message(SEEN_MESSAGE, {"who": who, "fault": data["fault"]})
    else:
        _state.current = None


def _on_seen(environment: Environment, msg: Any, **_: Any) -> None:
    """On the coordinator: count the processes that saw the fault."""
    _state.seen.add(str(msg.data["who"]))


@events.init.add_listener
def _register_messages(environment: Environment, **_: Any) -> None:
    runner = environment.runner
    if runner is None:
        return
    if not isinstance(runner, MasterRunner):  # it runs users: local or worker
        runner.register_message(FAULT_MESSAGE, _on_fault)
    if not isinstance(runner, WorkerRunner):
        runner.register_message(SEEN_MESSAGE, _on_seen)


@events.test_start.add_listener
def _start_fault(environment: Environment, **_: Any) -> None:
    if not is_coordinator(environment):
        return
    members = _members()
    if len(members) < 2:
        log.error(
            "the failover scenario signals etcd processes, so it needs the members it may "
            "signal in %s (set by geetcd-bench for the cluster it starts); refusing to run",
            MEMBERS_ENV,
        )
        environment.process_exit_code = 2
        assert environment.runner is not None
        gevent.spawn(environment.runner.quit)
        return
    _fault.append(_Fault(environment, members))


@events.test_stop.add_listener
def _stop_fault(environment: Environment, **_: Any) -> None:
    """End the schedule and resume a paused member as soon as the load stops."""
    for fault in _fault:
        fault.stop()


@events.quitting.add_listener
def _verdict_and_clean_up(environment: Environment, **_: Any) -> None:
    """Set the exit status (errors during the fault are expected) and delete the prefix."""
    if not is_coordinator(environment):
        return
    while _fault:
        fault = _fault.pop()
        fault.stop()
        exceptions = environment.runner.exceptions if environment.runner else {}
        if fault.recovered:
            log.warning(
                "fault: %d of %d worker(s) saw %s: %s",
                len(_state.seen),
                _state.sent_to,
                fault.label,
                ", ".join(sorted(_state.seen)) or "none",
            )
        if fault.greenlet.exception is not None:
            log.error("fault schedule failed: %r", fault.greenlet.exception)
            environment.process_exit_code = 1
        elif not fault.recovered:
            log.error("fault: writes did not recover (or the fault never happened)")
            environment.process_exit_code = 1
        elif len(_state.seen) < _state.sent_to:
            log.error("fault: only %d of %d workers saw it", len(_state.seen), _state.sent_to)
            environment.process_exit_code = 1
        elif exceptions:
            environment.process_exit_code = 1
        else:
            environment.process_exit_code = 0
    if environment.host and environment.process_exit_code != 2:
        prefix = parsed_options(environment).failover_prefix
        try:
            with Client(environment.host, namespace=prefix, timeout=5.0) as client:
                client.delete_prefix("")
        except EtcdError as exc:
            log.warning("could not delete %s after the run: %s", prefix, exc)


class FailoverUser(EtcdUser):
    """Gets and puts (half each) over 100 keys; one watch on the shared stamped key. Each
    request's context names the fault under way (or None)."""

    def context(self) -> dict[str, Any]:
        return {"fault": _state.current}

    def client_kwargs(self) -> dict[str, Any]:
        return {"namespace": parsed_options(self.environment).failover_prefix, "timeout": 5.0}

    def on_start(self) -> None:
        # Probe a silent stream's member after 2 s (default 5 s), so the watch moves off a
        # paused member while the fault lasts.
        self.client.watch("shared", name="shared", liveness=2.0)

    @task
    def get_or_put(self) -> None:
        # A failed call is already reported to locust as a failure; the load goes on.
        with contextlib.suppress(EtcdError):
            if random.random() < 0.5:
                self.client.get(f"key-{random.randrange(_KEYS)}")
            elif random.random() < 0.1:
                self.client.put("shared", stamp_value(64), name="put shared")
            else:
                self.client.put(f"key-{random.randrange(_KEYS)}", stamp_value(64))
