"""Lock contention: every user loops acquire / fenced write / release on a few locks.

    locust -f loadtests/locustfile_lock.py --headless -u 20 -r 20 -t 20s \
        --host http://127.0.0.1:2379 --lock-names 1 --lock-hold 0

Each user has its own geetcd client (its own session lease), so every hand-off goes through
etcd with the key layout of Go's ``concurrency.Mutex`` (``etcdctl lock`` can join in on
``<--lock-prefix>lock-0000``). One task: pick a lock, ``acquire(timeout)``, write the
acquisition's fencing token (its create revision) with a txn guarded by ``is_owner()`` and
by "the stored token is lower", hold for ``--lock-hold`` ms, release.

Requests reported:

* ``lock`` / ``acquire``: from the call to acquire() to its return (a failure
  :class:`LockTimeout` when ``--lock-timeout`` passed first);
* ``lock`` / ``hand-off``: from the moment the previous holder of that lock *in this
  process* called release() to the moment this acquire() returned (with ``--processes``,
  hand-offs between processes are not measured);
* ``txn`` / ``fenced write``: the guarded write; a failed compare is a
  :class:`FencingViolation` (two owners at once, or tokens out of order);
* ``lock`` / ``release``: the release call.

After the run the coordinator of a local run checks that no fencing violation happened
(otherwise it logs an error and sets the exit code to 3) and deletes the prefix.

Options (each also read from the environment variable in brackets):

--lock-names    [GEETCD_LOCK_NAMES]    number of locks the users share (default 1)
--lock-hold     [GEETCD_LOCK_HOLD]     milliseconds each acquisition is held (default 0)
--lock-ttl      [GEETCD_LOCK_TTL]      session lease TTL in seconds (default 10)
--lock-timeout  [GEETCD_LOCK_TIMEOUT]  seconds an acquire may wait (default 10)
--lock-prefix   [GEETCD_LOCK_PREFIX]   namespace (default /geetcd-bench/lock/)
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import gevent
from locust import events, task
from locust.env import Environment
from locust.runners import LocalRunner

from geetcd import Client, Compare, Op
from geetcd.locust import EtcdUser, is_coordinator, parsed_options

log = logging.getLogger("loadtests.lock")
_violations = [0]
# Per lock name: time.perf_counter() when its last holder in this process called release().
_released_at: dict[str, float] = {}


class LockTimeout(Exception):
    """acquire() did not get the lock within ``--lock-timeout`` seconds."""


class FencingViolation(Exception):
    """A write guarded by is_owner() and the fencing token was refused."""


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    group = parser.add_argument_group("geetcd lock contention")
    group.add_argument(
        "--lock-names",
        type=int,
        default=1,
        env_var="GEETCD_LOCK_NAMES",
        help="number of locks the users share (default 1)",
    )
    group.add_argument(
        "--lock-hold",
        type=float,
        default=0.0,
        env_var="GEETCD_LOCK_HOLD",
        help="milliseconds each acquisition is held (default 0)",
    )
    group.add_argument(
        "--lock-ttl",
        type=int,
        default=10,
        env_var="GEETCD_LOCK_TTL",
        help="session lease TTL in seconds (default 10)",
    )
    group.add_argument(
        "--lock-timeout",
        type=float,
        default=10.0,
        env_var="GEETCD_LOCK_TIMEOUT",
        help="seconds an acquire may wait (default 10)",
    )
    group.add_argument(
        "--lock-prefix",
        default="/geetcd-bench/lock/",
        env_var="GEETCD_LOCK_PREFIX",
        help="namespace of the locks (default /geetcd-bench/lock/)",
    )


def _name(index: int) -> str:
    return f"lock-{index:04d}"


def _fence(index: int) -> str:
    return f"fence-{index:04d}"


def _token(revision: int) -> str:
    return f"{revision:020d}"  # compares as bytes in the same order as the numbers


@events.test_start.add_listener
def _reset(environment: Environment, **_: Any) -> None:
    if not is_coordinator(environment) or not environment.host:
        return
    options = parsed_options(environment)
    with Client(environment.host, namespace=options.lock_prefix) as client:
        client.delete_prefix("")
        for index in range(max(1, options.lock_names)):
            client.put(_fence(index), _token(0))


@events.quitting.add_listener
def _check_and_clean_up(environment: Environment, **_: Any) -> None:
    if not is_coordinator(environment) or not environment.host:
        return
    with Client(environment.host, namespace=parsed_options(environment).lock_prefix) as client:
        if isinstance(environment.runner, LocalRunner):
            if _violations[0]:
                log.error("fencing violations: %d guarded writes refused", _violations[0])
                environment.process_exit_code = 3
            else:
                entry = environment.stats.get("fenced write", "txn")
                log.info("fencing held: %d guarded writes, none refused", entry.num_requests)
        client.delete_prefix("")


class LockUser(EtcdUser):
    """Each task takes one of the shared locks, writes its fencing token, releases."""

    def client_kwargs(self) -> dict[str, Any]:
        return {"namespace": parsed_options(self.environment).lock_prefix}

    def on_start(self) -> None:
        options = parsed_options(self.environment)
        self.names = max(1, int(options.lock_names))
        self.hold = max(0.0, float(options.lock_hold)) / 1000.0
        self.ttl = int(options.lock_ttl)
        self.timeout = float(options.lock_timeout)

    @task
    def acquire_write_release(self) -> None:
        index = random.randrange(self.names)
        name = _name(index)
        lock = self.client.raw.lock(name, ttl=self.ttl)
        report = self.client.report
        start = time.perf_counter()
        try:
            acquired = lock.acquire(timeout=self.timeout)
        except Exception as exc:
            report("lock", "acquire", (time.perf_counter() - start) * 1000.0, 0, exc)
            raise
        now = time.perf_counter()
        if not acquired:
            timeout = LockTimeout(f"{name}: not acquired within {self.timeout} s")
            report("lock", "acquire", (now - start) * 1000.0, 0, timeout)
            return
        report("lock", "acquire", (now - start) * 1000.0)
        released = _released_at.pop(name, None)
        if released is not None:
            report("lock", "hand-off", (now - released) * 1000.0)
        try:
            token = lock.revision
            assert token is not None
            response = self.client.txn(
                [lock.is_owner(), Compare.value(_fence(index)) < _token(token)],
                [Op.put(_fence(index), _token(token))],
                name="fenced write",
            )
            if not response.succeeded:
                _violations[0] += 1
                violation = FencingViolation(f"{name}: token {token} refused")
                report("fence", "violation", 0.0, 0, violation)
            if self.hold:
                gevent.sleep(self.hold)
        finally:
            began = time.perf_counter()
            _released_at[name] = began
            lock.release()
            report("lock", "release", (time.perf_counter() - began) * 1000.0)
